"""blueDHCP, greenDHCP: a static address on VLAN 7 and dhcpd, one of a failover pair."""

from __future__ import annotations

import re
import shlex

from lab.facts import Fact, dead
from lab.roles.common import ifupdown, place, service
from lab.roles.target import Target
from lab.substrate.base import Node, Service
from lab.substrate.systemd import pid_alive

DHCPD = "/etc/dhcp/dhcpd.conf"
DEFAULTS = "/etc/default/isc-dhcp-server"
LEASES = "/var/lib/dhcp/dhcpd.leases"  # dhcpd records its failover state here too
TEMPLATES = ("dhcp",)
DAEMONS = {"dhcpd": "/run/dhcpd.pid"}


def interfaces_v4(defaults: str) -> list[str]:
    """INTERFACESv4 of /etc/default/isc-dhcp-server: the same file drives every substrate."""
    for line in defaults.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "INTERFACESv4":
            return shlex.split(value)[0].split() if shlex.split(value) else []
    return []


def dhcpd(t: Target) -> Service:
    p = t.path
    pid = p(DAEMONS["dhcpd"])
    return Service("dhcpd", ("dhcpd", "-4", "-f", "-d", "-cf", p(DHCPD), "-lf", p(LEASES),
                             "-pf", pid, *interfaces_v4(t.files[DEFAULTS].text)),
                   unit="isc-dhcp-server", pidfiles=(pid,))


def services(t: Target) -> list[Service]:
    return [dhcpd(t)]


def apply(t: Target) -> None:
    changed = place(t)
    ifupdown(t)
    if t.node.read(LEASES) is None:
        t.node.put(LEASES, "")
    service(t, dhcpd(t), bool(changed & {DHCPD, DEFAULTS}))


# -- facts ------------------------------------------------------------------------------------------

NOT_RUNNING = "dhcpd is not running"


def failover(node: Node) -> Fact[str | None]:
    """dhcpd's own failover state (normal, communications-interrupted, ...), as it records it
    in its lease file ("my state normal"); a stopped dhcpd's file keeps its last state, so
    that one says NOT_RUNNING instead."""
    pid, leases = node.path(DAEMONS["dhcpd"]), shlex.quote(node.path(LEASES))
    script = f"{pid_alive(pid)} || {{ echo '{NOT_RUNNING}'; exit 0; }}; grep -o 'my state [a-z-]*' {leases}"
    return Fact(node.name, ("sh", "-c", script), _last_state)


def _last_state(r) -> str | None:
    if NOT_RUNNING in r.out:
        return NOT_RUNNING
    states = re.findall(r"my state (\S+)", r.out)
    return states[-1] if states else None


def daemons(node: Node) -> Fact[list[str]]:
    return dead(node, DAEMONS)


def bindings(node: Node) -> Fact[dict[str, str]]:
    """The addresses dhcpd has bound (binding state active) and to which MAC, as its lease file
    records them (the last record of an address is its state)."""
    return Fact(node.name, ("cat", node.path(LEASES)), lambda r: active_bindings(r.out if r.ok else ""))


def active_bindings(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(r"^lease (\S+) \{(.*?)^\}", text, re.M | re.S):
        state = re.search(r"^\s*binding state (\S+);", m.group(2), re.M)
        mac = re.search(r"^\s*hardware ethernet (\S+);", m.group(2), re.M)
        if state and state.group(1) == "active" and mac:
            out[m.group(1)] = mac.group(1)
        else:
            out.pop(m.group(1), None)
    return out
