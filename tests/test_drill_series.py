"""Repeated drills: the summary's maths (nearest-rank percentiles over trials, each trial's longest
outage per prober and phase, takeover and failback over the trials that moved the gateway), the
spurious VRRP transitions, the bound, and the JSON round trip (a saved single report still loads)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import model, plot
from lab.drills import GatewayReport, GatewaySeries, Outage, Probe, load, over_bound
from lab.drills.modes import get
from lab.drills.report import DhcpReport, Event
from lab.drills.series import DhcpSeries, Stats, percentile, stats, table
from lab.drills.watch import unexplained

FIXTURE = Path(__file__).parent / "fixtures" / "drill_report.json"


def test_percentiles_are_nearest_rank_values_some_trial_measured():
    values = list(range(1, 21))  # 20 trials
    assert stats(values) == Stats(n=20, open=0, min=1, p50=10, p95=19, p99=20, max=20)
    assert percentile([3400, 3900, 3600], 50) == 3600
    assert percentile([5], 99) == 5
    assert stats([]) == Stats()


def test_an_open_outage_is_longer_than_any_and_counted():
    s = stats([100, None, 200])
    assert (s.n, s.open, s.min, s.p50, s.max) == (3, 1, 100, 200, None)


def trial(outages, *, ok=True, takeover=3.5, failback=1.2, moved=True, spurious=()):
    probes = {c: {f: [Probe(0.0, True)] for f in ("4", "6")} for c in ("blueC0", "greenC0")}
    return GatewayReport(drill="failover.green", tenant="green", mode="uplink", lab="vxdrill",
                         expected_gateway="blueVM", master="greenVM" if moved else "blueVM",
                         takeover_s=takeover, failback_s=failback, probes=probes, ok=ok,
                         problems=[] if ok else ["blueC0 IPv4: no reply since 3.0 s"],
                         outages=[Outage(container=c, family=f, start=1.0, end=None if ms is None else 2.0,
                                         ms=ms, lost=lost, phase=phase) for c, f, ms, lost, phase in outages],
                         spurious=list(spurious))


def a_series() -> GatewaySeries:
    trials = [
        trial([("blueC0", "4", 3500, 70, "failover"), ("blueC0", "4", 200, 4, "failover"),
               ("greenC0", "6", 50, 1, "failback")]),
        trial([("blueC0", "4", 3700, 74, "failover")], takeover=3.7, failback=1.0,
              spurious=["blueVM enters BACKUP at 5.00 s (while the fault was on)"]),
        trial([("blueC0", "4", None, 200, "failover")], ok=False, takeover=None, failback=None),
    ]
    return GatewaySeries.of(trials, 3, drill="failover.green", tenant="green", mode="uplink",
                            family="both", lab="vxdrill")


def test_each_trial_counts_its_longest_outage_per_prober_and_phase():
    s = a_series()
    rows = {(r.container, r.family): r for r in s.rows}
    assert list(rows) == [("blueC0", "4"), ("blueC0", "6"), ("greenC0", "4"), ("greenC0", "6")]
    b4 = rows[("blueC0", "4")]
    assert (b4.outage_ms.n, b4.outage_ms.open, b4.outage_ms.min, b4.outage_ms.p50) == (3, 1, 3500, 3700)
    assert b4.outage_ms.max is None  # the third trial's never ended
    assert (b4.lost, b4.lost_max) == (70 + 4 + 74 + 200, 200)
    assert b4.failback_ms == Stats(n=3, min=0, p50=0, p95=0, p99=0, max=0)
    g6 = rows[("greenC0", "6")]
    assert (g6.outage_ms.max, g6.failback_ms.max, g6.lost) == (0, 50, 1)


def test_the_series_verdict_takeover_failback_and_spurious():
    s = a_series()
    assert (s.passed, s.ok) == (2, False)
    assert s.problems == ["trial 3: blueC0 IPv4: no reply since 3.0 s"]
    assert (s.takeover_s.n, s.takeover_s.min, s.takeover_s.max, s.takeover_s.open) == (3, 3.5, None, 1)
    assert (s.failback_s.min, s.failback_s.p50) == (1.0, 1.2)
    assert (s.spurious, s.spurious_trials) == (1, 1)
    good = GatewaySeries.of(s.trials[:2], 2, drill="failover.green")
    assert good.ok
    assert not GatewaySeries.of(s.trials[:2], 3, drill="failover.green").ok  # fewer trials than asked
    assert not GatewaySeries.of(s.trials[:2], 2, ["stopped before trial 3"], drill="x").ok


def test_takeover_and_failback_only_over_trials_that_moved_the_gateway():
    s = GatewaySeries.of([trial([], moved=False, takeover=0.05)], 1, drill="failover.blue")
    assert s.takeover_s == Stats() and s.failback_s == Stats()
    title, header, rows, below = table(s)
    assert "takeover: none (the fault does not move the gateway)" in below


def test_the_table_reads_at_a_glance():
    title, header, rows, below = table(a_series())
    assert title == "failover.green --mode uplink --family both: 3 trials, 2 passed: FAIL"
    assert len(header) == len(rows[0]) == 12
    assert rows[0] == ("blueC0", "v4", "3700", "open", "open", "open", "0", "0", "0", "0", "348", "200")
    assert ("takeover (fault -> the backup holds both VIPs): p50 3.70  p95 never  p99 never  max never s"
            "  (n=3, 1 never)") in below
    assert "spurious VRRP transitions: 1 (in 1 of 3 trials)" in below
    assert "problem: trial 3: blueC0 IPv4: no reply since 3.0 s" in below


def test_a_series_round_trips_through_json_with_every_trial_and_the_summary():
    s = a_series()
    text = s.to_json()
    data = json.loads(text)
    assert len(data["trials"]) == 3 and data["rows"][0]["outage_ms"]["p50"] == 3700
    assert data["takeover_s"]["n"] == 3
    assert GatewaySeries.from_json(text) == s
    assert load(text) == s


def test_a_saved_single_report_still_loads_as_one():
    report = load(FIXTURE.read_text())
    assert isinstance(report, GatewayReport) and report.ok
    assert (report.master, report.failback_s, report.spurious, report.moved) == ("", None, [], False)
    with pytest.raises(ValueError):
        load("not json")


def test_a_dhcp_series_round_trips():
    trials = [DhcpReport(client="blueC0", lease_s=x, ok=True, events=[Event(0.0, "x")]) for x in (1.1, 0.9)]
    s = DhcpSeries.of(trials, 2, lab="vxdrill")
    assert s.ok and s.lease_s.p50 == 0.9 and s.lease_s.max == 1.1
    assert DhcpSeries.from_json(s.to_json()) == s


def test_the_bound_names_trial_and_container():
    s = a_series()
    assert over_bound(s.trials, 3600) == [
        "trial 2: blueC0 IPv4 3700 ms (74 probes lost, failover) > bound 3600 ms",
        "trial 3: blueC0 IPv4 never answered again (200 probes lost, failover) > bound 3600 ms"]
    assert over_bound(s.trials[:1], 4000) == []


def test_transitions_the_fault_does_not_explain():
    seen = [(1, "FAULT"), (5, "BACKUP"), (6, "MASTER")]
    assert unexplained(seen, ("FAULT",)) == [(5, "BACKUP"), (6, "MASTER")]
    assert unexplained([(5, "MASTER")], ("BACKUP", "MASTER")) == []  # BACKUP may be skipped
    assert unexplained([(5, "BACKUP"), (6, "MASTER"), (7, "BACKUP")], ("BACKUP", "MASTER")) == [(7, "BACKUP")]
    assert unexplained([(1, "MASTER")], ()) == [(1, "MASTER")]


class FakeAccess:
    def __init__(self):
        self.lab = model.load(model.DEFAULT_LAB)

    def node(self, name):
        return None


@pytest.mark.parametrize("tenant,mode,expected", [
    ("green", "uplink", {"greenVM": (("FAULT",), ("BACKUP", "MASTER")),
                         "blueVM": (("MASTER",), ("BACKUP",))}),
    ("blue", "probe", {"blueVM": (("FAULT",), ("BACKUP",)), "greenVM": ((), ())}),
    ("green", "crash", {"greenVM": ((), ("BACKUP", "MASTER")), "blueVM": (("MASTER",), ("BACKUP",))}),
    ("blue", "crash", {"blueVM": ((), ("BACKUP",)), "greenVM": ((), ())}),
])
def test_each_mode_says_which_transitions_it_explains(tenant, mode, expected):
    assert get(mode)(FakeAccess(), tenant, "both").expected_transitions() == expected


def test_the_cdf_draws_one_line_per_family_and_phase(tmp_path):
    s = a_series()
    fig = plot.cdf(s)
    on = next(ax for ax in fig.axes if ax.get_label() == "failover")
    lines = {line.get_label(): line for line in on.get_lines()}
    assert set(lines) == {"IPv4 (n=6, 1 open)", "IPv6 (n=6)"}
    v6 = lines["IPv6 (n=6)"]
    assert list(v6.get_ydata())[-1] == 1.0  # no open outage: the line reaches the top
    assert max(lines["IPv4 (n=6, 1 open)"].get_ydata()) == pytest.approx(5 / 6)
    assert plot.plot(s, tmp_path / "cdf.png").read_bytes().startswith(b"\x89PNG")


def test_two_profiles_are_drawn_side_by_side_per_family(tmp_path):
    seed = a_series()
    seed.profile = "seed"
    fast = GatewaySeries.of([trial([("blueC0", "4", 90, 9, "failover")])], 1, drill="failover.green",
                            mode="uplink", family="both", profile="fast")
    fig = plot.compare([seed, fast])
    panels = {ax.get_label(): ax for ax in fig.axes}
    assert set(panels) == {"IPv4"}  # nothing lost on IPv6 while the faults were on: no panel of zeros
    v4 = {line.get_label(): line for line in panels["IPv4"].get_lines()}
    assert set(v4) == {"seed profile: 3 trials, n=6, 1 open", "fast profile: 1 trials, n=2"}
    assert list(v4["fast profile: 1 trials, n=2"].get_xdata())[-1] == 90
    assert panels["IPv4"].get_xscale() == "log"
    assert plot.plot(seed, tmp_path / "both.svg", fast).read_bytes().startswith(b"<?xml")
    with pytest.raises(ValueError, match="only two repeated drills"):
        plot.plot(seed.trials[0], tmp_path / "x.png", fast)
