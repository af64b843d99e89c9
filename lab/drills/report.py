"""A drill's report as data: what happened (events), what every prober saw (series of probes),
the outages in them, the TCP stream's fate, the verdict. It round-trips through JSON with the
field names reports have always had, so saved reports (and tests/fixtures) load and plot.

Times are seconds since the drill started: probes on each prober's own clock, events on the
clock named in each ("host" for what vxlab observed, a node's name for what it recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import NamedTuple, Self

from pydantic import TypeAdapter

PHASES = ("failover", "failback")


class Probe(NamedTuple):
    """One probe: when it left (on its prober's clock) and whether it was answered."""

    t: float
    replied: bool


Series = list[Probe]  # one prober's probes, in the order they left


@dataclass
class Event:
    t: float
    what: str
    node: str = ""
    clock: str = "host"


@dataclass(kw_only=True)
class Outage:
    """A run of lost probes: from the first lost one's departure to the next answered one's
    (end and ms None: never answered again)."""

    container: str = ""
    family: str = ""
    start: float
    end: float | None
    ms: int | None
    lost: int
    phase: str  # failover (before the restore) or failback

    @property
    def open(self) -> bool:
        return self.end is None


@dataclass(kw_only=True)
class TcpStream:
    container: str
    target: str = ""
    survived: bool
    resets: int = 0
    detail: str = ""  # the stream's last words


@cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


class _Json:
    """JSON both ways, through pydantic (it checks the types on the way in)."""

    def to_json(self) -> str:
        return _adapter(type(self)).dump_json(self, indent=1).decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Raises pydantic.ValidationError (a ValueError) on what is not such a report."""
        return _adapter(cls).validate_json(text)


@dataclass(kw_only=True)
class GatewayReport(_Json):
    """The failover drill of one tenant (see README "Drills")."""

    drill: str
    tenant: str = ""
    mode: str = ""
    family: str = "both"
    lab: str = ""
    clock: str = "seconds since the drill started"
    interval: float = 0.05
    expected_gateway: str = ""
    takeover_s: float | None = None
    master_down_s: float | None = None
    events: list[Event] = field(default_factory=list)
    probes: dict[str, dict[str, Series]] = field(default_factory=dict)  # container -> family -> series
    outages: list[Outage] = field(default_factory=list)
    tcp: TcpStream | None = None
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    # Added with repeated drills (older reports load without them):
    master: str = ""  # the VM holding the gateway when the drill began
    failback_s: float | None = None  # restore -> the master alone holds both VIPs again
    spurious: list[str] = field(default_factory=list)  # VRRP transitions the fault does not explain
    vips_on_both_s: float = 0.0  # how long a VIP was on both tenants at once (to a round of reads)
    profile: str = ""  # the VRRP timing profile (vrrp.profile: seed, fast)

    @property
    def moved(self) -> bool:
        """The fault moved the gateway (so there was a takeover and a failback to time)."""
        return bool(self.master) and self.master != self.expected_gateway

    def rows(self) -> list[tuple[str, str]]:
        """(container, family) of every probe series, in report order, families sorted (4 before 6)."""
        return [(c, fam) for c, fams in self.probes.items() for fam in sorted(fams)]

    def outages_of(self, container: str, family: str, phase: str | None = None) -> list[Outage]:
        return [o for o in self.outages if (o.container, o.family) == (container, family)
                and phase in (None, o.phase)]


@dataclass(kw_only=True)
class CutReport(GatewayReport):
    """failover.vxlan and failover.link: a cut, what it split or cut off, and the healing."""

    split_brain: str = ""  # as first seen: "split brain: blueVM and greenVM both hold ..."
    split_brain_s: float | None = None  # the cut -> both tenants hold the VIPs
    cut_off: dict[str, str] = field(default_factory=dict)  # container -> why, while the fault is on
    broken: list[str] = field(default_factory=list)  # what was wrong once the fault was undone
    repair_s: float | None = None  # `invoke provision` repairing it
    one_master_s: float | None = None  # restore -> one tenant alone holds the VIPs
    dhcp_normal_s: float | None = None  # restore -> both DHCP servers in failover state normal
    healed_s: float | None = None  # restore -> the lab in its initial state
    duplicates: list[str] = field(default_factory=list)  # after healing: an address twice on VLAN 7
    leased_twice: list[str] = field(default_factory=list)  # after healing: an address bound to two MACs
    stale_neighbours: list[str] = field(default_factory=list)  # after healing: a VIP cached at the backup
    neighbours_s: float | None = None  # restore -> every container's cache sends the VIPs to the master


@dataclass(kw_only=True)
class DhcpReport(_Json):
    """The DHCP failover drill: the primary stopped, a client's new lease from the secondary."""

    drill: str = "failover.dhcp"
    lab: str = ""
    client: str = ""
    served_by_before: str | None = None
    lease_s: float | None = None
    restored_s: float | None = None  # the primary started again -> both in their normal state
    events: list[Event] = field(default_factory=list)
    ok: bool = False
    problems: list[str] = field(default_factory=list)


# -- for people ------------------------------------------------------------------------------------

WORST = 10  # series shown by name when a big lab probes more (the worst first)


def summary(report: GatewayReport) -> str:
    """The report for people: the timeline, then outages per container and family; in a big
    lab the worst WORST series by name and one line for the rest."""
    lines = [f"{report.drill} (mode {report.mode}, family {report.family}): "
             + ("PASS" if report.ok else "FAIL")]
    lines += [f"  {e.t:7.2f} s  [{e.clock:>8}]  {e.what}" for e in report.events]
    # the phases split at the restore: what the fault cost, then what its end cost
    lines.append(f"  {'container':10} {'family':6} {'fault on: ms (lost)':>20} {'restored: ms (lost)':>20}")
    rows = []  # ((never answered again, ms, lost), line) per container and family
    for c, fams in report.probes.items():
        for fam in fams:
            cost = [report.outages_of(c, fam, phase) for phase in PHASES]
            cells = [f"{sum(o.ms or 0 for o in os_)} ({sum(o.lost for o in os_)})" if os_ else "0 (0)"
                     for os_ in cost]
            outs = [o for os_ in cost for o in os_]
            worst = (any(o.open for o in outs), sum(o.ms or 0 for o in outs), sum(o.lost for o in outs))
            rows.append((worst, f"  {c:10} IPv{fam:3} {cells[0]:>20} {cells[1]:>20}"))
    rest: list[tuple[bool, int, int]] = []
    if len(rows) > WORST + 1:
        ranked = sorted(rows, key=lambda r: r[0], reverse=True)
        rows, rest = ranked[:WORST], [w for w, _ in ranked[WORST:]]
    lines += [line for _, line in rows]
    if rest:
        hit = [w for w in rest if w[1] or w[2]]
        lines.append(f"  ... {len(rest)} more series: " + (
            f"{len(hit)} lost probes, at most {max(w[1] for w in hit)} ms" if hit else "none lost a probe"))
    tcp = report.tcp
    if tcp is not None:
        lines.append(f"  TCP stream {tcp.container} -> {tcp.target}: "
                     + ("survived, no reset" if tcp.survived else "BROKEN"))
    lines += [f"  problem: {p}" for p in report.problems]
    return "\n".join(lines)


def cut_summary(report: CutReport) -> str:
    """The failover drill's summary, the containers cut off (and why) and the healing's figures."""
    lines = summary(report).splitlines()
    at = next((i for i, line in enumerate(lines) if line.startswith("  problem: ")), len(lines))
    extra = [f"  cut off while the fault was on: {c}: {why}" for c, why in report.cut_off.items()]
    extra += [f"  {what}: {v:.2f} s" for what, v in (
        ("split brain after the cut", report.split_brain_s),
        ("invoke provision (the repair)", report.repair_s),
        ("one master after the restore", report.one_master_s),
        ("DHCP failover normal after the restore", report.dhcp_normal_s),
        ("the lab in its initial state after the restore", report.healed_s),
        ("every neighbour cache at the master after the restore", report.neighbours_s)) if v is not None]
    extra.append(f"  addresses leased twice: {len(report.leased_twice)}; addresses twice on VLAN 7: "
                 f"{len(report.duplicates)}")
    return "\n".join(lines[:at] + extra + lines[at:])


def dhcp_summary(report: DhcpReport) -> str:
    lines = [f"failover.dhcp: {'PASS' if report.ok else 'FAIL'}"]
    lines += [f"  {e.t:7.2f} s  {e.what}" for e in report.events]
    if report.lease_s is not None:
        lines.append(f"  new lease for {report.client} with the primary down: {report.lease_s:.2f} s")
    if report.restored_s is not None:
        lines.append(f"  both servers back to their normal state after the restart: "
                     f"{report.restored_s:.2f} s")
    lines += [f"  problem: {p}" for p in report.problems]
    return "\n".join(lines)
