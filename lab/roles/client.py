"""blueC0, greenC1, ...: DHCP for IPv4 (the failover pair), SLAAC for IPv6 (radvd)."""

from __future__ import annotations

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


def services(t: Target) -> list[Service]:
    if t.light:
        return [dhclient(t)]
    # the container's own ifupdown runs dhclient: no unit to start, but a pid file and a log
    nic = t.lab.containers.nic
    return [Service("dhclient", ("dhclient",), pidfiles=(f"/run/dhclient.{nic}.pid",))]


def apply(t: Target) -> None:
    changed = place(t)
    if t.light:
        ifupdown(t, exclude=(t.lab.containers.nic,))
        t.node.run(["ip", "link", "set", "dev", t.lab.containers.nic, "up"])
        t.node.run(["mkdir", "-p", t.path("/var/lib/dhcp")])  # dhclient's lease file
        service(t, dhclient(t), SCRIPT in changed)
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
    return Addressing(found, r4, r6, v4[0] if v4 else None, v6[0] if v6 else None)


def addressing(lab: Lab, node: Node) -> Addressing:
    return addressing_of(lab, facts.read(lambda _: node, addressing_facts(lab, node)))
