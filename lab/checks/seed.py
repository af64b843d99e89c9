"""The seed's "Check the results", as data: each check names where it runs, what it runs and
what must hold, with expected values taken from the lab model. Written against the
substrate's Node only, so the same checks run on namespaces and on VMs.

Groups: addressing, gateway, vxlan, internet (from every container), router;
`invoke test.connectivity` runs them all. The checks marked `converged` are what `invoke up`
waits for and what status and the drills call "converged": one definition for all of them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

from lab import facts
from lab.checks.check import Check, Predicate, last, replies, succeeds
from lab.facts import Nic, Route
from lab.model import Lab
from lab.roles import client, dhcp, tenant
from lab.substrate.base import Node, Result

NodeOf = Callable[[str], Node]


# -- facts read from the running lab before checking -----------------------------------------

def eui64(prefix: ipaddress.IPv6Network, mac: str) -> ipaddress.IPv6Address:
    """The SLAAC address a MAC gets in a /64 (modified EUI-64)."""
    b = bytes.fromhex(mac.replace(":", ""))
    iid = bytes([b[0] ^ 0x02, *b[1:3], 0xFF, 0xFE, *b[3:6]])
    return ipaddress.IPv6Address(int(prefix.network_address) | int.from_bytes(iid, "big"))


def container_macs(lab: Lab, node: Callable[[str], Node]) -> dict[str, str]:
    nic = lab.containers.nic
    out = {}
    for t in lab.tenants:
        for c in lab.containers_of(t):
            r = node(c).run(["cat", f"/sys/class/net/{nic}/address"], check=False)
            out[c] = r.out.strip() if r.ok else "unknown"
    return out


# -- the checks ----------------------------------------------------------------------------------

def build(lab: Lab, node: NodeOf, ovs: bool = False) -> list[Check]:
    """Every check, in the order they run (the router's conntrack needs the internet group's
    flows)."""
    macs = container_macs(lab, node)
    return [*addressing(lab, node), *gateway(lab, node), *vxlan(lab, node, macs, ovs),
            *internet(lab, node), *router(lab, node)]


def converged(lab: Lab, node: NodeOf) -> list[Check]:
    """What `invoke up` waits for: the VRRP master holds both VIPs and reports MASTER, the other
    none and BACKUP, their daemons run, both DHCP servers run in failover state normal, every
    client has its lease, SLAAC address and both default routes, the router its fwmark rules
    and tenant tables."""
    return [c for c in (*addressing(lab, node), *gateway(lab, node), *router(lab, node)) if c.converged]


def dhcp_pair(lab: Lab, node: NodeOf) -> list[Check]:
    """The DHCP failover pair serving: both dhcpd run, in failover state normal."""
    servers = {t.dhcp_server.name for t in lab.tenants.values()}
    return [c for c in gateway(lab, node) if c.node in servers]


def addressing(lab: Lab, node: NodeOf) -> Iterable[Check]:
    nic, r, sv = lab.containers.nic, lab.dhcp.range, lab.shared_vlan
    vip4, vip6 = str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)
    dns = lab.internet.resolver.ipv4
    for name, t in lab.tenants.items():
        s = t.dhcp_server
        yield Check.on("addressing.static", facts.nic(node(s.name), nic), holds_address(s.ipv4),
                       f"{s.name} holds {s.ipv4} on {nic}")
        for c in t.clients:
            yield Check.on("addressing.lease", client.nic(lab, node(c)), lease_in(r.first, r.last, sv.ipv4),
                           f"a DHCP lease in {r.first}-{r.last} on {nic}", converged=True)
            if (r6 := lab.dhcp.range6) and lab.dhcp.v6 == "stateful":
                yield Check.on("addressing.lease6", client.nic(lab, node(c)),
                               lease_in(r6.first, r6.last, sv.ipv6),
                               f"a DHCPv6 lease in {r6.first}-{r6.last} on {nic}", converged=True)
            yield Check("addressing.dns", c, ("cat", "/etc/resolv.conf"),
                        nameserver(str(dns)), f"DNS {dns} from DHCP in /etc/resolv.conf")
        for c in lab.containers_of(name):
            is_client = c in t.clients
            yield Check.on("addressing.slaac", client.nic(lab, node(c)), slaac(sv.ipv6),
                           f"SLAAC in {sv.ipv6} (EUI-64 of its MAC)", converged=is_client)
            for fam, vip in ((4, vip4), (6, vip6)):
                yield Check.on(f"addressing.route{fam}", client.route(node(c), fam), via(vip, nic),
                               f"IPv{fam} default route via {vip}", converged=is_client)


def holds_address(want) -> Callable[[Nic], str | None]:
    def holds(found: Nic) -> str | None:
        if want in found.addresses:
            return None
        same = [str(a) for a in found.addresses if a.version == want.version]
        return f"IPv{want.version} addresses {', '.join(same) or 'none'}"
    return holds


def nameserver(want: str) -> Predicate:
    def holds(r: Result) -> str | None:
        found = re.findall(r"^nameserver\s+(\S+)", r.out, re.M)
        if r.ok and want in found:
            return None
        if found:
            return f"nameservers {', '.join(found)}"
        return f"no nameserver ({last(r.err) if not r.ok else 'none given'})"
    return holds


def lease_in(first, last_, net) -> Callable[[Nic], str | None]:
    def holds(found: Nic) -> str | None:
        ok = [a for a in found.ips(net) if first <= ipaddress.ip_address(a) <= last_]
        have = [str(a.ip) for a in found.addresses if a.version == net.version]
        return None if ok else f"addresses {have or 'none'}"
    return holds


def slaac(prefix: ipaddress.IPv6Network) -> Callable[[Nic], str | None]:
    def holds(found: Nic) -> str | None:
        if found.mac is None:
            return "no such interface"
        want = eui64(prefix, found.mac)
        have = [a for a in found.addresses if a.version == 6]
        if any(a.ip == want and a.network.prefixlen == 64 for a in have):
            return None
        return f"no {want}/64 (EUI-64 of {found.mac}); has {[str(a) for a in have] or 'none'}"
    return holds


def via(gateway: str, dev: str) -> Callable[[Route], str | None]:
    def holds(found: Route) -> str | None:
        ok = found.gateway == gateway and found.dev == dev
        return None if ok else f"default via {found.gateway or 'nothing'} dev {found.dev or '-'}"
    return holds


def gateway(lab: Lab, node: NodeOf) -> Iterable[Check]:
    master = lab.master()
    vips = [str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)]
    for name, t in lab.tenants.items():
        vm = node(t.vm)
        if name == master:
            yield Check.on("gateway.vips", tenant.vips(lab, vm), holds_exactly(vips),
                           f"{t.vm} (priority {t.vrrp_priority}, the highest) holds {' and '.join(vips)}",
                           converged=True)
        else:
            yield Check.on("gateway.vips", tenant.vips(lab, vm), holds_exactly([]),
                           f"{t.vm} (priority {t.vrrp_priority}) holds no VIP", converged=True)
        want = "MASTER" if name == master else "BACKUP"
        yield Check.on("gateway.vrrp", tenant.vrrp(vm), equals(want), f"keepalived reports {want}",
                       converged=True)
        names = list(tenant.daemon_pids(lab))
        yield Check.on("gateway.daemons", tenant.daemons(lab, vm), none_dead,
                       f"{', '.join(names[:-1])} and {names[-1]} run", converged=True)
    for t in lab.tenants.values():
        server = node(t.dhcp_server.name)
        daemons, normal = list(dhcp.daemon_pids(lab)), dhcp.normal(lab)
        runs = (f"{daemons[0]} runs" if len(daemons) == 1
                else f"{', '.join(daemons[:-1])} and {daemons[-1]} run")
        yield Check.on("gateway.daemons", dhcp.daemons(lab, server), none_dead, runs, converged=True)
        yield Check.on("gateway.dhcp-failover", dhcp.failover(lab, server), equals(normal),
                       f"{daemons[0]} ({t.dhcp_server.role}) in failover state {normal}", converged=True)
        if lab.dhcp.v6 == "stateful":
            yield Check.on("gateway.dhcp6-failover", dhcp.failover6(lab, server), equals(normal),
                           f"kea-dhcp6 ({t.dhcp_server.role}) in HA state {normal}", converged=True)


def split_brain(lab: Lab, holders: dict[str, list[str]]) -> str | None:
    """Two tenants holding the same VIP (tenant name -> the VIPs it holds), by name: both are
    VRRP master, and VLAN 7 has each VIP twice."""
    both = [v for v in (str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip))
            if sum(v in held for held in holders.values()) > 1]
    if not both:
        return None
    vms = [lab.tenants[n].vm for n, held in holders.items() if set(both) & set(held)]
    return f"split brain: {' and '.join(vms)} both hold {' and '.join(both)}"


def holds_exactly(vips: list[str]) -> Callable[[list[str]], str | None]:
    def holds(found: list[str]) -> str | None:
        return None if sorted(found) == sorted(vips) else f"holds {' and '.join(found) or 'no VIP'}"
    return holds


def equals(want: str) -> Callable[[str | None], str | None]:
    def holds(found: str | None) -> str | None:
        return None if found == want else f"{found or 'nothing'}"
    return holds


def none_dead(dead: list[str]) -> str | None:
    return f"not running: {', '.join(dead)}" if dead else None


def vxlan(lab: Lab, node: Callable[[str], Node], macs: dict[str, str], ovs: bool) -> Iterable[Check]:
    sv = lab.shared_vlan.bridge
    for name, t in lab.tenants.items():
        peer = lab.tenants[lab.peer(name)]
        yield Check("vxlan.ping4", t.vm, ("ping", "-c", "2", "-i", "0.2", "-W", "1", str(peer.svi.ipv4.ip)),
                    replies, f"{t.vm} reaches {peer.vm}'s SVI {peer.svi.ipv4.ip} over VXLAN")
        ll = f"{peer.svi.link_local.ip}%{sv}"
        yield Check("vxlan.ping6", t.vm, ("ping", "-c", "2", "-i", "0.2", "-W", "1", ll),
                    replies, f"{t.vm} reaches {ll} over VXLAN")
    # Frames of every container cross the tunnel (the FDB checks below need them learned).
    for name in lab.tenants:
        peer = lab.tenants[lab.peer(name)]
        for c in lab.containers_of(name):
            yield Check("vxlan.reach", c, ("ping", "-c", "1", "-W", "1", str(peer.svi.ipv4.ip)),
                        replies, f"{c} reaches {peer.vm}'s SVI across the tunnel")
    for name, t in lab.tenants.items():
        others = {c: macs[c] for c in lab.containers_of(lab.peer(name))}
        if ovs:  # the seed's own view: ovs-appctl fdb/show on VLAN 7, port of the tunnel
            argv = ("sh", "-c", f"ovs-appctl fdb/show {t.switch}; "
                                f"ovs-vsctl get Interface {t.vxlan_port} ofport")
            holds = ovs_learned(others, lab.shared_vlan.vlan)
        else:
            argv = ("bridge", "fdb", "show", "br", sv, "brport", t.vxlan_port)
            holds = bridge_learned(others, sv)
        yield Check("vxlan.fdb", t.vm, argv, holds,
                    f"{t.vxlan_port} has learned {', '.join(f'{c} {m}' for c, m in others.items())}")


def bridge_learned(macs: dict[str, str], bridge: str) -> Predicate:
    """The switch learned these MACs on the port: its own entries ("master <bridge>"), not the
    VXLAN device's remote table ("self") nor static ones."""
    def holds(r: Result) -> str | None:
        learned = {line.split()[0] for line in r.out.splitlines()
                   if f"master {bridge}" in line and "permanent" not in line}
        missing = [f"{c} {m}" for c, m in macs.items() if m not in learned]
        return f"not learned: {', '.join(missing)}" if missing else None
    return holds


