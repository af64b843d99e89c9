"""The lab's types: every part of lab.yaml as an immutable pydantic model, and its nodes."""

from __future__ import annotations

import ipaddress
import re
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

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)

from lab.model import sysctl

# -- kinds of text: each a pattern, the words that say it, the names it may not be ---------------

@dataclass(frozen=True)
class Kind:
    """A kind of name. Refusals say `words`, never the pattern (people read them)."""

    pattern: str
    words: str
    reserved: tuple[tuple[str, str], ...] = ()  # (name, why it is not free)

    def __call__(self, value: str) -> str:
        if not re.fullmatch(self.pattern, value):
            raise ValueError(f"should be {self.words}")
        why = dict(self.reserved).get(value)
        if why:
            raise ValueError(f"{value!r} is reserved: {why}")
        return value


def text(kind: Kind) -> object:
    return Annotated[StrictStr, AfterValidator(kind)]


_SYSCTL_DIR = "the kernel keeps the name for /proc/sys/net/*/conf/{}"
_RT_TABLE = "the name of one of iproute2's own routing tables (rt_tables)"
# Linux interface names (the kernel's rules: at most 15 bytes, no '/', ':' or blank, not '.' or
# '..', not 'all' or 'default'), and never read as an option by ip, ifup or sysctl.
IFNAME = Kind(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}",
              "an interface name: 1-15 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
              (("all", _SYSCTL_DIR.format("all")), ("default", _SYSCTL_DIR.format("default")),
               ("lo", "every namespace has its own loopback lo")))
# RFC 1123 host name label (containers keep their lab names as host names).
HOSTNAME = Kind(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
                "a host name: 1-63 letters, digits or '-', not starting or ending with '-'")
# LXD's instance names: host names that start with a letter.
CONTAINER = Kind(r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?",
                 "a container name: 1-63 letters, digits or '-', starting with a letter (as LXD "
                 "wants), not ending with '-'")
# The lab name prefixes namespaces and container names: short and plain.
LABNAME = Kind(r"[a-z][a-z0-9]{0,11}",
               "a lab name: 1-12 lowercase letters or digits, starting with a letter")
# A tenant's name also names its routing table on the router (rt_tables).
TENANT = Kind(r"[a-z][a-z0-9]{0,14}",
              "a tenant name: 1-15 lowercase letters or digits, starting with a letter",
              tuple((n, _RT_TABLE) for n in ("main", "default", "local", "unspec"))
              + (("all", "`ip route ... table all` means every table"),))
KEEPALIVED_NAME = Kind(r"[A-Za-z0-9_-]{1,64}", "a keepalived name: 1-64 letters, digits, '_' or '-'")
FAILOVER_PEER = Kind(r"[A-Za-z0-9_.-]{1,64}", "a failover peer name: 1-64 letters, digits, '_', '.' or '-'")
USER = Kind(r"[a-z_][a-z0-9_-]{0,31}",
            "a user name: 1-32 lowercase letters, digits, '_' or '-', starting with a letter or '_'")
MAC_PREFIX = Kind(r"[0-9a-f]{2}(:[0-9a-f]{2}){3}",
                  "the first four bytes of a MAC address in lowercase hex, like ba:ad:ca:fe")
# A hypervisor of the lab (a key of `hosts:`): it names the tunnel port to it on every other host.
LAB_HOST = Kind(r"[a-z][a-z0-9]{0,10}",
                "a host's name in the lab: 1-11 lowercase letters or digits, starting with a letter")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# A DNS name SSH reaches: labels of a host name separated by dots, 253 characters at most.
DNS_NAME = Kind(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*",
                "an IP address or a DNS name: labels of letters, digits or '-' separated by dots, "
                "no label starting or ending with '-'")
SYSCTL_KEY = Kind(r"net(\.[A-Za-z0-9_-]+){2,8}",
                  "a network key of the namespace: net.<subtree>.<name>, parts of letters, digits, "
                  "'_' or '-' separated by dots")


def _sysctl_key(key: str) -> str:
    if not key.startswith("net."):
        raise ValueError("only network keys (net.*) may be set: the others are the host kernel's, "
                         "which the embedded lab shares")
    why = sysctl.host_only(SYSCTL_KEY(key))
    if why:
        raise ValueError(f"not per network namespace: {why}")
    return key


def _written(value):
    """Addresses as people write them: pydantic also takes a number or bytes (`true` was 0.0.0.1)."""
    if not isinstance(value, str):
        raise ValueError("should be an address written as text, like 192.0.2.1/24 or 2001:db8::1")
    return value


def _no_zone(addr):
    """IPv6 addresses without a zone: Python keeps any text after '%', and it would reach files."""
    ip = addr.network_address if isinstance(addr, IPv6Network) else addr
    if ip.scope_id is not None:
        raise ValueError("should be an IPv6 address without a zone ('%' and a name): the lab says "
                         "which interface itself")
    return addr


