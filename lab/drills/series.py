"""Repeated drills as data: every trial's report and their summary (distributions per container
and family, the takeover and failback times, the spurious VRRP transitions), round-tripping
through JSON like a single report; `load` reads either kind.

Percentiles are nearest-rank (each is a value some trial measured, never an interpolation); an
outage that never ended counts as longer than any other and shows as "open".
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lab.drills.report import PHASES, CutReport, DhcpReport, GatewayReport, _Json

QUANTILES = (50, 95, 99)


@dataclass(kw_only=True)
class Stats:
    """A distribution over trials: n values, of which `open` never ended (no value)."""

    n: int = 0
    open: int = 0
    min: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    max: float | None = None


def percentile(values: Sequence[float | None], q: float) -> float | None:
    """Nearest-rank q-th percentile; None (open) sorts above every value."""
    ranked = sorted(values, key=lambda v: (v is None, v or 0))
    return ranked[max(0, math.ceil(q / 100 * len(ranked)) - 1)]


def stats(values: Sequence[float | None]) -> Stats:
    if not values:
        return Stats()
    return Stats(n=len(values), open=sum(v is None for v in values), min=percentile(values, 0),
                 **{f"p{q}": percentile(values, q) for q in QUANTILES}, max=percentile(values, 100))


@dataclass(kw_only=True)
class Row:
    """One container and probe family over the trials: its longest outage per trial (ms, 0 if
    none) while the fault was on and after the restore, and the probes it lost."""

    container: str
    family: str
    outage_ms: Stats
    failback_ms: Stats
    lost: int           # over all trials
    lost_max: int       # in the worst trial


def longest(report: GatewayReport, container: str, family: str, phase: str) -> int | None:
    """The trial's longest outage of this prober in this phase (ms; 0: none; None: open)."""
    ms = [o.ms for o in report.outages_of(container, family, phase)]
    return None if None in ms else max(ms, default=0)


def rows(trials: Sequence[GatewayReport]) -> list[Row]:
    keys = list(dict.fromkeys(k for r in trials for k in r.rows()))
    out = []
    for c, fam in keys:
        having = [r for r in trials if fam in r.probes.get(c, {})]
        lost = [sum(o.lost for o in r.outages_of(c, fam)) for r in having]
        on, back = ([longest(r, c, fam, phase) for r in having] for phase in PHASES)
        out.append(Row(container=c, family=fam, outage_ms=stats(on), failback_ms=stats(back),
                       lost=sum(lost), lost_max=max(lost, default=0)))
    return out


@dataclass(kw_only=True)
class GatewaySeries(_Json):
    """`repeat` trials of one failover drill, back to back, each from the initial state."""

    drill: str
    tenant: str = ""
    mode: str = ""
    family: str = "both"
    lab: str = ""
    repeat: int = 0          # trials asked for (fewer ran if the lab did not come back)
    profile: str = ""        # the VRRP timing profile (vrrp.profile)
    passed: int = 0
    rows: list[Row] = field(default_factory=list)
    takeover_s: Stats = field(default_factory=Stats)   # trials that moved the gateway
    failback_s: Stats = field(default_factory=Stats)
    vips_on_both_s: Stats = field(default_factory=Stats)  # per trial: a VIP on both tenants at once
    spurious: int = 0        # VRRP transitions the faults do not explain, over all trials
    spurious_trials: int = 0
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    trials: list[GatewayReport] = field(default_factory=list)

    @classmethod
    def of(cls, trials: list[GatewayReport], repeat: int, problems: Sequence[str] = (), **about
           ) -> GatewaySeries:
        moved = [r for r in trials if r.moved]
        failed = [f"trial {i}: {p}" for i, r in enumerate(trials, 1) for p in r.problems]
        return cls(**about, repeat=repeat, passed=sum(r.ok for r in trials), rows=rows(trials),
                   takeover_s=stats([r.takeover_s for r in moved]),
                   failback_s=stats([r.failback_s for r in moved]),
                   vips_on_both_s=stats([r.vips_on_both_s for r in trials]),
                   spurious=sum(len(r.spurious) for r in trials),
                   spurious_trials=sum(bool(r.spurious) for r in trials),
                   ok=bool(trials) and len(trials) == repeat and not failed and not problems,
                   problems=[*problems, *failed], trials=trials)


@dataclass(kw_only=True)
class CutSeries(GatewaySeries):
    """Repeated failover.vxlan or failover.link drills: the gateway drill's figures and the cut's."""

    split_brain_s: Stats = field(default_factory=Stats)
    one_master_s: Stats = field(default_factory=Stats)
    dhcp_normal_s: Stats = field(default_factory=Stats)
    healed_s: Stats = field(default_factory=Stats)
    neighbours_s: Stats = field(default_factory=Stats)
    leased_twice: int = 0  # addresses leased to two MACs, over all trials
    trials: list[CutReport] = field(default_factory=list)

    @classmethod
    def of(cls, trials: list[CutReport], repeat: int, problems: Sequence[str] = (), **about) -> CutSeries:
        s = super().of(trials, repeat, problems, **about)
        assert isinstance(s, CutSeries)
        for k in ("split_brain_s", "one_master_s", "dhcp_normal_s", "healed_s", "neighbours_s"):
            setattr(s, k, stats([getattr(r, k) for r in trials if getattr(r, k) is not None]))
        s.leased_twice = sum(len(r.leased_twice) for r in trials)
        return s


