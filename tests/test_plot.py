"""A drill's timeline from a recorded report: one row per container and family, its replies as
one series, each outage shaded where the report puts it, each event on the shared time axis."""

import copy
from dataclasses import replace
from pathlib import Path

import pytest

from lab import plot
from lab.drills import GatewayReport, Outage

FIXTURE = Path(__file__).parent / "fixtures" / "drill_report.json"


@pytest.fixture(scope="module")
def report() -> GatewayReport:
    return GatewayReport.from_json(FIXTURE.read_text())


@pytest.fixture(scope="module")
def fig(report):
    return plot.figure(report)


def probe_axes(fig) -> dict:
    return {ax.get_label(): ax for ax in fig.axes if ax.get_label() != plot.EVENTS}


def series(ax) -> list:
    """The data series of an axes (matplotlib hides helper artists behind a '_' label)."""
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def span_x(patch) -> tuple[float, float]:
    """A shaded span's extent in data x (whatever patch class axvspan returns)."""
    xs = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
    return round(float(min(xs)), 3), round(float(max(xs)), 3)


def test_one_row_per_container_and_family(report, fig):
    expected = {f"{c} IPv{f}" for c, fams in report.probes.items() for f in fams}
    assert set(probe_axes(fig)) == expected
    assert len(fig.axes) == len(expected) + 1  # and the events strip
    assert fig.axes[0].get_label() == plot.EVENTS


def test_each_row_draws_its_replies_as_one_series(report, fig):
    for c, fams in report.probes.items():
        for f, points in fams.items():
            (line,) = series(probe_axes(fig)[f"{c} IPv{f}"])
            assert list(line.get_xdata()) == [t for t, _ in points]
            assert list(line.get_ydata()) == [1 if ok else 0 for _, ok in points]


def test_outages_are_shaded_where_the_report_puts_them(report, fig):
    axes = probe_axes(fig)
    assert sum(len(ax.patches) for ax in axes.values()) == len(report.outages)
    for label, ax in axes.items():
        want = sorted((o.start, o.end) for o in report.outages if f"{o.container} IPv{o.family}" == label)
        assert sorted(span_x(p) for p in ax.patches) == want
    assert len(axes["greenC1 IPv6"].patches) == 2  # the fixture's failback glitch too


def test_events_are_marked_on_every_row_and_labelled_once(report, fig):
    events = report.events
    strip = fig.axes[0]
    texts = [t.get_text() for t in strip.texts]
    assert len(texts) == len(events)
    for e, text in zip(events, texts, strict=True):
        assert e.what in text and f"{e.t:.2f} s" in text
    for ax in probe_axes(fig).values():
        marks = sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_label() == "_event")
        assert marks == sorted(e.t for e in events)
    assert all(ax.get_shared_x_axes().joined(ax, strip) for ax in fig.axes)


def test_the_title_gives_the_verdict(report, fig):
    title = fig.get_suptitle()
    assert report.drill in title and ": ok" in title
    failed = replace(report, ok=False, problems=["blueC0: 3.4 s outage, over 2 s"])
    assert "FAILED" in plot.figure(failed).get_suptitle()
    assert "blueC0: 3.4 s outage" in plot.figure(failed).get_suptitle()


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_writes_png_and_svg(report, tmp_path, suffix, magic):
    out = plot.plot(report, tmp_path / f"drill{suffix}")
    assert out.read_bytes().startswith(magic)


def test_a_smaller_report_gives_fewer_rows(report):
    one = copy.deepcopy(report)
    one.probes = {"blueC0": {"4": report.probes["blueC0"]["4"]}}
    fig = plot.figure(one)
    assert list(probe_axes(fig)) == ["blueC0 IPv4"]
    assert len(probe_axes(fig)["blueC0 IPv4"].patches) == 1


def test_an_outage_still_open_is_shaded_to_the_last_probe(report):
    open_ = copy.deepcopy(report)
    open_.outages = [Outage(container="blueC0", family="4", phase="failover", start=1.0, end=None,
                            ms=None, lost=3)]
    ax = probe_axes(plot.figure(open_))["blueC0 IPv4"]
    assert [span_x(p) for p in ax.patches] == [(1.0, report.probes["blueC0"]["4"][-1].t)]


def test_bad_input_is_refused(report, tmp_path):
    with pytest.raises(ValueError, match=".png or .svg"):
        plot.plot(report, tmp_path / "drill.pdf")
    with pytest.raises(ValueError, match="no probes"):
        plot.figure(GatewayReport(drill="failover.green", probes={}))
