"""Facts: what a node can tell, as the command that reads it and the parser of its output.

A role says where its daemons keep their state and how to read it, once, as facts; status,
convergence, checks and drills read the same facts. Reading is batched: each node's facts in
one command (a command costs seconds on an emulated VM), every node at once.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lab.pool import pmap
from lab.substrate import batch
from lab.substrate.base import Node, Result
from lab.substrate.systemd import pid_alive

T = TypeVar("T")
NodeOf = Callable[[str], Node]


@dataclass(frozen=True)
class Fact(Generic[T]):
    node: str
    argv: tuple[str, ...]
    parse: Callable[[Result], T]
    timeout: float = 10


def run(node_of: NodeOf, commands: Sequence[tuple[str, tuple[str, ...], float]]) -> list[Result]:
    """(node, argv, timeout) commands: each node's in one command, the nodes side by side;
    the results in the commands' order."""
    by_node: dict[str, list[int]] = {}
    for i, (node, _, _) in enumerate(commands):
        by_node.setdefault(node, []).append(i)
    groups = list(by_node.items())
    found = pmap(lambda g: batch.run_many(node_of(g[0]), [commands[i][1:] for i in g[1]]), groups)
    out: dict[int, Result] = {}
    for (_, mine), results in zip(groups, found, strict=True):
        out.update(zip(mine, results, strict=True))
    return [out[i] for i in range(len(commands))]


def read(node_of: NodeOf, facts: Sequence[Fact[Any]]) -> list[Any]:
    """Every fact's value, in order."""
    results = run(node_of, [(f.node, f.argv, f.timeout) for f in facts])
    return [f.parse(r) for f, r in zip(facts, results, strict=True)]


# -- facts every role reads the same way ---------------------------------------------------------

@dataclass(frozen=True)
class Nic:
    """An interface as `ip -json addr` shows it."""

    mac: str | None
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...]

    def ips(self, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
        return [str(a.ip) for a in self.addresses if a.ip in net]


def nic(node: Node, dev: str) -> Fact[Nic]:
    return Fact(node.name, ("ip", "-j", "addr", "show", "dev", dev), _nic)


def _nic(r: Result) -> Nic:
    links = json.loads(r.out) if r.ok and r.out.strip() else []
    addrs = tuple(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
                  for link in links for a in link.get("addr_info", []))
    return Nic(links[0].get("address") if links else None, addrs)


@dataclass(frozen=True)
class Route:
    gateway: str | None
    dev: str | None


def default_route(node: Node, family: int) -> Fact[Route]:
    return Fact(node.name, ("ip", "-j", f"-{family}", "route", "show", "default"), _route)


def _route(r: Result) -> Route:
    routes = json.loads(r.out) if r.ok and r.out.strip() else []
    return Route(routes[0].get("gateway"), routes[0].get("dev")) if routes else Route(None, None)


def routes(node: Node, family: int, table: str = "main") -> Fact[frozenset[str]]:
    """A routing table, each route as `ip route` writes it: `DST [via GW] dev DEV`."""
    return Fact(node.name, ("ip", "-j", f"-{family}", "route", "show", "table", table),
                lambda r: frozenset(route_text(x, family) for x in _json(r)))


def route_text(entry: dict, family: int) -> str:
    """One route of `ip -j route`, with a host route's prefix length written out."""
    dst = entry.get("dst", "")
    if dst != "default" and "/" not in dst:
        dst += "/32" if family == 4 else "/128"
    via = f" via {entry['gateway']}" if entry.get("gateway") else ""
    return f"{dst}{via} dev {entry.get('dev', '')}"


def rules(node: Node, family: int) -> Fact[frozenset[str]]:
    """The policy rules that select a table by fwmark, as `pref N fwmark M lookup T`."""
    return Fact(node.name, ("ip", "-j", f"-{family}", "rule", "show"),
                lambda r: frozenset(f"pref {x.get('priority')} fwmark {x['fwmark']} lookup {x.get('table')}"
                                    for x in _json(r) if "fwmark" in x))


def neighbours(node: Node, dev: str) -> Fact[dict[str, tuple[str | None, str]]]:
    """The node's neighbour cache on dev: address -> (its MAC, if one is cached; the entry's state)."""
    return Fact(node.name, ("ip", "-j", "neigh", "show", "dev", dev),
                lambda r: {x["dst"]: (x.get("lladdr"), " ".join(x.get("state", []))) for x in _json(r)})


def _json(r: Result) -> list[dict]:
    return json.loads(r.out) if r.ok and r.out.strip() else []


def dead(node: Node, daemons: dict[str, str]) -> Fact[list[str]]:
    """Which of these daemons (name: its pid file on the node) are not running."""
    tests = "; ".join(f"{pid_alive(node.path(pidfile))} || echo {shlex.quote(name)}"
                      for name, pidfile in daemons.items())
    return Fact(node.name, ("sh", "-c", tests), lambda r: r.out.split() if r.ok else list(daemons))
