"""The failover drills on the embedded lab (light containers), each mode on both tenants, and
the DHCP failover drill. Figures asserted are the ones users rely on: the seed's drill loses
nothing, a real uplink loss costs about VRRP's detection time, failback loses nothing, a
restart of radvd costs the SLAAC clients nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import light_lab_file, needs_root, running_lab

from lab import drills

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq", "conntrack"), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab_file(tmp_path_factory) -> Path:
    return light_lab_file(tmp_path_factory, "vxdrill")


@pytest.fixture(scope="module")
def elab(lab_file):
    yield from running_lab(lab_file)


def lost(report: drills.GatewayReport, phase: str, family: str | None = None) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for o in report.outages:
        if o.phase == phase and family in (None, o.family):
            out[(o.container, o.family)] = out.get((o.container, o.family), 0) + o.lost
    return out


def longest_ms(report: drills.GatewayReport, phase: str, family: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in report.outages:
        if o.phase == phase and o.family == family:
            out[o.container] = max(out.get(o.container, 0), o.ms or 10**6)
    return out


def probes_left(elab) -> list[str]:
    """The drill's probers still running in the lab's containers (a drill must stop them all)."""
    left = []
    for c in (c for t in elab.lab.tenants for c in elab.lab.containers_of(t)):
        r = subprocess.run(["ip", "netns", "pids", f"{elab.lab.name}-{c}"], capture_output=True, text=True)
        for pid in r.stdout.split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "/dev/tcp/" in argv or " -D -O " in argv:
                left.append(f"{c}: {argv}")
    return left


def check_common(report: drills.GatewayReport, expected_gateway: str, elab) -> None:
    assert report.ok, drills.summary(report)
    assert probes_left(elab) == []
    assert report.expected_gateway == expected_gateway
    assert report.tcp.survived, report.tcp
    assert len(report.probes) == 6 and all(len(s) > 100 for f in report.probes.values() for s in f.values())
    # failback without loss (a probe or two may cross the instant both tenants switch)
    assert all(n <= 2 for n in lost(report, "failback").values()), lost(report, "failback")


def moved(whats: list[str], prefix: str) -> set[str]:
    """Every VIP the events starting with prefix name."""
    return {vip for w in whats if w.startswith(prefix) for vip in w[len(prefix):].split()}


def test_seed_drill_green_loses_nothing(elab, lab_file, tmp_path):
    """The seed's drill through the task, as users type it, with its JSON report."""
    out = tmp_path / "report.json"
    p = subprocess.run([sys.executable, "-m", "invoke", "failover.green", "--lab", str(lab_file),
                        "--json", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    report = drills.GatewayReport.from_json(out.read_text())
    check_common(report, "blueVM", elab)
    assert lost(report, "failover") == {}, drills.summary(report)
    whats = [e.what for e in report.events]
    assert any("greenVM enters FAULT" in w for w in whats)
    assert any("blueVM enters MASTER" in w for w in whats)
    vips = {str(v.vip.ip) for v in (elab.lab.vrrp.instances.ipv4, elab.lab.vrrp.instances.ipv6)}
    # Each family's instance moves on its own, so the VIPs may leave or arrive in one event or two.
    assert moved(whats, "VIPs leave greenVM: ") == vips, whats
    assert moved(whats, "VIPs arrive on blueVM: ") == vips, whats
    assert any(w.startswith("router marks the containers' flows 220") for w in whats)
    assert "PASS" in p.stdout


@pytest.mark.parametrize("family", ["both", "6"])
def test_green_uplink_loss_costs_the_detection_time(elab, family):
    report = drills.run(elab, "green", "uplink", family)
    check_common(report, "blueVM", elab)
    for fam in ("4", "6"):
        ms = longest_ms(report, "failover", fam)
        if fam in ("6",) or family == "both":
            # every container loses about fall x interval (3 s) + takeover, not more
            assert set(ms) == set(report.probes), (fam, ms)
            assert all(2000 <= v <= 6000 for v in ms.values()), (fam, ms)
        else:  # an IPv6-only loss leaves IPv4 untouched, yet the gateway moves (both tracked)
            assert ms == {}, (fam, ms)


def test_green_keepalived_crash_taken_over_within_master_down(elab):
    report = drills.run(elab, "green", "crash")
    check_common(report, "blueVM", elab)
    assert report.takeover_s is not None
    assert report.takeover_s <= report.master_down_s + 1.0, report.takeover_s
    # Its VIPs go with it (killed, keepalived cannot remove them: the lab's after-exit does) ...
    injected = next(e.t for e in report.events if e.what.startswith("fault injected"))
    left = next(e.t for e in report.events if e.what.startswith("VIPs leave greenVM"))
    assert left - injected <= 1.0, drills.summary(report)
    assert report.vips_on_both_s <= 1.0, drills.summary(report)
    # ... yet the containers' neighbour caches still name greenVM, which forwards without them
    assert lost(report, "failover") == {}, drills.summary(report)


def test_green_radvd_crash_on_the_master_costs_the_slaac_clients_nothing(elab):
    report = drills.run(elab, "green", "radvd")
    print(drills.summary(report))  # its figures, with -rA
    assert any("radvd on greenVM is killed" in e.what for e in report.events)
    check_common(report, "greenVM", elab)  # no problem: no route or address removed, even briefly
    assert all(n <= 2 for n in lost(report, "failover", "6").values()), drills.summary(report)
    assert not any(e.what.startswith("VIPs arrive on blueVM") for e in report.events)


@pytest.mark.parametrize("mode", ["probe", "uplink", "crash", "radvd"])
def test_blue_is_backup_so_the_gateway_stays_on_green(elab, mode):
    report = drills.run(elab, "blue", mode)
    print(drills.summary(report))  # its figures, with -rA
    check_common(report, "greenVM", elab)
    assert lost(report, "failover") == {}, drills.summary(report)
    assert not any(e.what.startswith("VIPs arrive on blueVM") for e in report.events)
    if mode in ("probe", "uplink"):  # the fault is real: blue's keepalived sees it
        assert any(e.what == "blueVM enters FAULT" for e in report.events), drills.summary(report)


def test_repeated_uplink_drill_through_the_task(elab, lab_file, tmp_path):
    """`--repeat 3`: three trials back to back, each from the initial state, the JSON with every
    trial and the summary, the CDF drawn; `--bound` below the detection time fails the drill
    naming trial and container."""
    out, cdf = tmp_path / "series.json", tmp_path / "cdf.png"
    p = subprocess.run([sys.executable, "-m", "invoke", "failover.green", "--lab", str(lab_file),
                        "--mode", "uplink", "--repeat", "3", "--json", str(out), "--plot", str(cdf),
                        "--bound", "1000"], cwd=ROOT, capture_output=True, text=True)
    series = drills.load(out.read_text())
    assert isinstance(series, drills.GatewaySeries)
    assert series.ok and series.passed == 3 and len(series.trials) == 3, p.stdout + p.stderr
    for report in series.trials:
        check_common(report, "blueVM", elab)
        assert report.master == "greenVM" and report.moved and report.failback_s is not None
    assert series.spurious == 0, [r.spurious for r in series.trials]
    assert series.takeover_s.n == series.failback_s.n == 3
    assert len(series.rows) == 6 * 2
    for row in series.rows:  # every prober lost about the detection time in every trial
        assert row.outage_ms.n == 3 and row.outage_ms.open == 0
        assert 2000 <= row.outage_ms.min <= row.outage_ms.max <= 6000, row
    assert cdf.read_bytes().startswith(b"\x89PNG")
    # the drill held, but the outages are over the bound: exit 1, each named
    assert p.returncode == 1, p.stdout + p.stderr
    assert "over the bound: trial 1: " in p.stdout and "> bound 1000 ms" in p.stdout
    assert "trial 3/3: PASS" in p.stdout
    assert "FAULT ON p50" in p.stdout and "spurious VRRP transitions: 0 (in 0 of 3 trials)" in p.stdout


def test_dhcp_primary_down_secondary_gives_the_lease(elab):
    report = drills.dhcp(elab)
    assert report.ok, drills.dhcp_summary(report)
    assert report.lease_s is not None and report.lease_s < 10


def test_drill_refused_on_a_lab_not_in_its_initial_state(elab):
    node = elab.node("blueVM")
    pid = node.read("/run/keepalived.pid").strip()
    subprocess.run(["kill", "-KILL", pid], check=True)
    try:
        with pytest.raises(drills.DrillError, match="not in its initial state"):
            drills.run(elab, "green")
    finally:
        elab.up(timeout=120)