def _routable(addr):
    """A host out on the Internet: reached through the router, so no address that never
    leaves a machine or a link (radvd cannot even parse `RDNSS ::1`)."""
    if addr.is_unspecified or addr.is_loopback or addr.is_multicast or addr.is_link_local:
        kind = ("unspecified" if addr.is_unspecified else "loopback" if addr.is_loopback
                else "multicast" if addr.is_multicast else "link-local")
        raise ValueError(f"should be a host's address reached through the router, not {kind} {addr}")
    return addr


def _host_address(value):
    """Where SSH reaches a host: an IP address (as text, no zone) or a DNS name. A name whose last
    label is a number is no DNS name: getaddrinfo would read `10.0.0.256` or `1234` as some address."""
    if not isinstance(value, str):
        raise ValueError("should be an IP address or a DNS name written as text, like 192.0.2.10 "
                         "or lab2.example.org")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        DNS_NAME(value)
        if value.rsplit(".", 1)[-1].isdigit():
            raise ValueError("should be an IP address or a DNS name: its last part is a number, "
                             "but it is no IP address") from None
        return value
    if addr.version == 6:
        _no_zone(addr)
    if addr.is_unspecified or addr.is_multicast:
        kind = "unspecified" if addr.is_unspecified else "multicast"
        raise ValueError(f"should be a host's address, not {kind} {addr}")
    return str(addr)


def _endpoint(value):
    """A tunnel endpoint: a host's unicast address, as text (`true` would be 0.0.0.1)."""
    if not isinstance(value, str):
        raise ValueError("should be an address written as text, like 192.0.2.10 or 2001:db8::10")
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("should be an IPv4 or IPv6 address, like 192.0.2.10 or 2001:db8::10") from None
    if addr.version == 6:
        _no_zone(addr)
    if addr.is_unspecified or addr.is_multicast or (addr.version == 6 and addr.is_link_local):
        kind = ("unspecified" if addr.is_unspecified else "multicast" if addr.is_multicast
                else "link-local (it needs an interface: give a global address)")
        raise ValueError(f"should be the host's unicast address, not {kind} {addr}")
    return addr


IfName = text(IFNAME)
HostName = text(HOSTNAME)
ContainerName = text(CONTAINER)
Port = Annotated[StrictInt, Field(ge=1, le=65535)]
VlanId = Annotated[StrictInt, Field(ge=1, le=4094)]
Mtu = Annotated[StrictInt, Field(ge=1280, le=65535)]
Seconds = Annotated[StrictInt, Field(ge=1, le=86400)]  # a day: longer is a typo
ScriptSeconds = Annotated[StrictInt, Field(ge=1, le=4294)]  # keepalived: microseconds in 32 bits
Count = Annotated[StrictInt, Field(ge=1, le=100)]
MAX_CLIENTS = 1000  # per tenant: a classroom's big lab, not a typo's 10**9 namespaces
AdvertInt = Annotated[StrictInt, Field(ge=1, le=40)]  # VRRPv3 counts centiseconds in 12 bits: < 41 s
LeaseTime = Annotated[StrictInt, Field(ge=1, le=365 * 86400)]
IPv4Addr = Annotated[IPv4Address, BeforeValidator(_written)]
IPv4Iface = Annotated[IPv4Interface, BeforeValidator(_written)]
IPv4Net = Annotated[IPv4Network, BeforeValidator(_written)]
IPv6Addr = Annotated[IPv6Address, BeforeValidator(_written), AfterValidator(_no_zone)]
IPv6Iface = Annotated[IPv6Interface, BeforeValidator(_written), AfterValidator(_no_zone)]
IPv6Net = Annotated[IPv6Network, BeforeValidator(_written), AfterValidator(_no_zone)]
SysctlKey = Annotated[StrictStr, AfterValidator(_sysctl_key)]
LabHost = text(LAB_HOST)
HostAddress = Annotated[StrictStr, AfterValidator(_host_address)]
Endpoint = Annotated[IPv4Address | IPv6Address, BeforeValidator(_endpoint)]
SysctlValue = Annotated[StrictInt, Field(ge=-(2**63), le=2**64 - 1)]  # a C long, signed or not


class Model(BaseModel):
    """Base of every part of the lab: immutable, and unknown keys are typos."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- addresses ----------------------------------------------------------------------------

class Addr4(Model):
    ipv4: IPv4Iface


class DualStack(Model):
    ipv4: IPv4Iface
    ipv6: IPv6Iface


class DualStackLL(DualStack):
    """An interface with a global and a hand-set link-local IPv6 address (fe80:dc::1, ...)."""

    link_local: IPv6Iface


class Hosts(Model):
    """Hosts of the lab's Internet (its resolver)."""

    ipv4: Annotated[IPv4Addr, AfterValidator(_routable)]
    ipv6: Annotated[IPv6Addr, AfterValidator(_routable)]


