"""The rules a valid lab obeys beyond its types: each broken rule is a Problem naming the field."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface

from pydantic import BaseModel

from lab.model.types import Lab


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None  # where the loader knows it better than the field's path says


def check(lab: Lab) -> Iterator[Problem]:
    """Every cross-field rule; each problem names the field to fix."""
    yield from _check_tenants(lab)
    if len(lab.tenants) != 2:
        return
    yield from _check_subnets(lab)
    yield from _check_vrrp(lab)
    yield from _check_dhcp(lab)
    yield from _check_unique(lab)
    yield from _check_names(lab)
    yield from _check_hosts(lab)
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
    if sv.ipv6.prefixlen != 64:
        yield Problem("shared_vlan.ipv6", f"{sv.ipv6} must be a /64: the clients take their "
                                          "addresses by SLAAC, which needs 64 bits for the interface")
    for name, t in lab.tenants.items():
        p = f"tenants.{name}"
        u = t.underlay
        yield from _in(u.tenant.ipv4, u.router.ipv4.network, f"{p}.underlay.tenant.ipv4", "address")
        yield from _in(u.tenant.ipv6, u.router.ipv6.network, f"{p}.underlay.tenant.ipv6", "address")
        yield from _link_local(u.router.link_local, f"{p}.underlay.router.link_local")
        yield from _in(t.svi.ipv4, sv.ipv4, f"{p}.svi.ipv4", "the SVI")
        yield from _in(t.svi.ipv6, sv.ipv6, f"{p}.svi.ipv6", "the SVI")
        yield from _link_local(t.svi.link_local, f"{p}.svi.link_local")
        if t.svi.ipv6.network != sv.ipv6:
            yield Problem(f"{p}.svi.ipv6", f"prefix length must be that of {sv.ipv6}")
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
    clients = sum(len(t.clients) for t in lab.tenants.values())
    size = int(r.last) - int(r.first) + 1
    if 0 < size < clients:
        yield Problem("dhcp.range", f"{r.first}-{r.last} holds {size} addresses, fewer than the "
                                    f"{clients} clients of both tenants (the failover pair serves "
                                    "them all)")
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
    if lab.dhcp.server == "kea":
        yield from _check_kea(lab)
    if lab.dhcp.v6 == "stateful":
        yield from _check_stateful(lab)


def _check_kea(lab: Lab) -> Iterator[Problem]:
    d, k = lab.dhcp, lab.dhcp.kea
    if k.max_response_delay_ms <= k.heartbeat_delay_ms:
        yield Problem("dhcp.kea.max_response_delay_ms",
                      f"must be longer than heartbeat_delay_ms ({k.heartbeat_delay_ms}): a partner is "
                      "taken for down when no heartbeat answered for that long")
    if k.mode == "load-balancing":
        if d.split != 128:
            yield Problem("dhcp.split", f"is {d.split}, but Kea's load balancing always splits the "
                                        "clients half and half (128): set 128, or dhcp.kea.mode "
                                        "hot-standby for one server serving all")
        if d.range.first >= d.range.last:
            yield Problem("dhcp.range", "load balancing gives each Kea server half of the range: "
                                        "it needs at least two addresses")


def _check_stateful(lab: Lab) -> Iterator[Problem]:
    d = lab.dhcp
    if d.server != "kea":
        yield Problem("dhcp.v6", "stateful DHCPv6 is served by kea-dhcp6: set dhcp.server kea "
                                 "(ISC dhcpd's failover is IPv4 only)")
    if lab.containers.driver != "netns":
        yield Problem("dhcp.v6", "stateful DHCPv6 runs with light containers only (containers.driver "
                                 "netns): the LXD image does not carry kea-dhcp6 yet")
    r, net = d.range6, lab.shared_vlan.ipv6
    if r is None:
        yield Problem("dhcp.range6", "stateful DHCPv6 needs a range6 {first, last} in "
                                     f"shared_vlan.ipv6 ({net})")
        return
    for end in ("first", "last"):
        if getattr(r, end) not in net:
            yield Problem(f"dhcp.range6.{end}", f"{getattr(r, end)} is not in shared_vlan.ipv6 ({net})")
    if r.first > r.last or (d.kea.mode == "load-balancing" and r.first == r.last):
        yield Problem("dhcp.range6", "first must come before last (load balancing halves the range)")


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

    # The range bounds are checked against statics separately; the hosts' endpoints by _check_hosts.
    skip = ("dhcp.range", "hosts.")
    for path, ip in walk(lab, ""):
        if not path.startswith(skip):
            yield path, ip


LXD_NAME_MAX = 63  # LXD's instance names are host names
IFNAMSIZ = 15      # the kernel's interface names, in bytes


def _check_names(lab: Lab) -> Iterator[Problem]:
    """Names the lab derives from others must still fit where they go."""
    for n, t in lab.tenants.items():
        for path, name in ((f"tenants.{n}.dhcp_server.name", t.dhcp_server.name),
                           *((f"tenants.{n}.clients.{i}", c) for i, c in enumerate(t.clients))):
            instance = f"{lab.name}-{name}"  # the embedded lab's LXD instance (lab/containers)
            if len(instance) > LXD_NAME_MAX:
                yield Problem(path, f"makes the LXD container name {instance[:20]}... "
                                    f"{len(instance)} characters long; LXD allows {LXD_NAME_MAX}")
    r = lab.router
    for path, vlan in (("router.uplink.vlan", r.uplink.vlan),
                       *((f"tenants.{n}.vlan", t.vlan) for n, t in lab.tenants.items())):
        sub = r.subif(vlan)
        if len(sub) > IFNAMSIZ:
            yield Problem("router.nic", f"the router's VLAN {vlan} subinterface {sub} ({path}) is "
                                        f"{len(sub)} characters long; the kernel allows {IFNAMSIZ}")


def vxlan_overhead(endpoint: IPv4Address | IPv6Address) -> int:
    """What a frame of dsw-host grows by in the tunnel between hosts: outer IP (20 or 40), UDP
    (8), VXLAN (8) and the inner Ethernet header (14) with the 802.1Q tag the trunk keeps (4)."""
    return (20 if endpoint.version == 4 else 40) + 8 + 8 + 14 + 4


def _vm_paths(lab: Lab) -> dict[str, str]:
    """Each VM's `host` field, by VM name."""
    return {lab.router.vm: "router.host", **{t.vm: f"tenants.{n}.host" for n, t in lab.tenants.items()}}