def cut_lines(s: CutSeries) -> list[str]:
    """The cut's own figures, below the series' table."""
    return [f"{what}: {_dist(st)}" for what, st in (
        ("split brain after the cut", s.split_brain_s), ("one master after the restore", s.one_master_s),
        ("DHCP normal after the restore", s.dhcp_normal_s), ("initial state after the restore", s.healed_s),
        ("every neighbour cache at the master after the restore", s.neighbours_s))
        if st.n] + [f"addresses leased twice: {s.leased_twice}"]


@dataclass(kw_only=True)
class DhcpSeries(_Json):
    drill: str = "failover.dhcp"
    lab: str = ""
    repeat: int = 0
    passed: int = 0
    lease_s: Stats = field(default_factory=Stats)  # the new lease with the primary down
    restored_s: Stats = field(default_factory=Stats)  # the primary restarted -> both normal
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    trials: list[DhcpReport] = field(default_factory=list)

    @classmethod
    def of(cls, trials: list[DhcpReport], repeat: int, problems: Sequence[str] = (), **about
           ) -> DhcpSeries:
        failed = [f"trial {i}: {p}" for i, r in enumerate(trials, 1) for p in r.problems]
        return cls(**about, repeat=repeat, passed=sum(r.ok for r in trials),
                   lease_s=stats([r.lease_s for r in trials]),
                   restored_s=stats([r.restored_s for r in trials]),
                   ok=bool(trials) and len(trials) == repeat and not failed and not problems,
                   problems=[*problems, *failed], trials=trials)


def load(text: str | bytes) -> GatewayReport | GatewaySeries:
    """A failover drill's saved report: one trial (as reports always were) or a series."""
    try:
        repeated = "trials" in json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    return (GatewaySeries if repeated else GatewayReport).from_json(text)


def over_bound(trials: Sequence[GatewayReport], bound_ms: float) -> list[str]:
    """Every outage longer than the bound (an open one always), naming trial and container."""
    return [f"trial {i}: {o.container} IPv{o.family} "
            + (f"{o.ms} ms" if o.ms is not None else "never answered again")
            + f" ({o.lost} probes lost, {o.phase}) > bound {bound_ms:g} ms"
            for i, r in enumerate(trials, 1) for o in r.outages if o.ms is None or o.ms > bound_ms]


# -- for people ------------------------------------------------------------------------------------

def _cell(v: float | None, n: int, digits: int = 0, none: str = "open") -> str:
    if n == 0:
        return "-"
    return none if v is None else f"{v:.{digits}f}"


def _dist(s: Stats) -> str:
    """Seconds; None: it never happened (within the drill's deadline)."""
    if s.n == 0:
        return "-"
    cells = [f"{name} {_cell(getattr(s, name), s.n, 2, 'never')}" for name in ("p50", "p95", "p99", "max")]
    return "  ".join(cells) + " s" + f"  (n={s.n}{f', {s.open} never' if s.open else ''})"


HEADER = ("CONTAINER", "IP", "FAULT ON p50", "p95", "p99", "max", "RESTORED p50", "p95", "p99", "max",
          "LOST", "worst")


def table(s: GatewaySeries) -> tuple[str, tuple[str, ...], list[tuple[str, ...]], list[str]]:
    """The series for people: a title, a table (one row per container and probe family: its
    longest outage per trial while the fault was on, and after the restore) and the lines below."""
    title = (f"{s.drill} --mode {s.mode} --family {s.family}: {len(s.trials)} trials, "
             f"{s.passed} passed: " + ("PASS" if s.ok else "FAIL"))
    out = []
    for r in s.rows:
        q = ("p50", "p95", "p99", "max")
        out.append((r.container, f"v{r.family}",
                    *(_cell(getattr(r.outage_ms, k), r.outage_ms.n) for k in q),
                    *(_cell(getattr(r.failback_ms, k), r.failback_ms.n) for k in q),
                    str(r.lost), str(r.lost_max)))
    moved = s.takeover_s.n
    below = ["outages in ms: each trial's longest per prober, while the fault was on and once restored;",
             f"LOST: probes lost in all {len(s.trials)} trials, worst: in one of them",
             f"takeover (fault -> the backup holds both VIPs): {_dist(s.takeover_s)}" if moved else
             "takeover: none (the fault does not move the gateway)",
             f"failback (restore -> the master alone holds both VIPs): {_dist(s.failback_s)}"
             if moved else "",
             f"a VIP on both tenants at once: {_dist(s.vips_on_both_s)}",
             f"spurious VRRP transitions: {s.spurious} (in {s.spurious_trials} of {len(s.trials)} trials)"]
    if isinstance(s, CutSeries):
        below += cut_lines(s)
    below += [f"problem: {p}" for p in s.problems]
    return title, HEADER, out, [b for b in below if b]


def dhcp_table(s: DhcpSeries) -> str:
    lines = [f"failover.dhcp: {len(s.trials)} trials, {s.passed} passed: " + ("PASS" if s.ok else "FAIL"),
             f"  new lease with the primary down: {_dist(s.lease_s)}",
             f"  both back to their normal state after the restart: {_dist(s.restored_s)}"]
    lines += [f"  problem: {p}" for p in s.problems]
    return "\n".join(lines)
