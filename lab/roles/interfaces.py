"""What a node's interfaces file says must be live, whether it is, and the one command that
puts back each piece that is not. ifupdown only remembers what it brought up; this compares
with the kernel, so that a link set down by hand, an address the kernel dropped or a route
deleted is seen, named and re-applied, without taking anything else down.

Read from the rendered file itself, so nothing of it is written twice: the links that carry
addresses or bring themselves up, `address`, `gateway` (a default route), `up ip -6 addr
replace A dev $IFACE`, `post-up ip [-6] route replace ...`, `post-up ip rule add pref N ...`.
Links of Open vSwitch stanzas that carry no address are OVS's business, not the kernel's.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field

from lab.facts import Fact, route_text
from lab.substrate.base import Node, Result

SEP = "@@vxlab-intent"
READS = ("ip -j link show", "ip -j addr show", "ip -j -4 route show table all",
         "ip -j -6 route show table all", "ip -j -4 rule show", "ip -j -6 rule show")


@dataclass(frozen=True)
class Route:
    family: int
    dst: str  # "default" or a prefix
    via: str | None
    dev: str
    table: str

    def __str__(self) -> str:
        table = "" if self.table == "main" else f" table {self.table}"
        return f"route {self.text()}{table}"

    def text(self) -> str:
        """As `ip route` writes it (lab.facts.route_text)."""
        return f"{self.dst}{f' via {self.via}' if self.via else ''} dev {self.dev}"

    def fix(self) -> tuple[str, ...]:
        via = ("via", self.via) if self.via else ()
        return ("ip", f"-{self.family}", "route", "replace", self.dst, *via, "dev", self.dev,
                "table", self.table)


@dataclass(frozen=True)
class Rule:
    family: int
    pref: int
    add: tuple[str, ...]  # the file's own `ip rule add ...`


@dataclass
class Intent:
    """What must be live on a node, from its interfaces file."""

    links: list[str] = field(default_factory=list)
    addresses: dict[str, list[str]] = field(default_factory=dict)  # interface -> addresses
    routes: list[Route] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True)
class Drift:
    """One piece of the intent that is not live, and the command that puts it back."""

    what: str
    fix: tuple[str, ...]  # empty: a link gone altogether, for ifupdown to make again
    link: str = ""


def intent(text: str) -> Intent:
    out = Intent()
    iface, family = "", 4
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        words = line.split()
        if not words:
            continue
        if words[0] == "iface" and len(words) >= 4:
            iface, family = words[1], 6 if words[2] == "inet6" else 4
        elif words[0] == "auto" or words[0].startswith(("allow-", "source", "mapping")):
            iface = ""  # a stanza's options end here
        elif not iface:
            continue
        elif words[0] == "address" and len(words) == 2:
            out.addresses.setdefault(iface, []).append(words[1])
            out.links.append(iface)
        elif words[0] == "gateway" and len(words) == 2:
            out.routes.append(Route(family, "default", words[1], iface, "main"))
        elif line == "up ip link set dev $IFACE up":
            out.links.append(iface)
        elif m := re.fullmatch(r"up ip -6 addr replace (\S+) dev \$IFACE", line):
            out.addresses.setdefault(iface, []).append(m.group(1))
        elif m := re.fullmatch(r"post-up ip (-6 )?route replace (.*)", line):
            out.routes.append(_route(6 if m.group(1) else 4, m.group(2).replace("$IFACE", iface)))
        elif m := re.fullmatch(r"post-up (ip (-6 )?rule add pref (\d+) .*)", line):
            out.rules.append(Rule(6 if m.group(2) else 4, int(m.group(3)), tuple(m.group(1).split())))
    out.links = list(dict.fromkeys(out.links))
    return out


def _route(family: int, spec: str) -> Route:
    words = spec.split()
    opts = dict(zip(words[1::2], words[2::2], strict=False))
    return Route(family, words[0], opts.get("via"), opts.get("dev", ""), opts.get("table", "main"))


def fact(node: Node, text: str) -> Fact[list[Drift]]:
    """The node's live links, addresses, routes and rules against the file: what differs."""
    wanted = intent(text)
    script = f"; echo '{SEP}'; ".join(READS)
    return Fact(node.name, ("sh", "-c", script), lambda r: differences(wanted, r))


def differences(wanted: Intent, r: Result) -> list[Drift]:
    parts = r.out.split(f"{SEP}\n")
    if not r.ok or len(parts) != len(READS):
        why = (r.err or r.out).strip()[-200:]
        return [Drift(f"its links, addresses and routes could not be read: {why}", ())]
    links, addrs, routes4, routes6, rules4, rules6 = (json.loads(p.strip() or "[]") for p in parts)
    up = {x["ifname"]: "UP" in x.get("flags", []) for x in links}
    held = {x["ifname"]: {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
                          for a in x.get("addr_info", [])} for x in addrs}
    missing = [name for name in wanted.links if name not in up]
    out = [Drift(f"{name} is DOWN", ("ip", "link", "set", "dev", name, "up"))
           for name in wanted.links if name in up and not up[name]]
    for name, want in wanted.addresses.items():
        if name not in missing:
            out += [Drift(f"no {a} on {name}", ("ip", "addr", "replace", a, "dev", name))
                    for a in want if ipaddress.ip_interface(a) not in held.get(name, set())]
    live = {(fam, r.get("table", "main"), route_text(r, fam)) for fam, rs in ((4, routes4), (6, routes6))
            for r in rs}
    out += [Drift(f"no {r}", r.fix()) for r in wanted.routes
            if (r.family, r.table, r.text()) not in live and r.dev not in missing]
    prefs = {(4, x.get("priority")) for x in rules4} | {(6, x.get("priority")) for x in rules6}
    out += [Drift(f"no IPv{x.family} rule pref {x.pref}", x.add) for x in wanted.rules
            if (x.family, x.pref) not in prefs]
    return [Drift(f"{name} is missing", (), name) for name in missing] + out

