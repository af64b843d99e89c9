"""The cut drills on the embedded lab (light containers): the VXLAN tunnel cut both ways (a split
brain, named within 5 s; one master within 5 s of the restore; the DHCP pair, which loses contact,
normal again; no address leased twice, none twice on VLAN 7), status and test.gateway naming a
split brain, and greenVM's NIC down (its carrier lost: green cut off with the reason, blue's
containers back within 5 s, all back within 15 s of the restore; set down by hand: the lab
broken, `invoke provision` repairing it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import light_lab_file, needs_root, running_lab

from lab import commands, drills
from lab.drills.access import LabAccess
from lab.drills.cut import Underlay
from lab.host.wait import until

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq", "conntrack", "iptables"),
              pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
RESPONSE_DELAY = 3  # dhcpd's max-response-delay here: the pair loses contact within a short cut


@pytest.fixture(scope="module")
def lab_file(tmp_path_factory) -> Path:
    return light_lab_file(tmp_path_factory, "vxsplitx", f"dhcp.max_response_delay={RESPONSE_DELAY}")


@pytest.fixture(scope="module")
def elab(lab_file):
    yield from running_lab(lab_file)


def split_brain_text(lab) -> str:
    v = lab.vrrp.instances
    return f"split brain: blueVM and greenVM both hold {v.ipv4.vip.ip} and {v.ipv6.vip.ip}"


def restore_t(report) -> float:
    return next(e.t for e in report.events if e.what == "restore")


def longest_ms(report, containers) -> int:
    return max((o.ms if o.ms is not None else 10**6 for o in report.outages if o.container in containers
                and o.phase == "failover"), default=0)


def check_healed(report) -> None:
    assert report.ok, drills.cut_summary(report)
    assert report.leased_twice == [] and report.duplicates == []
    assert any(e.what.startswith("after healing: the VIPs on the master only") for e in report.events)


def test_the_tunnel_cut_is_a_split_brain_named_and_healed(elab, lab_file, tmp_path):
    """Through the task, as users type it, with its JSON report."""
    out = tmp_path / "vxlan.json"
    p = subprocess.run([sys.executable, "-m", "invoke", "failover.vxlan", "--lab", str(lab_file),
                        "--hold", str(RESPONSE_DELAY + 4), "--json", str(out)],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    report = drills.CutReport.from_json(out.read_text())
    print(drills.cut_summary(report))  # its figures, with -rA
    check_healed(report)
    said = split_brain_text(elab.lab)
    assert report.split_brain == said and said in p.stdout
    assert report.split_brain_s is not None and report.split_brain_s <= 5.0
    assert report.one_master_s is not None and report.one_master_s <= 5.0
    # the pair lost contact during the cut, and is normal again within 30 s of the restore
    for server in ("blueDHCP", "greenDHCP"):
        assert any(e.what == f"{server} DHCP failover: communications-interrupted" for e in report.events)
    assert report.dhcp_normal_s is not None and report.dhcp_normal_s <= 30.0
    # green (the master's side) keeps its gateway; blue's containers lose about the master-down interval
    green = set(elab.lab.containers_of("green"))
    blue = set(elab.lab.containers_of("blue"))
    assert longest_ms(report, green) <= 150, drills.cut_summary(report)
    assert longest_ms(report, blue) <= (report.master_down_s + 1.0) * 1000, drills.cut_summary(report)
    assert report.tcp.survived


def test_the_vxlan_port_down_is_a_split_brain_too(elab):
    report = drills.cut.run(elab, "port", hold=2)
    print(drills.cut_summary(report))
    check_healed(report)
    assert report.split_brain == split_brain_text(elab.lab) and report.split_brain_s <= 5.0
    assert report.one_master_s <= 5.0


def test_status_and_the_gateway_checks_name_a_split_brain(elab):
    access = LabAccess(elab)
    cut = Underlay(access, elab.lab.master(), "both")
    cut.inject()
    try:
        said = split_brain_text(elab.lab)
        assert until(lambda: said in commands.status(elab)["problems"], 10, 0.2)
        report = commands.check(elab, "gateway", 0, None, None)
        assert not report.ok and report.causes[0] == said, report.causes
    finally:
        cut.restore()
    assert until(lambda: not elab.problems(), 40, 0.5), elab.problems()


def test_green_nic_loses_carrier_green_cut_off_blue_back_within_5s(elab):
    report = drills.cut.run(elab, "carrier", "greenVM", hold=3)
    print(drills.cut_summary(report))
    check_healed(report)
    green = set(elab.lab.containers_of("green"))
    assert set(report.cut_off) == green
    assert all("greenVM's NIC" in why and "tunnel" in why for why in report.cut_off.values())
    blue = set(elab.lab.containers_of("blue"))
    assert longest_ms(report, blue) <= 5000, drills.cut_summary(report)
    assert report.expected_gateway == "blueVM" and report.takeover_s is not None
    # after the restore: green master, every container on the Internet, within 15 s
    back = restore_t(report) + 15
    assert all(o.end is not None and o.end <= back for o in report.outages), drills.cut_summary(report)
    assert report.one_master_s <= 15.0 and report.healed_s <= 15.0


def test_green_nic_set_down_by_hand_leaves_the_lab_broken_and_provision_repairs_it(elab):
    report = drills.cut.run(elab, "admin", "greenVM", hold=2)
    print(drills.cut_summary(report))
    check_healed(report)
    assert any("no route default" in b for b in report.broken), report.broken
    assert report.repair_s is not None
    assert any(e.what == "repair: invoke provision" for e in report.events)
