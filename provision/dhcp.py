"""blueDHCP, greenDHCP: a static address on VLAN 7 and dhcpd, one of a failover pair."""

from __future__ import annotations

import shlex

from lab.substrate.base import Service
from provision import Target
from provision.common import ifupdown, place, service

DHCPD = "/etc/dhcp/dhcpd.conf"
DEFAULTS = "/etc/default/isc-dhcp-server"
LEASES = "/var/lib/dhcp/dhcpd.leases"


def interfaces_v4(defaults: str) -> list[str]:
    """INTERFACESv4 of /etc/default/isc-dhcp-server: the same file drives every substrate."""
    for line in defaults.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "INTERFACESv4":
            return shlex.split(value)[0].split() if shlex.split(value) else []
    return []


def dhcpd(t: Target) -> Service:
    p = t.path
    return Service("dhcpd", ("dhcpd", "-4", "-f", "-d", "-cf", p(DHCPD), "-lf", p(LEASES),
                             "-pf", p("/run/dhcpd.pid"), *interfaces_v4(t.files[DEFAULTS].text)),
                   unit="isc-dhcp-server", pidfiles=(p("/run/dhcpd.pid"),))


def apply(t: Target) -> None:
    changed = place(t)
    ifupdown(t)
    if t.node.read(LEASES) is None:
        t.node.put(LEASES, "")
    service(t, dhcpd(t), bool(changed & {DHCPD, DEFAULTS}))
