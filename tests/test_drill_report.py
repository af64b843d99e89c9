"""Drill reports as data: they round-trip through JSON with the field names reports have always
had (a report saved before they were typed, the fixture, still loads and says the same), and
the fault modes' registry gives the task its choices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import drills
from lab.drills import DhcpReport, GatewayReport, Outage, Probe
from lab.drills.report import Event, TcpStream

FIXTURE = Path(__file__).parent / "fixtures" / "drill_report.json"


def a_report() -> GatewayReport:
    return GatewayReport(
        drill="failover.green", tenant="green", mode="crash", family="both", lab="vxdrill", interval=0.05,
        expected_gateway="blueVM", takeover_s=3.21, master_down_s=3.137,
        events=[Event(0.0, "probes from 6 containers", "host", "host"),
                Event(2.5, "greenVM enters FAULT", "greenVM", "greenVM")],
        probes={"blueC0": {"4": [Probe(0.0, True), Probe(0.05, False), Probe(0.1, True)],
                           "6": [Probe(0.01, True)]}},
        outages=[Outage(container="blueC0", family="4", start=0.05, end=0.1, ms=50, lost=1,
                        phase="failover"),
                 Outage(container="blueC0", family="6", start=9.0, end=None, ms=None, lost=20,
                        phase="failback")],
        tcp=TcpStream(container="greenC0", target="9.9.9.9:5001", survived=False, resets=1,
                      detail="RESET"),
        ok=False, problems=["blueC0 IPv6: no reply since 9.0 s"])


def test_a_report_round_trips_through_json():
    report = a_report()
    assert GatewayReport.from_json(report.to_json()) == report


def test_the_json_keeps_the_field_names_reports_always_had():
    data = json.loads(a_report().to_json())
    assert list(data) == ["drill", "tenant", "mode", "family", "lab", "clock", "interval",
                          "expected_gateway", "takeover_s", "master_down_s", "events", "probes",
                          "outages", "tcp", "ok", "problems", "master", "failback_s", "spurious",
                          "vips_on_both_s", "profile"]
    assert data["events"][1] == {"t": 2.5, "what": "greenVM enters FAULT", "node": "greenVM",
                                 "clock": "greenVM"}
    assert data["probes"]["blueC0"]["4"][1] == [0.05, False]
    assert data["outages"][1] == {"container": "blueC0", "family": "6", "start": 9.0, "end": None,
                                  "ms": None, "lost": 20, "phase": "failback"}
    assert data["tcp"] == {"container": "greenC0", "target": "9.9.9.9:5001", "survived": False,
                           "resets": 1, "detail": "RESET"}


def test_a_saved_report_loads_and_says_the_same():
    saved = json.loads(FIXTURE.read_text())
    report = GatewayReport.from_json(FIXTURE.read_text())
    assert report.ok and report.tcp.survived and len(report.outages) == len(saved["outages"])
    assert report.outages_of("greenC1", "6", "failback")[0].lost == 1
    again = json.loads(report.to_json())
    assert {k: again[k] for k in saved if k != "tcp"} == {k: v for k, v in saved.items() if k != "tcp"}
    assert {k: again["tcp"][k] for k in saved["tcp"]} == saved["tcp"]  # and only defaults added
    assert GatewayReport.from_json(report.to_json()) == report


def test_what_is_not_a_report_is_refused():
    with pytest.raises(ValueError):
        GatewayReport.from_json('{"drill": "failover.green", "probes": {"blueC0": {"4": [["x"]]}}}')
    with pytest.raises(ValueError):
        GatewayReport.from_json("not json")


def test_a_dhcp_report_round_trips_through_json():
    report = DhcpReport(lab="vxdrill", client="blueC0", served_by_before="192.0.2.250", lease_s=1.5,
                        events=[Event(0.0, "blueC0 holds a lease", "blueC0")], ok=True)
    assert DhcpReport.from_json(report.to_json()) == report
    assert json.loads(report.to_json())["drill"] == "failover.dhcp"
    assert "new lease for blueC0 with the primary down: 1.50 s" in drills.dhcp_summary(report)


def test_the_modes_come_from_the_registry():
    assert list(drills.MODES) == ["probe", "uplink", "crash", "radvd"]
    assert all(f"{name} (" in drills.help_text() for name in drills.MODES)
    with pytest.raises(drills.DrillError, match="--mode must be one of probe, uplink, crash, radvd, not 'x'"):
        drills.modes.get("x")


def test_a_big_lab_s_summary_names_the_worst_series_and_counts_the_rest():
    names = [f"blueC{i}" for i in range(100)]
    report = GatewayReport(
        drill="failover.green", mode="uplink", ok=False,
        probes={c: {"4": [Probe(0.0, True)], "6": [Probe(0.0, True)]} for c in names},
        outages=[Outage(container="blueC7", family="4", start=1.0, end=1.5, ms=500, lost=10,
                        phase="failover"),
                 Outage(container="blueC42", family="6", start=9.0, end=None, ms=None, lost=3,
                        phase="failback")]
        + [Outage(container=c, family="4", start=1.0, end=1.1, ms=100, lost=2, phase="failover")
           for c in names[50:60]])
    rows = [line for line in drills.summary(report).splitlines() if "IPv" in line]
    assert len(rows) == drills.report.WORST
    assert rows[0].split()[:2] == ["blueC42", "IPv6"]  # never answered again: the worst
    assert rows[1].split()[:2] == ["blueC7", "IPv4"]
    assert drills.summary(report).splitlines()[-1] == "  ... 190 more series: 2 lost probes, at most 100 ms"


def test_a_small_lab_s_summary_lists_every_series_in_order():
    report = a_report()
    rows = [line.split()[:2] for line in drills.summary(report).splitlines() if line.startswith("  blueC")]
    assert rows == [["blueC0", "IPv4"], ["blueC0", "IPv6"]]
