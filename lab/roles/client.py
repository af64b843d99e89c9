"""blueC0, greenC1, ...: DHCP for IPv4 (the failover pair), SLAAC for IPv6 (radvd)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from lab import facts
from lab.model import Lab
from lab.roles.common import ifupdown, place, service
from lab.roles.target import Target
from lab.substrate.base import Node, Service

TEMPLATES = ("client",)  # and files/light/ for light containers (lab/render.py)
SCRIPT = "/usr/local/sbin/dhclient-script"
DAEMONS: dict[str, str] = {}  # dhclient: the container's own ifupdown's, or a light one's service


def dhclient(t: Target) -> Service:
    """Light containers: dhclient with the node's own paths (ifupdown's are shared by all
    namespaces) and the lab's script (Debian's would write the host's resolv.conf)."""
    p, nic = t.path, t.lab.containers.nic
    return Service("dhclient", ("dhclient", "-4", "-d", "-cf", "/dev/null", "-sf", p(SCRIPT),
                                "-pf", p("/run/dhclient.pid"), "-lf", p("/var/lib/dhcp/dhclient.leases"),
                                nic))


def dhclient6(t: Target) -> Service:
    """Light containers, dhcp.v6 stateful: dhclient -6 as dhclient (its own pid and lease
    files)."""
    p, nic = t.path, t.lab.containers.nic
    return Service("dhclient6", ("dhclient", "-6", "-d", "-cf", "/dev/null", "-sf", p(SCRIPT),
                                 "-pf", p("/run/dhclient6.pid"),
                                 "-lf", p("/var/lib/dhcp/dhclient6.leases"), nic))


# dhclient -6 binds to the NIC's link-local address and exits if it is still tentative (DAD)
LINK_LOCAL_READY = ('for i in $(seq 50); do ip -6 addr show dev "$1" scope link | grep -q inet6 && '
                    '! ip -6 addr show dev "$1" tentative | grep -q inet6 && exit 0; sleep 0.1; done; exit 1')


def services(t: Target) -> list[Service]:
    stateful = t.lab.dhcp.v6 == "stateful"
    if t.light:
        return [dhclient(t)] + ([dhclient6(t)] if stateful else [])
    # the container's own ifupdown runs dhclient: no unit to start, but a pid file and a log
    nic = t.lab.containers.nic
    return [Service("dhclient", ("dhclient",), pidfiles=(f"/run/dhclient.{nic}.pid",))] + (
        [Service("dhclient6", ("dhclient",), pidfiles=(f"/run/dhclient6.{nic}.pid",))] if stateful else [])


def apply(t: Target) -> None:
    changed = place(t)
    if t.light:
        ifupdown(t, exclude=(t.lab.containers.nic,))
        t.node.run(["ip", "link", "set", "dev", t.lab.containers.nic, "up"])
        t.node.run(["mkdir", "-p", t.path("/var/lib/dhcp")])  # dhclient's lease file
        service(t, dhclient(t), SCRIPT in changed)
        if t.lab.dhcp.v6 == "stateful":
            t.node.run(["sh", "-c", LINK_LOCAL_READY, "ready", t.lab.containers.nic])
            service(t, dhclient6(t), SCRIPT in changed)
    else:
        ifupdown(t)  # the container's own ifupdown runs its own dhclient


LEASE_FILES = ("/var/lib/dhcp/dhclient.leases", "/var/lib/dhcp/dhclient.eth0.leases")


def lease_server(t: Target) -> str | None:
    """The DHCP server that gave the client its current lease (its last lease's identifier)."""
    for path in LEASE_FILES:
        found = re.findall(r"option dhcp-server-identifier ([\d.]+);", t.node.read(path) or "")
        if found:
            return found[-1]
    return None


def new_lease(t: Target) -> None:
    """Drop the client's lease and ask for a new one (DISCOVER, not a renewal)."""
    nic = t.lab.containers.nic
    if t.light:
        t.node.stop(dhclient(t))
        t.node.run(["ip", "-4", "addr", "flush", "dev", nic])
        t.node.run(["rm", "-f", *(t.path(p) for p in LEASE_FILES)])
        t.node.start(dhclient(t))
    else:
        args = ["-i", "/etc/network/interfaces", "--state-dir", "/run/network", nic]
        t.node.run(["ifdown", "--force", *args], check=False)
        t.node.run(["rm", "-f", *LEASE_FILES])
        t.node.run(["sh", "-c", f"ifup {' '.join(args)} > /dev/null 2>&1 &"])  # we time it, not ifup


# -- facts ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Addressing:
    """A client's lease, SLAAC address and default routes, as the node shows them."""

    nic: facts.Nic
    route4: facts.Route
    route6: facts.Route
    ipv4: str | None
    slaac: str | None
    dhcp6: str | None = None  # dhcp.v6 stateful: its DHCPv6 lease (range6)

    @property
    def gateway4(self) -> str | None:
        return self.route4.gateway

    @property
    def gateway6(self) -> str | None:
        return self.route6.gateway


def nic(lab: Lab, node: Node) -> facts.Fact[facts.Nic]:
    """Its NIC on the shared VLAN: MAC, lease and SLAAC addresses."""
    return facts.nic(node, lab.containers.nic)


def route(node: Node, family: int) -> facts.Fact[facts.Route]:
    return facts.default_route(node, family)


def addressing_facts(lab: Lab, node: Node) -> list[facts.Fact]:
    return [nic(lab, node), route(node, 4), route(node, 6)]


def addressing_of(lab: Lab, values: list) -> Addressing:
    found, r4, r6 = values
    v4, v6 = found.ips(lab.shared_vlan.ipv4), found.ips(lab.shared_vlan.ipv6)
    range6 = lab.dhcp.range6 if lab.dhcp.v6 == "stateful" else None
    leased = [a for a in v6 if range6 and range6.first <= ipaddress.ip_address(a) <= range6.last]
    slaac = [a for a in v6 if a not in leased]
    return Addressing(found, r4, r6, v4[0] if v4 else None, slaac[0] if slaac else None,
                      leased[0] if leased else None)


def addressing(lab: Lab, node: Node) -> Addressing:
    return addressing_of(lab, facts.read(lambda _: node, addressing_facts(lab, node)))
