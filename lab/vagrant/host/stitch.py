"""dsw-host stretched across the lab's hosts (lab.yaml's `hosts:`): on each host, one Open vSwitch
VXLAN port per peer host on its dsw-host, trunking the lab's VLANs (one VNI: the 802.1Q tag the
trunk keeps inside says which VLAN), and the underlay bridge that holds the host's tunnel
endpoint: OVS's userspace datapath sends a tunnel's packets only out of one of its own bridges
(the route's device must be an OVS bridge), so the endpoint lives on that bridge's own port and
the NIC toward the other hosts is a port of it.

The route to each peer and its MAC are set in OVS itself (ovs/route/add, tnl/neigh/set): the
endpoint's address carries no kernel route (noprefixroute) and nothing waits for ARP. Each
host's underlay bridge has a MAC made from the lab's and the host's place in `hosts:`, so a peer
knows it without asking. So the endpoints share one link (one Ethernet segment, as two machines
on one switch, or the tests' veth): a routed underlay would need its gateway's MAC instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_interface, ip_network

from lab import model
from lab.host.names import ifname
from lab.host.wait import until
from lab.topology import Topology
from lab.vagrant.host.ovs import Ovs

VNI = 4096  # the stitch's one key: any number both ends agree on (the tag inside tells the VLANs apart)
UDP_PORT = 4789  # IANA's VXLAN port


@dataclass(frozen=True)
class Peer:
    name: str  # the peer host's name in `hosts:`
    port: str  # the tunnel port toward it on dsw-host
    endpoint: IPv4Address | IPv6Address
    mac: str  # of its underlay bridge


@dataclass(frozen=True)
class Stitch:
    """One host's side of the stitch."""

    host: str
    switch: str  # dsw-host on this host
    underlay: str  # the bridge holding the endpoint
    endpoint: str  # address/prefix: the prefix covers every endpoint, so each peer is on-link
    mac: str
    mtu: int  # the underlay's, as lab.yaml states it
    nic: str  # toward the other hosts: a port of the underlay bridge
    vlans: tuple[int, ...]  # what each tunnel port trunks
    peers: tuple[Peer, ...]
    vni: int = VNI
    udp_port: int = UDP_PORT


def underlay_bridge(lab: model.Lab) -> str:
    return ifname(f"{lab.switch.name}-ul")


def tunnel_port(peer: str) -> str:
    return f"vxh-{peer}"  # a host's name is at most 11 characters (lab/model)


def underlay_mac(lab: model.Lab, index: int) -> str:
    """The index-th host's underlay MAC (the lab's prefix, as its VMs' NICs; fe: no VM's)."""
    return f"{lab.switch.mac_prefix}:fe:{index:02x}"


def _covering(addrs: list[IPv4Address | IPv6Address]) -> int:
    """The longest prefix that holds every address."""
    bits = addrs[0].max_prefixlen
    prefix = bits - 1 if len(addrs) > 1 else bits
    while len({ip_network(f"{a}/{prefix}", strict=False) for a in addrs}) > 1:
        prefix -= 1
    return prefix


def plan(lab: model.Lab, host: str, switch: str | None = None, underlay: str | None = None) -> Stitch:
    """`host`'s side of the stitch (`switch`, `underlay`: other bridge names, where two hosts
    share one Open vSwitch, as the loopback stand-in does)."""
    hosts = lab.hosts or {}
    if len(hosts) < 2 or host not in hosts:
        raise ValueError(f"{host!r} is not one of two hosts or more in lab {lab.name!r}: nothing to stitch")
    names = list(hosts)
    endpoints = [h.endpoint for h in hosts.values()]
    me = hosts[host]
    trunk = next(lk for lk in Topology(lab).switch_links if lk.trunk)  # the router's: every VLAN
    return Stitch(
        host=host,
        switch=switch or lab.switch.name,
        underlay=underlay or underlay_bridge(lab),
        endpoint=str(ip_interface(f"{me.endpoint}/{_covering(endpoints)}")),
        mac=underlay_mac(lab, names.index(host)),
        mtu=me.underlay_mtu,
        nic=me.nic,
        vlans=trunk.vlans,
        peers=tuple(Peer(n, tunnel_port(n), h.endpoint, underlay_mac(lab, names.index(n)))
                    for n, h in hosts.items() if n != host),
    )


def apply(ovs: Ovs, s: Stitch) -> None:
    """Make `s` on the host whose Open vSwitch is `ovs` (its dsw-host made already). Idempotent."""
    ul = s.underlay
    ovs.vsctl("--may-exist", "add-br", ul, "--", "set", "bridge", ul, "datapath_type=netdev",
              f'other-config:hwaddr="{s.mac}"')
    ovs.vsctl("set", "interface", ul, f"mtu_request={s.mtu}")
    ovs.vsctl("--may-exist", "add-port", ul, s.nic)
    ovs.ip("link", "set", ul, "addrgenmode", "none")  # no link-local address: it says nothing
    ovs.ip("link", "set", ul, "up")
    ovs.ip("addr", "replace", s.endpoint, "dev", ul, "noprefixroute")
    for p in s.peers:
        ovs.vsctl("--may-exist", "add-port", s.switch, p.port,
                  "--", "set", "interface", p.port, "type=vxlan", f"options:remote_ip={p.endpoint}",
                  f"options:key={s.vni}", f"options:dst_port={s.udp_port}",
                  "--", "set", "port", p.port, f"trunks={','.join(map(str, s.vlans))}")
        host_route = f"{p.endpoint}/{p.endpoint.max_prefixlen}"
        # OVS learns the bridge's address a moment after the kernel has it: until then no route.
        if not until(lambda r=host_route: ovs.appctl("ovs/route/add", r, ul, check=False).ok, 10, pause=0.1):
            ovs.appctl("ovs/route/add", host_route, ul)  # once more, to raise its error
        ovs.appctl("tnl/neigh/set", ul, str(p.endpoint), p.mac)


def remove(ovs: Ovs, s: Stitch) -> list[str]:
    """Undo apply(): the tunnel ports, their routes and neighbours, the underlay bridge (its NIC
    stays, detached). What is gone already is skipped."""
    done = []
    ports = set(ovs.vsctl("list-ports", s.switch, check=False).out.split())
    for p in s.peers:
        if p.port in ports:
            ovs.vsctl("--if-exists", "del-port", s.switch, p.port)
            done.append(f"tunnel port {p.port}")
        ovs.appctl("ovs/route/del", f"{p.endpoint}/{p.endpoint.max_prefixlen}", check=False)
    if ovs.vsctl("br-exists", s.underlay, check=False).ok:
        ovs.appctl("tnl/neigh/flush", check=False)  # the pinned MACs (entries of ours only)
        ovs.vsctl("--if-exists", "del-br", s.underlay)
        done.append(f"OVS bridge {s.underlay}")
    return done
