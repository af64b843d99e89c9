"""routerVM: per-tenant tables and fwmark rules (in its interfaces file), NAT and marks."""

from __future__ import annotations

from lab.roles.common import ifupdown, place, sysctl
from lab.roles.target import Target
from lab.substrate.base import Service

TEMPLATES = ("router", "vm")
DAEMONS: dict[str, str] = {}  # the kernel routes; its rules and tables come from the interfaces file


def services(t: Target) -> list[Service]:
    return []


def apply(t: Target) -> None:
    changed = place(t)
    sysctl(t)  # forwarding on before the links come up
    ifupdown(t)
    for tool, save, rules in (("iptables-restore", "iptables-save", "/etc/iptables/rules.v4"),
                              ("ip6tables-restore", "ip6tables-save", "/etc/iptables/rules.v6")):
        live = t.node.run([save, "-t", "mangle"], check=False).out
        if rules in changed or "CONNMARK" not in live:
            t.node.run([tool, t.path(rules)])
            t.did(f"{tool} {rules}")
