"""The lab's cabling, worked out once from the model: every machine and switch a node, every
wire a `Link`. The embedded lab's namespaces and veths, the Vagrant spec's NICs and libvirt
portgroups, and the diagram all read this; none of them works the cabling out again.

    internet ── dsw-host ══ routerVM          (the router's NIC is a trunk: uplink + tenants)
                   ├──── blueVM ─ sw-vlan7 ─ blueDHCP, blueC0, ...
                   └──── greenVM ─ sw-vlan7 ─ greenDHCP, greenC0, ...
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from lab.model import Lab, Node

SWITCH = "dsw-host"  # the seed's Host switch, as a node of the lab
INTERNET = "internet"  # the seed's Host SVI and the world behind it, as a node of the lab

Role = Literal["internet", "switch", "router", "tenant", "dhcp", "client"]


@dataclass(frozen=True)
class Link:
    """A wire from a machine's NIC to a switch port. One VLAN: an access port; several: a
    trunk, which the machine splits into subinterfaces (the router's `enp0s6.220`)."""

    node: str            # the machine
    nic: str             # its interface
    switch: str          # dsw-host, or a tenant VM for its containers (their VLAN's bridge)
    port: str            # the switch's end: on dsw-host a port name, on a tenant its bridge
    vlans: tuple[int, ...]
    mtu: int

    @property
    def trunk(self) -> bool:
        return len(self.vlans) > 1


@dataclass(frozen=True)
class Topology:
    lab: Lab

    @cached_property
    def nodes(self) -> tuple[Node, ...]:
        """Every node: the Internet and the switch, then the lab's machines and containers."""
        return (Node(INTERNET, "internet"), Node(SWITCH, "switch"), *self.lab.nodes())

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in lab {self.lab.name!r} "
                       f"(nodes: {', '.join(n.name for n in self.nodes)})")

    @cached_property
    def switch_links(self) -> tuple[Link, ...]:
        """dsw-host's wires, in its ports' order: the upstream, the router's trunk, each tenant."""
        lab = self.lab
        r, mtu = lab.router, lab.shared_vlan.vxlan.underlay_mtu
        up = r.uplink.vlan
        return (Link(INTERNET, "eth0", SWITCH, f"vlan{up}", (up,), mtu),
                Link(r.vm, r.nic, SWITCH, "tap20", (up, *(t.vlan for t in lab.tenants.values())), mtu),
                *(Link(t.vm, t.nic, SWITCH, f"tap{t.vlan}", (t.vlan,), mtu) for t in lab.tenants.values()))

    @cached_property
    def container_links(self) -> tuple[Link, ...]:
        """Each container's NIC on its tenant's bridge of the shared VLAN."""
        lab, sv = self.lab, self.lab.shared_vlan
        return tuple(Link(c, lab.containers.nic, t.vm, sv.bridge, (sv.vlan,), sv.mtu)
                     for name, t in lab.tenants.items() for c in lab.containers_of(name))

    @property
    def links(self) -> tuple[Link, ...]:
        return self.switch_links + self.container_links

    def link_of(self, node: str) -> Link:
        """A machine's one wire (every machine of the seed has one NIC)."""
        return next(lk for lk in self.links if lk.node == node)

    def vlans(self) -> tuple[int, ...]:
        """The VLANs dsw-host carries, in order of first use."""
        return tuple(dict.fromkeys(v for lk in self.switch_links for v in lk.vlans))

    def uplink(self) -> Link:
        return self.link_of(INTERNET)

    def vm_links(self) -> tuple[Link, ...]:
        """The VMs' wires (router and tenants): what the Vagrant spec gives NICs."""
        return tuple(lk for lk in self.switch_links if lk.node != INTERNET)


def port_name(container: str) -> str:
    """The tenant-side end of a light container's veth (interface names: 15 bytes at most)."""
    name = f"p-{container}"
    if len(name) <= 15:
        return name
    return f"p-{container[:8]}-{hashlib.sha1(container.encode()).hexdigest()[:4]}"
