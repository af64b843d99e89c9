"""The fast timing profile on the embedded lab (light containers): 0.1 s adverts and the uplink
probers feeding keepalived's track files. What users rely on: an uplink loss costs well under
a second (the seed's costs 3-4 s), a crash is taken over within the master-down interval, the
seed's drill, a radvd crash and failback lose (almost) nothing, the drill probes every 10 ms;
three trials of each mode. Figures are
printed (with -rA); tests/bench_failover.py --profile fast measures the distributions."""

from __future__ import annotations

import pytest
from conftest import light_lab_file, needs_root, running_lab

from lab import drills

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq", "conntrack"), pytest.mark.e2e]


@pytest.fixture(scope="module")
def lab_file(tmp_path_factory):
    return light_lab_file(tmp_path_factory, "vxfast", "vrrp.profile=fast")


@pytest.fixture(scope="module")
def elab(lab_file):
    yield from running_lab(lab_file)


def test_the_probers_run_and_keepalived_tracks_their_files(elab):
    for vm in ("blueVM", "greenVM"):
        node = elab.node(vm)
        for fam in ("ipv4", "ipv6"):
            assert node.read(f"/run/keepalived_track_{fam}").strip() == "0", (vm, fam)


def test_uplink_loss_costs_well_under_a_second(elab):
    series = drills.repeat(elab, "green", "uplink", "both", 3, deadline=10)
    title, _, rows, below = drills.series.table(series)
    print(title, *rows, *below, sep="\n")
    assert series.ok, series.problems
    assert all(r.interval == 0.01 for r in series.trials)
    for row in series.rows:
        assert row.outage_ms.open == 0 and row.outage_ms.max <= 1000, row
    # A real fault: it moved the gateway in every trial. (Not every prober need lose a probe: a
    # container whose IPv6 default router was already blueVM loses none.)
    assert series.takeover_s.n == len(series.trials) == 3 and series.takeover_s.open == 0, series.takeover_s
    assert series.takeover_s.max <= 1.0, series.takeover_s


def test_crash_taken_over_within_master_down(elab):
    series = drills.repeat(elab, "green", "crash", "both", 3, deadline=10)
    assert series.ok, series.problems
    for r in series.trials:
        assert r.takeover_s <= r.master_down_s + 1.0, r.takeover_s
        assert r.vips_on_both_s <= 1.0, r.vips_on_both_s  # the killed keepalived's VIPs went


@pytest.mark.parametrize("mode", ["probe", "radvd"])
def test_the_seeds_drill_and_a_radvd_crash_lose_almost_nothing(elab, mode):
    series = drills.repeat(elab, "green", mode, "both", 3, deadline=10)
    assert series.ok, series.problems
    assert all(o.lost <= 2 for r in series.trials for o in r.outages), series.problems