def ovs_learned(macs: dict[str, str], vlan: int) -> Predicate:
    def holds(r: Result) -> str | None:
        lines = r.out.strip().splitlines()
        port = lines[-1].strip() if lines else "?"
        learned = {m.group(2) for m in re.finditer(rf"^\s*(\d+)\s+{vlan}\s+(\S+)", r.out, re.M)
                   if m.group(1) == port}
        missing = [f"{c} {m}" for c, m in macs.items() if m not in learned]
        return f"not on port {port}: {', '.join(missing)}" if missing else None
    return holds


def internet(lab: Lab, node: Callable[[str], Node]) -> Iterable[Check]:
    from lab.debian import MIRROR_HOST

    res = lab.internet.resolver
    for t in lab.tenants:
        for c in lab.containers_of(t):
            yield Check("internet.ping4", c, ("ping", "-c", "2", "-i", "0.2", "-W", "2", str(res.ipv4)),
                        replies, f"ping {res.ipv4}")
            yield Check("internet.ping6", c, ("ping", "-c", "2", "-i", "0.2", "-W", "2", str(res.ipv6)),
                        replies, f"ping {res.ipv6}")
            yield Check("internet.dns", c, ("getent", "ahosts", MIRROR_HOST),
                        resolves_to(str(res.ipv4), str(res.ipv6)),
                        f"{MIRROR_HOST} resolves to {res.ipv4}, {res.ipv6}")
            for fam in ("4", "6"):
                yield Check(f"internet.http{fam}", c,
                            ("curl", f"-{fam}", "-sSf", "-m", "5", "-o", "/dev/null",
                             f"http://{MIRROR_HOST}/"),
                            succeeds, f"HTTP over IPv{fam} from {MIRROR_HOST}")
            yield Check("internet.apt", c, apt_update(node(c).root), apt_ok,
                        "apt-get update reaches the lab's mirror (the seed's test)", timeout=60)


