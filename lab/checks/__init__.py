"""Checks as data (check.py), the seed's "Check the results" (seed.py), and running them
(run.py); `converged` is the named subset `invoke up`, status and the drills wait for."""

from __future__ import annotations

from collections.abc import Callable

from lab.checks.check import Check, Outcome, Predicate, replies, succeeds
from lab.checks.run import GROUPS, Report, run, run_batch, select
from lab.checks.seed import (
    apt_ok,
    bridge_learned,
    build,
    container_macs,
    converged,
    dhcp_pair,
    eui64,
    flows_from,
    ovs_learned,
    split_brain,
)
from lab.substrate.base import Node


def problems(checks: list[Check], node: Callable[[str], Node]) -> list[str]:
    """What of these checks fails now (each once): empty when all hold."""
    return run(checks, node, wait=0).problems()


__all__ = ["GROUPS", "Check", "Outcome", "Predicate", "Report", "apt_ok", "bridge_learned",
           "build", "container_macs", "converged", "dhcp_pair", "eui64", "flows_from",
           "ovs_learned", "problems", "replies", "run", "run_batch", "select", "split_brain", "succeeds"]