# -- parts of the lab ---------------------------------------------------------------------

class Internet(Model):
    gateway: DualStackLL
    resolver: Hosts


class Switch(Model):
    name: IfName
    mac_prefix: text(MAC_PREFIX)


class Resources(Model):
    memory: Annotated[StrictInt, Field(ge=256, le=1024 * 1024)]  # MiB: 1 TiB at most
    cpus: Annotated[StrictInt, Field(ge=1, le=64)]


class Uplink(DualStack):
    vlan: VlanId


class Router(Model):
    vm: HostName
    nic: IfName
    uplink: Uplink
    nat: StrictBool
    resources: Resources
    host: LabHost | None = None  # a key of `hosts:`; none: this machine

    def subif(self, vlan: int) -> str:
        """The router's VLAN subinterface (the seed's `enp0s6.220`)."""
        return f"{self.nic}.{vlan}"


class Underlay(Model):
    router: DualStackLL
    tenant: DualStack


class DhcpServer(Model):
    name: ContainerName
    role: Literal["primary", "secondary"]
    ipv4: IPv4Iface
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
    clients: Annotated[tuple[ContainerName, ...], Field(max_length=MAX_CLIENTS)]
    resources: Resources
    host: LabHost | None = None  # a key of `hosts:`; none: this machine


class Vxlan(Model):
    vni: Annotated[StrictInt, Field(ge=1, le=16777215)]
    udp_port: Port
    underlay_mtu: Mtu


class SharedVlan(Model):
    vlan: VlanId
    bridge: IfName
    ipv4: IPv4Net
    ipv6: IPv6Net
    mtu: Mtu
    vxlan: Vxlan


class VrrpInstance(Model):
    name: text(KEEPALIVED_NAME)
    vrid: Annotated[StrictInt, Field(ge=1, le=255)]
    vip: IPv4Iface | IPv6Iface


class VrrpInstances(Model):
    ipv4: VrrpInstance
    ipv6: VrrpInstance


class Track(Model):
    interval: ScriptSeconds
    timeout: ScriptSeconds
    rise: Count
    fall: Count
    ping_wait: Seconds  # the check script's `ping -W`: how long one reply may take


class VrrpTiming(Model):
    advert_int: AdvertInt
    track: Track


def _centiseconds(ms: int) -> int:
    if ms % 10:
        raise ValueError(f"VRRPv3 counts adverts in centiseconds: {ms} ms is not a multiple of 10")
    return ms


class FastTiming(Model):
    """The fast profile's timers (lab/deployment.py), each with its unit in its name."""

    advert_ms: Annotated[StrictInt, Field(ge=10, le=40950), AfterValidator(_centiseconds)]
    probe_ms: Annotated[StrictInt, Field(ge=2, le=1000)]  # the uplink prober's ping -i (root: >= 2 ms)
    misses: Count   # probes unanswered in a row -> FAULT
    replies: Count  # probes answered in a row -> healthy again


class Vrrp(Model):
    version: Literal[2, 3]
    sync_group: text(KEEPALIVED_NAME)
    advert_int: AdvertInt
    script_user: text(USER)
    instances: VrrpInstances
    track: Track
    emulated: VrrpTiming | None = None  # on VMs without KVM (QEMU's TCG): lab/deployment.py
    profile: Literal["seed", "fast"] = "seed"  # the timing profile: lab/deployment.py
    fast: FastTiming = FastTiming(advert_ms=100, probe_ms=10, misses=3, replies=10)


class DhcpRange(Model):
    first: IPv4Addr
    last: IPv4Addr


class Dhcp6Range(Model):
    first: IPv6Addr
    last: IPv6Addr


Millis = Annotated[StrictInt, Field(ge=100, le=3_600_000)]  # Kea's HA timers: ms, an hour at most


class KeaHa(Model):
    """Kea's HA hook (dhcp.server kea): its mode and timers, in milliseconds as Kea takes them;
    the defaults are Kea's own."""

    mode: Literal["load-balancing", "hot-standby"] = "load-balancing"
    port: Port = 8000  # kea-ctrl-agent's HTTP port on each server's address: the peers' URLs
    heartbeat_delay_ms: Millis = 10_000
    max_response_delay_ms: Millis = 60_000
    max_ack_delay_ms: Millis = 10_000
    max_unacked_clients: Annotated[StrictInt, Field(ge=0, le=1000)] = 10
    delayed_updates_limit: Annotated[StrictInt, Field(ge=0, le=100_000)] = 100  # load-balancing only