def _check_hosts(lab: Lab) -> Iterator[Problem]:
    """Placement: every VM on a declared host; between hosts, tunnel endpoints of one family,
    each its own, and an underlay that carries dsw-host's largest frame once wrapped."""
    paths = _vm_paths(lab)
    if lab.hosts is None:
        for vm, host in lab.vms().items():
            if host is not None:
                yield Problem(paths[vm], f"names host {host!r}, but the lab declares no hosts: "
                                         "add a hosts: map saying how to reach each")
        return
    hosts = lab.hosts
    if not hosts:
        yield Problem("hosts", "declares no host: leave hosts: out to run the lab on this machine")
        return
    local = [n for n, h in hosts.items() if h.local]
    for extra in local[1:]:
        yield Problem(f"hosts.{extra}", f"has no ssh:, so it is this machine, as hosts.{local[0]} "
                                        "is already: give it ssh: (user@address)")
    used = set()
    for vm, host in lab.vms().items():
        if host is None and not local:
            yield Problem(paths[vm], f"missing: every host in hosts: is reached over SSH (none is "
                                     f"this machine), so {vm} must say which one runs it")
        elif host is not None and host not in hosts:
            yield Problem(paths[vm], f"{host!r} is not in hosts: (declared: {', '.join(hosts)})")
        used.add(host or (local[0] if local else None))
    for name in hosts:
        if name not in used:
            yield Problem(f"hosts.{name}", "runs no VM of the lab: place one there (a host: on the "
                                           "router or a tenant) or leave it out")
    if len(hosts) < 2:
        return  # one machine: no tunnel
    yield from _check_tunnels(lab, hosts)


def _check_tunnels(lab: Lab, hosts: dict) -> Iterator[Problem]:
    lab_addrs = dict((ip, path) for path, ip in _addresses(lab))
    seen: dict = {}
    families = set()
    for name, h in hosts.items():
        p = f"hosts.{name}"
        if h.endpoint is None:
            yield Problem(f"{p}.endpoint", "missing: with more than one host, each needs the address "
                                           "its tunnels to the others start from")
        elif h.endpoint in seen:
            yield Problem(f"{p}.endpoint", f"{h.endpoint} is already {seen[h.endpoint]}'s endpoint: "
                                           "each host needs its own")
        elif h.endpoint in lab_addrs:
            yield Problem(f"{p}.endpoint", f"{h.endpoint} is a lab address ({lab_addrs[h.endpoint]}): "
                                           "an endpoint is the host's own, outside the lab")
        else:
            seen[h.endpoint] = f"hosts.{name}"
            families.add(h.endpoint.version)
        if h.nic is None:
            yield Problem(f"{p}.nic", "missing: with more than one host, name the NIC toward the "
                                      "others (Open vSwitch takes it for the tunnels)")
        if h.underlay_mtu is None:
            yield Problem(f"{p}.underlay_mtu", "missing: with more than one host, say the MTU of the "
                                               "network between the endpoints (oversize tunnel frames "
                                               "vanish silently)")
    if len(families) > 1:
        yield Problem("hosts", "the endpoints mix IPv4 and IPv6: a tunnel joins two of one family")
        return
    frame = lab.shared_vlan.vxlan.underlay_mtu  # the MTU of every lab NIC on dsw-host
    for name, h in hosts.items():
        if h.underlay_mtu is None or h.endpoint is None:
            continue
        need = frame + vxlan_overhead(h.endpoint)
        if h.underlay_mtu < need:
            yield Problem(f"hosts.{name}.underlay_mtu",
                          f"{h.underlay_mtu} is too small: dsw-host's frames carry "
                          f"{frame} bytes (shared_vlan.vxlan.underlay_mtu) and the tunnel adds "
                          f"{need - frame} (VXLAN over IPv{h.endpoint.version}, with the VLAN tag): need "
                          f">= {need}, or lower shared_vlan.mtu and shared_vlan.vxlan.underlay_mtu; "
                          "larger frames vanish silently")
