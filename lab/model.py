"""The lab as data: lab.yaml loaded into an immutable, validated model.

Loading is the only door into the rest of vxlab: everything downstream (templates, recipes,
checks, drills, the Vagrantfile) reads a `Lab`. Bad input is refused here, before anything
on any host is touched, with the file, the field path and the reason.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError

DEFAULT_LAB = Path(__file__).resolve().parent.parent / "lab.yaml"

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
    emulated: VrrpTiming | None = None  # on VMs without KVM (QEMU's TCG): Lab.emulated()


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

    def emulated(self) -> Lab:
        """The lab as it runs on software-emulated VMs: `vrrp.emulated`'s timing, if any."""
        timing = self.vrrp.emulated
        if timing is None:
            return self
        return self.model_copy(update={"vrrp": self.vrrp.model_copy(update={
            "advert_int": timing.advert_int, "track": timing.track, "emulated": None})})

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
    """A machine of the lab: a VM (router, tenant) or a container (dhcp, client) of a tenant."""

    name: str
    role: Literal["router", "tenant", "dhcp", "client"]
    tenant: str | None = None

    @property
    def is_container(self) -> bool:
        return self.role in ("dhcp", "client")


# -- loading ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    path: str
    message: str


class LabError(Exception):
    """Invalid lab description: every problem found, each with its field path."""

    def __init__(self, file: Path | str, problems: list[Problem], lines: dict[str, int] | None = None):
        self.file = str(file)
        self.problems = problems
        self.lines = lines or {}
        super().__init__(str(self))

    def __str__(self) -> str:
        out = []
        for p in self.problems:
            line = _line_of(self.lines, p.path)
            where = f"{self.file}:{line}" if line else self.file
            out.append(f"{where}: {p.path or '(top)'}: {p.message}")
        return "\n".join(out)


