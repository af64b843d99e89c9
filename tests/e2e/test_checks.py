"""The checks against a broken lab: each breakage makes the right check fail, saying what was
expected and what was found (light containers: the breakage is the point, not the driver)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import light_lab_file, needs_root, running_lab

from lab import checks

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq"), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab_file(tmp_path_factory) -> Path:
    return light_lab_file(tmp_path_factory, "vxbroken")


@pytest.fixture(scope="module")
def elab(lab_file):
    yield from running_lab(lab_file)


def failures(elab, group: str, wait: float = 2) -> dict[tuple[str, str], str]:
    every = checks.select(checks.build(elab.lab, elab.node), group)
    report = checks.run(every, elab.node, wait=wait)
    return {(o.check.name, o.check.node): o.found for o in report.outcomes if not o.ok}


def sh(elab, node: str, *argv: str) -> None:
    subprocess.run(elab.node(node).interactive(list(argv)), check=True, capture_output=True)


def test_healthy_lab_passes_every_check(elab):
    report = checks.run(checks.build(elab.lab, elab.node), elab.node, wait=30)
    assert report.ok, report.table()
    assert len(report.outcomes) == 94


def test_route_removed_fails_the_router_table_check_and_the_task_exits_1(elab, lab_file, tmp_path):
    sh(elab, "routerVM", "ip", "route", "del", "default", "table", "green")
    try:
        out = tmp_path / "checks.json"
        p = subprocess.run([sys.executable, "-m", "invoke", "test.router", "--lab", str(lab_file),
                            "--wait", "1", "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 1, p.stdout + p.stderr
        failed = [c for c in json.loads(out.read_text())["checks"] if not c["ok"]]
        assert [(c["check"], c["node"]) for c in failed] == [("router.table4", "routerVM")]
        assert "table green" in failed[0]["expected"]
        assert failed[0]["found"] == "no route default via 172.16.96.1 dev enp0s6.214"
        assert "FAIL router.table4" in p.stdout
        cause = "routerVM: no route default via 172.16.96.1 dev enp0s6.214 table green"
        assert json.loads(out.read_text())["causes"] == [cause]
        assert f"likely causes, as the nodes tell them:\n  {cause}\n" in p.stdout
    finally:
        sh(elab, "routerVM", "ip", "route", "replace", "default", "via", "172.16.96.1",
           "dev", "enp0s6.214", "table", "green")


def test_dhcp_server_stopped_by_hand_fails_the_failover_check(elab):
    node = elab.node("greenDHCP")
    pid = node.read("/run/dhcpd.pid").strip()
    subprocess.run(["kill", pid], check=True)
    found = failures(elab, "gateway")
    assert found.pop(("gateway.daemons", "greenDHCP")) == "not running: dhcpd"
    assert found.pop(("gateway.dhcp-failover", "greenDHCP")) == "dhcpd is not running"
    # its partner notices the loss: it is no longer in failover state normal
    assert found == {("gateway.dhcp-failover", "blueDHCP"): "communications-interrupted"}
    elab.up(timeout=120)  # restarts what died
    assert failures(elab, "gateway", wait=30) == {}


def test_mac_not_learned_fails_the_fdb_check_naming_the_macs(elab):
    macs = checks.container_macs(elab.lab, elab.node)
    sh(elab, "greenVM", "bridge", "link", "set", "dev", "vxlanGreenBlue", "learning", "off")
    try:
        for c in ("blueDHCP", "blueC0", "blueC1"):
            subprocess.run(elab.node("greenVM").interactive(
                ["bridge", "fdb", "del", macs[c], "dev", "vxlanGreenBlue", "master"]), capture_output=True)
        found = failures(elab, "vxlan")
        assert list(found) == [("vxlan.fdb", "greenVM")]
        assert all(macs[c] in found[("vxlan.fdb", "greenVM")] for c in ("blueDHCP", "blueC0", "blueC1"))
    finally:
        sh(elab, "greenVM", "bridge", "link", "set", "dev", "vxlanGreenBlue", "learning", "on")
    assert failures(elab, "vxlan", wait=30) == {}


def test_eui64():
    import ipaddress

    net = ipaddress.IPv6Network("2001:db8:7::/64")
    assert str(checks.eui64(net, "00:16:3e:2d:4f:16")) == "2001:db8:7:0:216:3eff:fe2d:4f16"  # the seed's