def resolves_to(*want: str) -> Predicate:
    def holds(r: Result) -> str | None:
        found = list(dict.fromkeys(line.split()[0] for line in r.out.splitlines() if line.split()))
        if r.ok and all(w in found for w in want):
            return None
        return f"resolves to {', '.join(found)}" if found else f"does not resolve (exit {r.rc})"
    return holds


def apt_ok(r: Result) -> str | None:
    """apt-get update fetched the release file, without an error or a warning."""
    text = r.out + r.err
    bad = [line for line in text.splitlines() if line.startswith(("Err:", "E:", "W:"))]
    if r.ok and not bad and re.search(r"^(Hit|Get):\d+ http://\S+ \S+ (In)?Release", text, re.M):
        return None
    return last("\n".join(bad) or text)


def apt_update(root: str) -> tuple[str, ...]:
    """`apt-get update`; a light container shares the host's apt, so it gets its own lists,
    cache and sources (under its root) and leaves the host's alone."""
    if not root:
        return ("apt-get", "update")
    lists, cache = f"{root}/var/lib/apt/lists", f"{root}/var/cache/apt"
    return ("sh", "-c", f"mkdir -p {lists}/partial {cache}/archives/partial && apt-get"
            f" -o Dir::State::Lists={lists} -o Dir::Cache={cache}"
            f" -o Dir::Etc::SourceList={root}/etc/apt/sources.list -o Dir::Etc::SourceParts=/dev/null"
            " update")


