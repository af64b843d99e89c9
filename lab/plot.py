"""A drill's timeline: probe replies per container and family, outages shaded, events marked.

`figure(report)` builds the matplotlib Figure (what the tests inspect); `plot(report, out)` saves
it as PNG or SVG. The report is a drill's GatewayReport (times in seconds on the prober's clock,
t=0 when the drill starts). Rendering uses the Agg canvas directly: no GUI, no pyplot state.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lab.drills.report import PHASES, Event, GatewayReport, Outage
from lab.drills.series import GatewaySeries, longest

FORMATS = {".png": "png", ".svg": "svg"}
EVENTS = "events"  # the label of the events' axes; probe axes are labelled "<container> IPv<family>"

_OK, _LOST, _OUTAGE, _EVENT = "#2e7d32", "#c62828", "#ef9a9a", "#37474f"
_ROW_HEIGHT, _EVENT_HEIGHT, _WIDTH = 0.85, 0.32, 11.0  # inches


def series_label(container: str, family: str) -> str:
    return f"{container} IPv{family}"


def figure(report: GatewayReport) -> Figure:
    """The drill's timeline: an events strip on top, then one row per container and family."""
    series = report.rows()
    if not series:
        raise ValueError("the drill report has no probes to draw")
    events = report.events
    heights = [max(1, len(events)) * _EVENT_HEIGHT, *([_ROW_HEIGHT] * len(series))]
    fig = Figure(figsize=(_WIDTH, sum(heights) + 1.3), layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly: the same output on any machine, headless
    axes = fig.subplots(len(heights), 1, sharex=True, height_ratios=heights, squeeze=False)[:, 0]
    end = _end(report)
    _events_strip(axes[0], events, end)
    for ax, (container, family) in zip(axes[1:], series, strict=True):
        _probe_row(ax, report, container, family, end)
    axes[-1].set_xlim(0, end)
    axes[-1].set_xlabel(f"t (s): {report.clock}")
    fig.suptitle(_title(report), fontsize=11)
    return fig


def check_format(out: Path) -> str:
    fmt = FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise ValueError(f"the output must end in {' or '.join(FORMATS)}, not {Path(out).name!r}")
    return fmt


def plot(report: GatewayReport | GatewaySeries, out: Path, versus: GatewaySeries | None = None) -> Path:
    """Draw the drill report to `out` (a series as its CDF; two series side by side, as
    `compare` draws them); the suffix (.png, .svg) picks the format."""
    out = Path(out)
    fmt = check_format(out)
    if versus is not None:
        if not isinstance(report, GatewaySeries):
            raise ValueError("only two repeated drills (--repeat) can be drawn side by side")
        fig = compare([report, versus])
    else:
        fig = cdf(report) if isinstance(report, GatewaySeries) else figure(report)
    fig.savefig(out, format=fmt, dpi=120)
    return out


# -- a repeated drill --------------------------------------------------------------------------------

def outages_by_family(series: GatewaySeries, phase: str) -> dict[str, list[int | None]]:
    """Each trial's longest outage (ms, 0: none, None: open) per prober, pooled per family."""
    out: dict[str, list[int | None]] = {}
    for r in series.trials:
        for c, fam in r.rows():
            out.setdefault(fam, []).append(longest(r, c, fam, phase))
    return dict(sorted(out.items()))


def cdf(series: GatewaySeries) -> Figure:
    """The outages' distribution: one panel per phase (fault on, restored), a step line per
    family: the share of (trial, prober) pairs whose longest outage was at most x ms. Open
    outages never reach the line's top."""
    if not series.trials:
        raise ValueError("the drill series has no trials to draw")
    fig = Figure(figsize=(_WIDTH, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(PHASES), squeeze=False)[0]
    for ax, phase in zip(axes, PHASES, strict=True):
        ax.set_label(phase)
        longest_ms = 0
        for fam, values in outages_by_family(series, phase).items():
            done = sorted(v for v in values if v is not None)
            longest_ms = max([longest_ms, *done])
            n = len(values)
            xs = [0, *done]
            ys = [0, *((i + 1) / n for i in range(len(done)))]
            ax.step(xs, ys, where="post", label=f"IPv{fam} (n={n}"
                    + (f", {n - len(done)} open)" if len(done) < n else ")"))
        ax.set_ylim(0, 1.02)
        ax.set_xlim(0, max(10, longest_ms * 1.05))  # from 0 ms, also when nothing was lost
        ax.set_xlabel("longest outage of a prober in a trial (ms)")
        ax.set_ylabel("share of trials x probers")
        ax.set_title("while the fault was on" if phase == "failover" else "after the restore", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{series.drill} --mode {series.mode} --family {series.family} (lab {series.lab or '?'}): "
                 f"{len(series.trials)} trials, {series.passed} passed", fontsize=11)
    return fig


def profile_of(series: GatewaySeries) -> str:
    """What tells one series from another: its timing profile (older reports: its probes)."""
    if series.profile:
        return f"{series.profile} profile"
    return f"probes every {series.trials[0].interval * 1000:.0f} ms" if series.trials else "?"


def compare(many: list[GatewaySeries]) -> Figure:
    """Repeated drills side by side (the timing profiles): one panel per family that lost
    anything, a step line per series of each (trial, prober)'s longest outage while the fault
    was on, on a log scale (the profiles differ by a factor of 30)."""
    if not all(s.trials for s in many):
        raise ValueError("a drill series has no trials to draw")
    lost = {fam for s in many for fam, values in outages_by_family(s, "failover").items()
            if any(v != 0 for v in values)}  # an IPv4-only fault: no IPv6 panel of zeros
    families = sorted(lost or {fam for s in many for fam in outages_by_family(s, "failover")})
    fig = Figure(figsize=(_WIDTH, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    for ax, fam in zip(fig.subplots(1, len(families), squeeze=False)[0], families, strict=True):
        ax.set_label(f"IPv{fam}")
        for s in many:
            values = outages_by_family(s, "failover").get(fam, [])
            done = sorted(max(v, 1) for v in values if v is not None)  # 0 ms: drawn at 1 on a log axis
            n = len(values)
            if not n:
                continue
            ax.step([1, *done], [0, *((i + 1) / n for i in range(len(done)))], where="post",
                    label=f"{profile_of(s)}: {len(s.trials)} trials, n={n}"
                    + (f", {n - len(done)} open" if len(done) < n else ""))
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("longest outage of a prober in a trial (ms, log scale)")
        ax.set_ylabel("share of trials x probers")
        ax.set_title(f"IPv{fam}, while the fault was on", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    first = many[0]
    fig.suptitle(f"{first.drill} --mode {first.mode} --family {first.family}: "
                 + " vs ".join(profile_of(s) for s in many), fontsize=11)
    return fig


# -- the parts ---------------------------------------------------------------------------------

def _end(report: GatewayReport) -> float:
    """The time axis ends after the last probe or event (whichever comes later)."""
    times = [p.t for fams in report.probes.values() for pts in fams.values() for p in pts]
    times += [e.t for e in report.events]
    return max(times, default=1.0) + 0.5


def _events_strip(ax: Axes, events: list[Event], end: float) -> None:
    """One line per event, so labels of events a few ms apart never overlap; labels of late
    events go left of their mark, so they stay inside the figure."""
    ax.set_label(EVENTS)
    ax.set_ylim(len(events) - 0.5, -0.5)  # first event on top
    ax.set_yticks([])
    ax.set_frame_on(False)
    ax.tick_params(axis="x", length=0)
    for i, e in enumerate(events):
        ax.plot([e.t], [i], marker="v", color=_EVENT, label="_event")
        ax.axvline(e.t, color=_EVENT, linewidth=0.6, linestyle=":", label="_event")
        left = e.t > 0.6 * end
        where = f" ({e.node})" if e.node and e.node not in e.what else ""
        clock = "" if e.clock == "prober" else f", {e.clock} clock"
        ax.annotate(f"{e.t:.2f} s  {e.what}{where}{clock}", (e.t, i), xytext=(-6 if left else 6, 0),
                    textcoords="offset points", va="center", ha="right" if left else "left", fontsize=8,
                    bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


def _probe_row(ax: Axes, report: GatewayReport, container: str, family: str, axis_end: float) -> None:
    points = report.probes[container][family]
    t = [p.t for p in points]
    ok = [1 if p.replied else 0 for p in points]
    ax.set_label(series_label(container, family))
    # One series per row: a step line between reply (1) and loss (0), dots where probes were lost.
    ax.step(t, ok, where="post", color=_OK, linewidth=1.2, label=series_label(container, family))
    lost = [x for x, y in zip(t, ok, strict=True) if not y]
    ax.plot(lost, [0] * len(lost), linestyle="none", marker="|", color=_LOST, label="_lost")
    for o in report.outages_of(container, family):
        end = o.end if o.end is not None else (t[-1] if t else o.start)
        ax.axvspan(o.start, end, color=_OUTAGE, alpha=0.6, linewidth=0)
        # A wide span holds its text; a narrow one gets it on its right.
        wide = end - o.start > 0.15 * axis_end
        ax.annotate(_outage_text(o), ((o.start + end) / 2 if wide else end, 0.5),
                    xytext=(0 if wide else 4, 0), textcoords="offset points",
                    ha="center" if wide else "left", va="center", fontsize=7, color=_LOST)
    for e in report.events:
        ax.axvline(e.t, color=_EVENT, linewidth=0.6, linestyle=":", label="_event")
    ax.set_ylim(-0.25, 1.25)
    ax.set_yticks([0, 1], ["lost", "reply"], fontsize=7)
    ax.set_ylabel(series_label(container, family), rotation=0, ha="right", va="center", fontsize=8)


def _outage_text(o: Outage) -> str:
    parts = [f"{o.ms} ms" if o.ms is not None else "open", f"{o.lost} lost", o.phase]
    return ", ".join(p for p in parts if p)


def _title(report: GatewayReport) -> str:
    verdict = "ok" if report.ok else "FAILED"
    head = (f"{report.drill} (lab {report.lab or '?'}, tenant {report.tenant or '?'}, "
            f"{report.mode or '?'}): {verdict}")
    tcp = report.tcp
    if tcp:
        fate = "survived" if tcp.survived else "broke"
        head += f"; TCP from {tcp.container} {fate}, {tcp.resets} resets"
    return head + "".join(f"\nproblem: {p}" for p in report.problems)
