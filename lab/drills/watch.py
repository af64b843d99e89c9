"""What a drill observes while it runs: its own steps (the timeline), who holds the VIPs and
which tenant the router marks the flows for (the watch), and the VRRP transitions each
tenant's notify script recorded."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.checks.seed import split_brain
from lab.drills.access import LabAccess
from lab.drills.probes import INTERVAL
from lab.drills.report import Event


@dataclass
class Timeline:
    """What vxlab did and saw, on the host's clock, in seconds since t0."""

    t0: float
    progress: Callable[[str], None]
    events: list[Event] = field(default_factory=list)

    def mark(self, what: str, node: str) -> float:
        t = time.time() - self.t0
        self.events.append(Event(round(t, 3), what, node, "host"))
        self.progress(f"[{t:5.1f}s] {what}")
        return t


@dataclass(eq=False)  # a thread: hashed by identity
class Watch(threading.Thread):
    """Polls who holds the VIPs and which mark the router gives the containers' flows, and
    what the fault's mode observes; records each change on the host's clock."""

    access: LabAccess
    t0: float
    observe: Callable[[], list[str]] = list  # the mode's own watch: what is wrong right now
    states: Callable[[], dict[str, str]] = dict  # more to record as it changes: what -> its state
    state: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    holders: dict[str, list[str]] = field(default_factory=dict)
    observed: dict[str, float] = field(default_factory=dict)  # what the mode saw wrong: first seen
    both_since: float | None = None  # a VIP is on both tenants since (None: on one at most)
    both_s: float = 0.0  # how long a VIP was on both tenants at once, in all
    alone: list[tuple[float, str | None]] = field(default_factory=list)  # (t, holder()) at each change
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def event(self, what: str, node: str) -> float:
        t = round(time.time() - self.t0, 3)
        self.events.append(Event(t, what, node, "host"))
        return t

    def holder(self) -> str | None:
        """The one tenant holding both VIPs, if exactly one does."""
        full = [n for n, held in self.holders.items() if len(held) == 2]
        return full[0] if len(full) == 1 else None

    def run(self) -> None:
        marks_seen: str | None = None
        wrong: set[str] = set()
        while not self.stopping.is_set():
            began = time.monotonic()
            self._vips()
            marks_seen = self._marks(marks_seen)
            wrong = self._observe(wrong)
            self._states()
            # Busy half the time at most: on an emulated VM a round costs seconds of its CPU,
            # which keepalived needs more than we do.
            time.sleep(max(INTERVAL, time.monotonic() - began))

    def _vips(self) -> None:
        lab = self.access.lab
        now = self.access.vip_holders()
        for name, held in now.items():
            vm = lab.tenants[name].vm
            was = self.holders.get(name)
            if was is None:
                continue
            left, arrived = [v for v in was if v not in held], [v for v in held if v not in was]
            if left:
                self.event(f"VIPs leave {vm}: {' '.join(left)}", vm)
            if arrived:
                self.event(f"VIPs arrive on {vm}: {' '.join(arrived)}", vm)
        # Timed to a round of reads: the tenants are read one after the other, so a takeover
        # can show a moment of overlap that was not there.
        both = sorted(set.intersection(*(set(h) for h in now.values())))
        if both and self.both_since is None:
            self.both_since = self.event(split_brain(lab, now) or f"VIPs on both tenants: {' '.join(both)}",
                                         "host")
        elif not both and self.both_since is not None:
            t = self.event("VIPs on one tenant again", "host")
            self.both_s += t - self.both_since
            self.both_since = None
        self.holders = now
        if not self.alone or self.alone[-1][1] != self.holder():
            self.alone.append((round(time.time() - self.t0, 3), self.holder()))

    def _states(self) -> None:
        for what, state in self.states().items():
            if self.state.get(what) != state:
                self.event(f"{what}: {state}", "host")
                self.state[what] = state

    def overlap(self) -> float:
        """How long a VIP was on both tenants at once, until now."""
        now = round(time.time() - self.t0, 3)
        return round(self.both_s + (now - self.both_since if self.both_since is not None else 0), 3)

    def alone_since(self, tenant: str, t: float) -> float | None:
        """When the tenant last became the one holding both VIPs, if it is now and that was
        at or after t."""
        if not self.alone or self.alone[-1][1] != tenant or self.alone[-1][0] < t:
            return None
        return self.alone[-1][0]

    def _marks(self, seen: str | None) -> str | None:
        lab = self.access.lab
        names = {t.fwmark: n for n, t in lab.tenants.items()}
        r = self.access.node(lab.router.vm).run(["conntrack", "-L", "-f", "ipv4", "-p", "icmp",
                                                 "-s", str(lab.shared_vlan.ipv4)], check=False)
        marks = sorted({int(m) for m in re.findall(r"mark=(\d+)", r.out) if int(m)})
        label = "+".join(f"{m} ({names.get(m, '?')})" for m in marks)
        if label and label != seen:
            if seen is not None:
                self.event(f"router marks the containers' flows {label}", lab.router.vm)
            return label
        return seen

    def _observe(self, before: set[str]) -> set[str]:
        now = set(self.observe())
        for what in sorted(now - before):
            self.observed.setdefault(what, self.event(what, "host"))
        for what in sorted(before - now):
            self.event(f"no longer: {what}", "host")
        return now


def unexplained(seen: list[tuple[float, str]], expected: tuple[str, ...]) -> list[tuple[float, str]]:
    """The transitions of `seen` that are not the next of `expected` states (in order; an
    expected state may be skipped: keepalived need not pass through it)."""
    out, i = [], 0
    for t, state in seen:
        if state in expected[i:]:
            i = expected.index(state, i) + 1
        else:
            out.append((t, state))
    return out


def transitions(access: LabAccess, t0: float) -> list[Event]:
    """VRRP transitions since t0 as each tenant's notify script recorded them (its clock)."""
    out = []
    for name, t in access.lab.tenants.items():
        for ts, state in access.transitions(name, t0):
            out.append(Event(round(ts - t0, 3), f"{t.vm} enters {state}", t.vm, t.vm))
    return out