def _line_of(lines: dict[str, int], path: str) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path.rpartition(".")[0]
    return None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _lines(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Map each field path to the line it is written on (for error messages)."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _lines(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}.{i}"
            out[path] = v.start_mark.line + 1
            _lines(v, path, out)
    return out


def load(path: Path | str = DEFAULT_LAB) -> Lab:
    """Read, parse and validate a lab description, or raise LabError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LabError(path, [Problem("", f"cannot read: {e.strerror}")]) from None
    return parse(text, path)


def parse(text: str, file: Path | str = "<lab>") -> Lab:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        lines = _lines(yaml.compose(text, Loader=yaml.SafeLoader) or yaml.MappingNode("", []))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise LabError(file, [Problem("", f"malformed YAML: {where}{reason}")]) from None
    if not isinstance(data, dict):
        raise LabError(file, [Problem("", "the lab description must be a mapping")])
    try:
        lab = Lab.model_validate(data)
    except ValidationError as e:
        raise LabError(file, [_problem(err) for err in e.errors()], lines) from None
    problems = list(check(lab))
    if problems:
        raise LabError(file, problems, lines)
    return lab


def _problem(err: dict) -> Problem:
    loc = [str(x) for x in err["loc"]]
    # pydantic names the member of a union it tried (e.g. "IPv4Interface"): drop it.
    loc = [x for x in loc if not x[:1].isupper() and "[" not in x]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return Problem(path, f"unknown key{_did_you_mean(err)}")
    if err["type"] == "missing":
        return Problem(path, "missing")
    msg = err["msg"]
    if "input" in err and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    return Problem(path, msg)


def _did_you_mean(err: dict) -> str:
    ctx_fields = _FIELDS_AT.get(tuple(str(x) for x in err["loc"][:-1]))
    if not ctx_fields:
        return ""
    close = difflib.get_close_matches(str(err["loc"][-1]), ctx_fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(model: type[BaseModel], prefix: tuple = ()) -> Iterator[tuple[tuple, list[str]]]:
    yield prefix, list(model.model_fields)
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _known_fields(ann, (*prefix, name))


_FIELDS_AT: dict[tuple, list[str]] = dict(_known_fields(Lab))
for _t in ("blue", "green"):  # tenants are a mapping: offer their fields under any name
    _FIELDS_AT.update({("tenants", _t, *k): v for k, v in _known_fields(Tenant)})


# -- the rules a valid lab obeys (beyond types) -------------------------------------------

def check(lab: Lab) -> Iterator[Problem]:
    """Every cross-field rule; each problem names the field to fix."""
    yield from _check_tenants(lab)
    if len(lab.tenants) != 2:
        return
    yield from _check_subnets(lab)
    yield from _check_vrrp(lab)
    yield from _check_dhcp(lab)
    yield from _check_unique(lab)
    vx = lab.shared_vlan.vxlan
    if vx.underlay_mtu < lab.shared_vlan.mtu + 54:
        yield Problem("shared_vlan.vxlan.underlay_mtu",
                      f"{vx.underlay_mtu} is too small for overlay MTU {lab.shared_vlan.mtu}: "
                      f"VXLAN adds 50 bytes, 54 with an 802.1Q tag (need >= "
                      f"{lab.shared_vlan.mtu + 54})")
    if lab.radvd.min_interval > 0.75 * lab.radvd.max_interval:
        yield Problem("radvd.min_interval",
                      f"{lab.radvd.min_interval} must be at most 0.75 x max_interval "
                      f"({lab.radvd.max_interval})")


def _check_tenants(lab: Lab) -> Iterator[Problem]:
    if len(lab.tenants) != 2:
        yield Problem("tenants", f"exactly two tenants are needed (a VRRP pair and a DHCP "
                                 f"failover pair), found {len(lab.tenants)}")


def _in(addr, net, path: str, what: str) -> Iterator[Problem]:
    ip = getattr(addr, "ip", addr)
    if ip not in net:
        yield Problem(path, f"{what} {ip} is outside {net}")


def _link_local(addr: IPv6Interface, path: str) -> Iterator[Problem]:
    if not addr.ip.is_link_local:
        yield Problem(path, f"{addr} is not a link-local address (fe80::/10)")


def _check_subnets(lab: Lab) -> Iterator[Problem]:
    gw, up = lab.internet.gateway, lab.router.uplink
    yield from _in(up.ipv4, gw.ipv4.network, "router.uplink.ipv4", "the router's uplink")
    yield from _in(up.ipv6, gw.ipv6.network, "router.uplink.ipv6", "the router's uplink")
    yield from _link_local(gw.link_local, "internet.gateway.link_local")
    sv = lab.shared_vlan
    for name, t in lab.tenants.items():
        p = f"tenants.{name}"
        u = t.underlay
        yield from _in(u.tenant.ipv4, u.router.ipv4.network, f"{p}.underlay.tenant.ipv4", "address")
        yield from _in(u.tenant.ipv6, u.router.ipv6.network, f"{p}.underlay.tenant.ipv6", "address")
        yield from _link_local(u.router.link_local, f"{p}.underlay.router.link_local")
        yield from _in(t.svi.ipv4, sv.ipv4, f"{p}.svi.ipv4", "the SVI")
        yield from _in(t.svi.ipv6, sv.ipv6, f"{p}.svi.ipv6", "the SVI")
        yield from _link_local(t.svi.link_local, f"{p}.svi.link_local")
        if t.svi.ipv4.network != sv.ipv4:
            yield Problem(f"{p}.svi.ipv4", f"prefix length must be that of {sv.ipv4}")
        yield from _in(t.dhcp_server.ipv4, sv.ipv4, f"{p}.dhcp_server.ipv4", "the DHCP server")
        for other in lab.tenants.values():
            if other is not t and u.router.ipv4.network.overlaps(other.underlay.router.ipv4.network):
                yield Problem(f"{p}.underlay.router.ipv4",
                              "overlaps the other tenant's underlay subnet")


def _check_vrrp(lab: Lab) -> Iterator[Problem]:
    v4, v6 = lab.vrrp.instances.ipv4, lab.vrrp.instances.ipv6
    if not isinstance(v4.vip, IPv4Interface):
        yield Problem("vrrp.instances.ipv4.vip", f"{v4.vip} is not an IPv4 address")
    else:
        yield from _in(v4.vip, lab.shared_vlan.ipv4, "vrrp.instances.ipv4.vip", "the VIP")
    if not isinstance(v6.vip, IPv6Interface):
        yield Problem("vrrp.instances.ipv6.vip", f"{v6.vip} is not an IPv6 address")
    elif not v6.vip.ip.is_link_local:
        yield Problem("vrrp.instances.ipv6.vip",
                      f"{v6.vip} is not link-local: VRRPv3 needs a link-local IPv6 VIP first")
    for path, track in (("vrrp.track", lab.vrrp.track),
                        ("vrrp.emulated.track", lab.vrrp.emulated and lab.vrrp.emulated.track)):
        if track and track.ping_wait >= track.timeout:
            yield Problem(f"{path}.ping_wait", f"{track.ping_wait} s must be shorter than the script's "
                                               f"timeout ({track.timeout} s): keepalived would kill the ping")
    if v4.name == v6.name:
        yield Problem("vrrp.instances.ipv6.name", f"{v6.name!r} is already the IPv4 instance's name")
    prios = {n: t.vrrp_priority for n, t in lab.tenants.items()}
    if len(set(prios.values())) == 1:
        a, b = prios
        yield Problem(f"tenants.{b}.vrrp_priority",
                      f"must differ from tenants.{a}.vrrp_priority (both {prios[a]}): "
                      "the priority decides which tenant is the gateway")


def _check_dhcp(lab: Lab) -> Iterator[Problem]:
    net = lab.shared_vlan.ipv4
    r = lab.dhcp.range
    yield from _in(r.first, net, "dhcp.range.first", "the range start")
    yield from _in(r.last, net, "dhcp.range.last", "the range end")
    if r.first > r.last:
        yield Problem("dhcp.range", f"first {r.first} is after last {r.last}")
    statics = {f"tenants.{n}.svi.ipv4": t.svi.ipv4.ip for n, t in lab.tenants.items()}
    statics |= {f"tenants.{n}.dhcp_server.ipv4": t.dhcp_server.ipv4.ip
                for n, t in lab.tenants.items()}
    if isinstance(lab.vrrp.instances.ipv4.vip, IPv4Interface):
        statics["vrrp.instances.ipv4.vip"] = lab.vrrp.instances.ipv4.vip.ip
    statics["shared_vlan.ipv4 (network)"] = net.network_address
    statics["shared_vlan.ipv4 (broadcast)"] = net.broadcast_address
    for where, ip in statics.items():
        if r.first <= ip <= r.last:
            yield Problem("dhcp.range", f"{r.first}-{r.last} covers {ip}, the static address "
                                        f"of {where}")
    roles = sorted(t.dhcp_server.role for t in lab.tenants.values())
    if roles != ["primary", "secondary"]:
        yield Problem("tenants", f"need one primary and one secondary DHCP server, got {roles}")
    ports = [t.dhcp_server.port for t in lab.tenants.values()]
    if len(set(ports)) != len(ports):
        name = list(lab.tenants)[1]
        yield Problem(f"tenants.{name}.dhcp_server.port", "both DHCP servers use one port")
    if lab.dhcp.default_lease_time > lab.dhcp.max_lease_time:
        yield Problem("dhcp.default_lease_time", "is longer than max_lease_time")


def _check_unique(lab: Lab) -> Iterator[Problem]:
    """Names and addresses must not repeat anywhere in the lab."""
    names: dict[str, str] = {}
    addrs: dict[ipaddress._BaseAddress, str] = {}
    vlans: dict[int, str] = {}
    tables: dict[int, str] = {}
    marks: dict[int, str] = {}

    def once(seen: dict, key, path: str, what: str) -> Iterator[Problem]:
        if key in seen:
            yield Problem(path, f"{what} {key} is already used by {seen[key]}")
        else:
            seen[key] = path

    yield from once(names, lab.router.vm.lower(), "router.vm", "name")
    yield from once(vlans, lab.router.uplink.vlan, "router.uplink.vlan", "VLAN")
    for path, ip in _addresses(lab):
        yield from once(addrs, ip, path, "address")
    for n, t in lab.tenants.items():
        p = f"tenants.{n}"
        yield from once(names, t.vm.lower(), f"{p}.vm", "name")
        yield from once(names, t.dhcp_server.name.lower(), f"{p}.dhcp_server.name", "name")
        for i, c in enumerate(t.clients):
            yield from once(names, c.lower(), f"{p}.clients.{i}", "name")
        yield from once(vlans, t.vlan, f"{p}.vlan", "VLAN")
        yield from once(tables, t.table, f"{p}.table", "routing table")
        yield from once(marks, t.fwmark, f"{p}.fwmark", "fwmark")
    ports = {}
    for n, t in lab.tenants.items():
        yield from once(ports, t.vxlan_port, f"tenants.{n}.vxlan_port", "port name")
        yield from once(ports, t.switch, f"tenants.{n}.switch", "switch name")
    yield from once(ports, lab.shared_vlan.bridge, "shared_vlan.bridge", "name")


def _addresses(lab: Lab) -> Iterator[tuple[str, ipaddress._BaseAddress]]:
    def walk(obj, path: str):
        if isinstance(obj, IPv4Interface | IPv6Interface):
            yield path, obj.ip
        elif isinstance(obj, IPv4Address | IPv6Address):
            yield path, obj
        elif isinstance(obj, BaseModel):
            for k in type(obj).model_fields:
                yield from walk(getattr(obj, k), f"{path}.{k}" if path else k)
        elif isinstance(obj, dict):
            for k, v in obj.items():
                yield from walk(v, f"{path}.{k}")

    skip = ("dhcp.range",)  # the range bounds are checked against statics separately
    for path, ip in walk(lab, ""):
        if not path.startswith(skip):
            yield path, ip

