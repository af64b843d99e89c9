"""Shorthands of a lab description, written out in full before validation, so that every rule
sees the lab as if it had been listed: `clients: 100` is blueC0 ... blueC99 (the seed's names)."""

from __future__ import annotations

from typing import Any

from lab.model.rules import Problem
from lab.model.types import MAX_CLIENTS


def expand(data: dict) -> tuple[dict, list[Problem]]:
    """The description with its shorthands written out, and the problems of those that cannot be."""
    tenants = data.get("tenants")
    if not isinstance(tenants, dict):
        return data, []
    out: dict[Any, Any] = {}
    problems = []
    for name, t in tenants.items():
        n = t.get("clients") if isinstance(t, dict) else None
        if isinstance(n, int) and not isinstance(n, bool):
            if 0 <= n <= MAX_CLIENTS:
                t = {**t, "clients": [f"{name}C{i}" for i in range(n)]}
            else:
                problems.append(Problem(f"tenants.{name}.clients",
                                        f"a list of names or a count from 0 to {MAX_CLIENTS}, not {n}"))
        out[name] = t
    return {**data, "tenants": out}, problems