def router(lab: Lab, node: NodeOf) -> Iterable[Check]:
    r, gw = lab.router, lab.internet.gateway
    vm = node(r.vm)
    up = r.subif(r.uplink.vlan)
    for fam in (4, 6):
        want = [f"pref {t.table} fwmark {t.fwmark:#x} lookup {n}" for n, t in lab.tenants.items()]
        yield Check.on(f"router.rules{fam}", facts.rules(vm, fam), has_all(want, "rule"),
                       "fwmark rules: " + ", ".join(f"{t.fwmark:#x} -> {n}" for n, t in lab.tenants.items()),
                       converged=True)
    for n, t in lab.tenants.items():
        dev = r.subif(t.vlan)
        v4 = [f"default via {gw.ipv4.ip} dev {up}",
              f"{lab.shared_vlan.ipv4} via {t.underlay.tenant.ipv4.ip} dev {dev}",
              f"{t.underlay.router.ipv4.network} dev {dev}", f"{r.uplink.ipv4.network} dev {up}"]
        v6 = [f"default via {gw.link_local.ip} dev {up}",
              f"{lab.shared_vlan.ipv6} via {t.underlay.tenant.ipv6.ip} dev {dev}",
              f"{t.underlay.router.ipv6.network} dev {dev}", f"{r.uplink.ipv6.network} dev {up}"]
        for fam, want in ((4, v4), (6, v6)):
            yield Check.on(f"router.table{fam}", facts.routes(vm, fam, n), has_all(want, "route"),
                           f"table {n}: " + "; ".join(want), converged=True)
    mark = lab.tenants[lab.master()].fwmark
    for fam, src in (("ipv4", lab.shared_vlan.ipv4), ("ipv6", lab.shared_vlan.ipv6)):
        yield Check(f"router.conntrack{fam[-1]}", r.vm, ("conntrack", "-L", "-f", fam, "--mark", str(mark)),
                    flows_from(src), f"flows from {src} marked {mark} ({lab.master()}, the master)")


def has_all(want: list[str], what: str) -> Callable[[frozenset[str]], str | None]:
    def holds(found: frozenset[str]) -> str | None:
        missing = [w for w in want if w not in found]
        return f"no {what} {'; '.join(missing)}" if missing else None
    return holds


def flows_from(net) -> Predicate:
    """conntrack -L lists a flow whose original source is in `net`."""
    def holds(r: Result) -> str | None:
        sources = [m.group(1) for m in re.finditer(r"^\S+.*?\bsrc=(\S+)", r.out, re.M)]
        if any(ipaddress.ip_address(s) in net for s in sources):
            return None
        return f"flows from {sorted(set(sources)) or 'nowhere'}"
    return holds