class Dhcp(Model):
    server: Literal["isc", "kea"] = "isc"  # the seed's ISC dhcpd failover pair, or a Kea HA pair
    failover_peer: text(FAILOVER_PEER)
    interface: IfName
    range: DhcpRange
    default_lease_time: LeaseTime
    max_lease_time: LeaseTime
    max_response_delay: Seconds
    max_unacked_updates: Annotated[StrictInt, Field(ge=1, le=65535)]
    mclt: Seconds
    split: Annotated[StrictInt, Field(ge=0, le=256)]
    load_balance_max_seconds: Annotated[StrictInt, Field(ge=1, le=255)]  # dhcpd: secs, a byte
    ping_check: StrictBool = True  # dhcpd's default (the seed's): ping an address before offering it
    kea: KeaHa = KeaHa()
    # IPv6 addresses: SLAAC from radvd's prefix (the seed's), or also leased by kea-dhcp6 HA from
    # range6, with radvd's managed flag (stateful: dhcp.server kea)
    v6: Literal["slaac", "stateful"] = "slaac"
    range6: Dhcp6Range | None = None

    def pools(self) -> list[tuple[IPv4Address, IPv4Address]]:
        """The range as Kea's pools: load balancing gives each server a half (its own scope; the
        primary's first), hot standby one pool for both."""
        return self._halves(self.range)

    def pools6(self) -> list[tuple[IPv6Address, IPv6Address]]:
        """range6 as kea-dhcp6's pools, halved as pools() halves the IPv4 range."""
        assert self.range6 is not None
        return self._halves(self.range6)

    def _halves(self, r: DhcpRange | Dhcp6Range) -> list:
        if self.kea.mode == "hot-standby":
            return [(r.first, r.last)]
        mid = r.first + (int(r.last) - int(r.first)) // 2
        return [(r.first, mid), (mid + 1, r.last)]


class Radvd(Model):
    min_interval: Annotated[StrictInt, Field(ge=3)]
    max_interval: Annotated[StrictInt, Field(ge=4, le=1800)]


def _ssh_shorthand(value):
    """`root@192.0.2.10` is {user: root, address: 192.0.2.10} (port 22)."""
    if isinstance(value, str):
        user, at, address = value.partition("@")
        if not at:
            raise ValueError("should be user@address, like root@192.0.2.10, or a mapping with "
                             "user, address and port")
        return {"user": user, "address": address}
    return value


class Ssh(Model):
    """How vxlab reaches a host: SSH as `user` to `address`, on `port`."""

    user: text(USER)
    address: HostAddress
    port: Port = 22


class Hypervisor(Model):
    """A machine that runs VMs of the lab: reached over SSH, or this machine (no `ssh`); its
    dsw-host is stitched to the others' by a VXLAN tunnel between the endpoints."""

    ssh: Annotated[Ssh, BeforeValidator(_ssh_shorthand)] | None = None
    endpoint: Endpoint | None = None  # the tunnels' address on this host
    underlay_mtu: Mtu | None = None  # of the network between the endpoints, as this host sees it
    # The NIC on that network, given to Open vSwitch (its userspace datapath sends tunnel packets
    # only out of its own bridges): a NIC of its own, since an address on it stops working.
    nic: IfName | None = None

    @property
    def local(self) -> bool:
        return self.ssh is None


MAX_HOSTS = 16  # each host holds a tunnel to every other one


class Containers(Model):
    driver: Literal["lxd", "netns"]
    nic: IfName


class Lab(Model):
    name: text(LABNAME)
    internet: Internet
    switch: Switch
    router: Router
    tenants: dict[text(TENANT), Tenant]
    shared_vlan: SharedVlan
    vrrp: Vrrp
    dhcp: Dhcp
    radvd: Radvd
    sysctl: Annotated[dict[SysctlKey, SysctlValue], Field(max_length=100)]
    containers: Containers
    # Where the VMs run (none: all on this machine); each VM's `host` names one of these.
    hosts: Annotated[dict[LabHost, Hypervisor], Field(max_length=MAX_HOSTS)] | None = None

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

    def vms(self) -> dict[str, str | None]:
        """Each VM's `host` as written (None: this machine), the router first."""
        return {self.router.vm: self.router.host, **{t.vm: t.host for t in self.tenants.values()}}

    def local_host(self) -> str | None:
        """The host of `hosts:` that is this machine (no `ssh`), if one is."""
        return next((n for n, h in (self.hosts or {}).items() if h.local), None)

    def placement(self) -> dict[str, str | None]:
        """Each VM's host: the one it names, else this machine's entry in `hosts:` (None: no
        `hosts:`, the whole lab on this machine)."""
        return {vm: host or self.local_host() for vm, host in self.vms().items()}

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
