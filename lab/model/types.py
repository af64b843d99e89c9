"""The lab's types: every part of lab.yaml as an immutable pydantic model, and its nodes."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# Linux interface names: at most 15 bytes, no '/', ':' or whitespace.
IFNAME = r"^[A-Za-z0-9_.-]{1,15}$"
# RFC 1123 host name label (containers keep their lab names as host names).
HOSTNAME = r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
# The lab name prefixes namespaces and container names: short and plain.
LABNAME = r"^[a-z][a-z0-9]{0,11}$"

IfName = Annotated[StrictStr, Field(pattern=IFNAME)]
HostName = Annotated[StrictStr, Field(pattern=HOSTNAME)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
VlanId = Annotated[StrictInt, Field(ge=1, le=4094)]
Positive = Annotated[StrictInt, Field(ge=1)]


class Model(BaseModel):
    """Base of every part of the lab: immutable, and unknown keys are typos."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- addresses ----------------------------------------------------------------------------

class Addr4(Model):
    ipv4: IPv4Interface


class DualStack(Model):
    ipv4: IPv4Interface
    ipv6: IPv6Interface


class DualStackLL(DualStack):
    """An interface with a global and a hand-set link-local IPv6 address (fe80:dc::1, ...)."""

    link_local: IPv6Interface


class Hosts(Model):
    ipv4: IPv4Address
    ipv6: IPv6Address


# -- parts of the lab ---------------------------------------------------------------------

class Internet(Model):
    gateway: DualStackLL
    resolver: Hosts


class Switch(Model):
    name: IfName
    mac_prefix: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{2}(:[0-9a-f]{2}){3}$")]


class Resources(Model):
    memory: Annotated[StrictInt, Field(ge=256)]
    cpus: Annotated[StrictInt, Field(ge=1, le=64)]


class Uplink(DualStack):
    vlan: VlanId


class Router(Model):
    vm: HostName
    nic: IfName
    uplink: Uplink
    nat: StrictBool
    resources: Resources

    def subif(self, vlan: int) -> str:
        """The router's VLAN subinterface (the seed's `enp0s6.220`)."""
        return f"{self.nic}.{vlan}"


class Underlay(Model):
    router: DualStackLL
    tenant: DualStack


class DhcpServer(Model):
    name: HostName
    role: Literal["primary", "secondary"]
    ipv4: IPv4Interface
    port: Port


class Tenant(Model):
    vm: HostName
    nic: IfName
    vlan: VlanId
    table: Annotated[StrictInt, Field(ge=1, le=252)]  # 0 and 253-255 are reserved tables
    fwmark: Annotated[StrictInt, Field(ge=1, le=0xFFFFFFFF)]
    underlay: Underlay
    switch: IfName
    vxlan_port: IfName
    svi: DualStackLL
    vrrp_priority: Annotated[StrictInt, Field(ge=1, le=254)]  # 255 means "address owner"
    dhcp_server: DhcpServer
    clients: tuple[HostName, ...]
    resources: Resources


class Vxlan(Model):
    vni: Annotated[StrictInt, Field(ge=1, le=16777215)]
    udp_port: Port
    underlay_mtu: Annotated[StrictInt, Field(ge=1280, le=65535)]


class SharedVlan(Model):
    vlan: VlanId
    bridge: IfName
    ipv4: IPv4Network
    ipv6: IPv6Network
    mtu: Annotated[StrictInt, Field(ge=1280, le=65535)]
    vxlan: Vxlan


class VrrpInstance(Model):
    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    vrid: Annotated[StrictInt, Field(ge=1, le=255)]
    vip: IPv4Interface | IPv6Interface


class VrrpInstances(Model):
    ipv4: VrrpInstance
    ipv6: VrrpInstance


class Track(Model):
    interval: Positive
    timeout: Positive
    rise: Positive
    fall: Positive
    ping_wait: Positive  # the check script's `ping -W`: how long one reply may take


class VrrpTiming(Model):
    advert_int: Positive
    track: Track


class Vrrp(Model):
    version: Literal[2, 3]
    sync_group: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    advert_int: Positive
    script_user: Annotated[StrictStr, Field(pattern=r"^[a-z_][a-z0-9_-]*$")]
    instances: VrrpInstances
    track: Track
    emulated: VrrpTiming | None = None  # on VMs without KVM (QEMU's TCG): lab/deployment.py


class DhcpRange(Model):
    first: IPv4Address
    last: IPv4Address


class Dhcp(Model):
    failover_peer: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_.-]+$")]
    interface: IfName
    range: DhcpRange
    default_lease_time: Positive
    max_lease_time: Positive
    max_response_delay: Positive
    max_unacked_updates: Positive
    mclt: Positive
    split: Annotated[StrictInt, Field(ge=0, le=256)]
    load_balance_max_seconds: Positive


class Radvd(Model):
    min_interval: Annotated[StrictInt, Field(ge=3)]
    max_interval: Annotated[StrictInt, Field(ge=4, le=1800)]


class Containers(Model):
    driver: Literal["lxd", "netns"]
    nic: IfName


class Lab(Model):
    name: Annotated[StrictStr, Field(pattern=LABNAME)]
    internet: Internet
    switch: Switch
    router: Router
    tenants: dict[Annotated[StrictStr, Field(pattern=r"^[a-z][a-z0-9]*$")], Tenant]
    shared_vlan: SharedVlan
    vrrp: Vrrp
    dhcp: Dhcp
    radvd: Radvd
    sysctl: dict[Annotated[StrictStr, Field(pattern=r"^[a-z0-9_.-]+$")], StrictInt | StrictStr]
    containers: Containers

    # The lab's shape, for templates, recipes and checks.

    def peer(self, name: str) -> str:
        """The other tenant's name."""
        (other,) = (t for t in self.tenants if t != name)
        return other

    def master(self) -> str:
        """The tenant that should hold the VIPs: the higher VRRP priority."""
        return max(self.tenants, key=lambda t: self.tenants[t].vrrp_priority)

    def containers_of(self, name: str) -> tuple[str, ...]:
        tenant = self.tenants[name]
        return (tenant.dhcp_server.name, *tenant.clients)

    def dhcp_servers(self) -> dict[str, DhcpServer]:
        return {t.dhcp_server.role: t.dhcp_server for t in self.tenants.values()}

    def nodes(self) -> list[Node]:
        """Every node of the lab, VMs first, in a stable order."""
        out = [Node(self.router.vm, "router")]
        out += [Node(t.vm, "tenant", name) for name, t in self.tenants.items()]
        for name, t in self.tenants.items():
            out.append(Node(t.dhcp_server.name, "dhcp", name))
            out += [Node(c, "client", name) for c in t.clients]
        return out

    def node(self, name: str) -> Node:
        for n in self.nodes():
            if n.name == name:
                return n
        raise KeyError(f"no node {name!r} in lab {self.name!r} "
                       f"(nodes: {', '.join(n.name for n in self.nodes())})")


@dataclass(frozen=True)
class Node:
    """A node of the lab: a VM (router, tenant), a container (dhcp, client) of a tenant, or
    one of the seed's Host parts (its switch, the Internet behind it: lab/topology.py)."""

    name: str
    role: Literal["router", "tenant", "dhcp", "client", "switch", "internet"]
    tenant: str | None = None

    @property
    def is_container(self) -> bool:
        return self.role in ("dhcp", "client")
