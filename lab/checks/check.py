"""A check: where it runs, what it runs, what must hold, in words with the expected values.
A predicate takes the command's result and returns None if it holds, else what was found."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.facts import Fact
from lab.substrate.base import Result

Predicate = Callable[[Result], str | None]


@dataclass(frozen=True)
class Check:
    name: str           # e.g. "addressing.lease"
    node: str           # where it runs
    argv: tuple[str, ...]
    holds: Predicate
    expect: str         # what must hold, in words, with the expected values
    timeout: float = 20
    converged: bool = False  # part of what `invoke up` waits for (the lab has converged)

    @classmethod
    def on(cls, name: str, fact: Fact[Any], holds: Callable[[Any], str | None], expect: str,
           converged: bool = False) -> Check:
        """A check of a role's fact: the same command and parser status and drills read."""
        return cls(name, fact.node, fact.argv, lambda r: holds(fact.parse(r)), expect, fact.timeout,
                   converged)


@dataclass
class Outcome:
    check: Check
    ok: bool
    found: str = ""
    tries: int = 0
    seconds: float = 0.0

    def row(self) -> dict:
        c = self.check
        return {"check": c.name, "node": c.node, "ok": self.ok, "expected": c.expect,
                "found": self.found, "tries": self.tries, "seconds": round(self.seconds, 2)}


def succeeds(r: Result) -> str | None:
    return None if r.ok else f"exit {r.rc}: {last(r.err or r.out)}"


def replies(r: Result) -> str | None:
    """ping got a reply; else how many of its probes went unanswered, or why it could not send."""
    if r.ok:
        return None
    m = re.search(r"(\d+) packets transmitted, (\d+) received", r.out)
    if m:
        return f"no reply to {m.group(1)} pings"
    return f"cannot ping: {last(r.err or r.out)}"


def last(text: str, n: int = 300) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return (text[:n] + "...") if len(text) > n else (text or "(nothing)")
