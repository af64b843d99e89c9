"""Running checks: every node's pending checks in one command per round, all nodes at once;
a failing check retried until a deadline (a converging lab passes late); the report for
people (a table), for machines (JSON, JUnit), and as the problems that keep a lab from
having converged."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.etree import ElementTree

from lab import facts
from lab.checks.check import Check, Outcome
from lab.substrate import batch
from lab.substrate.base import Node, Result

GROUPS = ("addressing", "gateway", "vxlan", "internet", "router")


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    causes: list[str] = field(default_factory=list)  # what the failing nodes say is wrong (diagnose.py)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def problems(self) -> list[str]:
        return [f"{o.check.node}: expected {o.check.expect}; found {o.found}"
                for o in self.outcomes if not o.ok]

    def summary(self) -> list[str]:
        """One line per check, over all the nodes it ran on (for big labs)."""
        by_name: dict[str, list[Outcome]] = {}
        for o in self.outcomes:
            by_name.setdefault(o.check.name, []).append(o)
        out = []
        for name, os_ in by_name.items():
            failed = [o.check.node for o in os_ if not o.ok]
            if failed:
                shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
                out.append(f"FAIL {name:24} {len(failed)} of {len(os_)} nodes: {shown}")
            else:
                out.append(f"ok   {name:24} {len(os_)} of {len(os_)} nodes")
        return out

    def table(self) -> str:
        rows = [("CHECK", "NODE", "RESULT", "DETAIL")]
        for o in self.outcomes:
            detail = o.check.expect if o.ok else f"expected {o.check.expect}; found {o.found}"
            rows.append((o.check.name, o.check.node, "ok" if o.ok else "FAIL", detail))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join([r[0].ljust(w[0]), r[1].ljust(w[1]), r[2].ljust(w[2]), r[3]]) for r in rows]
        failed = sum(not o.ok for o in self.outcomes)
        lines.append(f"{len(self.outcomes) - failed} passed, {failed} failed")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"ok": self.ok, "causes": self.causes, "checks": [o.row() for o in self.outcomes]},
                          indent=2)

    def junit(self) -> str:
        suite = ElementTree.Element("testsuite", name="vxlab", tests=str(len(self.outcomes)),
                                    failures=str(sum(not o.ok for o in self.outcomes)))
        for o in self.outcomes:
            case = ElementTree.SubElement(suite, "testcase", classname=o.check.name,
                                          name=f"{o.check.name}[{o.check.node}]", time=f"{o.seconds:.2f}")
            if not o.ok:
                ElementTree.SubElement(case, "failure", message=f"expected {o.check.expect}").text = o.found
        return ElementTree.tostring(suite, encoding="unicode")


def run(checks: list[Check], node: Callable[[str], Node], wait: float = 30,
        progress: Callable[[Outcome], None] = lambda o: None) -> Report:
    """Run every check; a failing one is retried until `wait` seconds after the start (0: once).

    Each round runs, on every node at once, that node's pending checks in one command (a
    command costs seconds in a container of an emulated VM: one per node and round, not one
    per check). The router's checks come last: its conntrack check needs the flows the
    internet group makes. When the lab was not still (a check failed or passed late), what
    held is read once more at the end: a check is not reported passed on a reading the lab
    has since moved away from. The report keeps the checks' order."""
    deadline = time.monotonic() + wait
    outcomes: dict[int, Outcome] = {}
    for phase in _phases(checks):
        started = time.monotonic()
        tries: dict[int, int] = dict.fromkeys(phase, 0)
        pending = list(phase)
        while pending:
            results = facts.run(node, [(checks[i].node, checks[i].argv, checks[i].timeout) for i in pending])
            late = time.monotonic() > deadline
            still = []
            for i, result in zip(pending, results, strict=True):
                tries[i] += 1
                found = checks[i].holds(result)
                if found is None or late:
                    outcomes[i] = Outcome(checks[i], found is None, found or "", tries[i],
                                          time.monotonic() - started)
                    progress(outcomes[i])
                else:
                    still.append(i)
            pending = still
            if pending:
                time.sleep(0.5)
    if any(not o.ok or o.tries > 1 for o in outcomes.values()):
        _reread(checks, node, outcomes, progress)
    return Report([outcomes[i] for i in sorted(outcomes)])


def _reread(checks: list[Check], node: Callable[[str], Node], outcomes: dict[int, Outcome],
            progress: Callable[[Outcome], None]) -> None:
    held = [i for i, o in outcomes.items() if o.ok]
    results = facts.run(node, [(checks[i].node, checks[i].argv, checks[i].timeout) for i in held])
    for i, result in zip(held, results, strict=True):
        o = outcomes[i]
        o.tries += 1
        found = checks[i].holds(result)
        if found is not None:
            o.ok, o.found = False, f"held at first, then: {found}"
            progress(o)


def _phases(checks: list[Check]) -> list[list[int]]:
    last = [i for i, c in enumerate(checks) if c.name.startswith("router.")]
    first = [i for i in range(len(checks)) if i not in set(last)]
    return [p for p in (first, last) if p]


def run_batch(node: Callable[[str], Node], name: str, checks: list[Check]) -> list[Result]:
    """The checks of one node, in one command."""
    return batch.run_many(node(name), [(c.argv, c.timeout) for c in checks])


def select(checks: list[Check], group: str | None) -> list[Check]:
    if group in (None, "connectivity-all", "all"):
        return checks
    if group not in GROUPS:
        raise ValueError(f"no check group {group!r}; groups: {', '.join(GROUPS)}")
    return [c for c in checks if c.name.split(".")[0] == group]
