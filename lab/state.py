"""Reading a running lab's state through the substrate's nodes: who holds the VIPs, the DHCP
failover state, each client's lease, SLAAC address and default routes."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from functools import partial

from lab.pool import pmap
from lab.substrate import batch
from lab.substrate.base import Node, Result

LEASES = "/var/lib/dhcp/dhcpd.leases"
STATUS = "/var/run/keepalived_status"  # written by the seed's notify script


def addresses(node: Node, dev: str, family: int | None = None
              ) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    """The addresses on `dev` (of one family, or both)."""
    flags = [f"-{family}"] if family else []
    return _addresses(node.run(["ip", "-j", *flags, "addr", "show", "dev", dev], check=False))


def _addresses(r: Result) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    if not r.ok or not r.out.strip():
        return []
    return [ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
            for link in json.loads(r.out) for a in link.get("addr_info", [])]


def default_gateway(node: Node, family: int) -> str | None:
    return _gateway(node.run(["ip", "-j", f"-{family}", "route", "show", "default"], check=False))


def _gateway(r: Result) -> str | None:
    if not r.ok or not r.out.strip():
        return None
    routes = json.loads(r.out)
    return routes[0].get("gateway") if routes else None


def pid_alive(node: Node, pidfile: str) -> bool:
    """The daemon whose own pid file this is runs (checked on the node)."""
    path = node.root + pidfile
    return node.run(["sh", "-c", f'kill -0 "$(cat {path})"'], check=False).ok


def vrrp_state(node: Node) -> str | None:
    """The state keepalived last reported through the seed's notify script."""
    return _vrrp_state(node.read(STATUS) or "")


def _vrrp_state(text: str) -> str | None:
    m = re.search(r"transitioned to the (\S+) state", text)
    return m.group(1) if m else None


def dhcp_failover_state(node: Node) -> str | None:
    """dhcpd's own failover state, as it records it in its lease file ("my state normal")."""
    text = node.read(LEASES) or ""
    states = re.findall(r"my state (\S+)", text)
    return states[-1] if states else None


@dataclass(frozen=True)
class ClientState:
    name: str
    ipv4: str | None
    gateway4: str | None
    slaac: str | None
    gateway6: str | None


def client_state(lab, name: str, node: Node) -> ClientState:
    nic = lab.containers.nic
    found = batch.run_many(node, [(("ip", "-j", "addr", "show", "dev", nic), 10),
                                  (("ip", "-j", "-4", "route", "show", "default"), 10),
                                  (("ip", "-j", "-6", "route", "show", "default"), 10)])
    addrs = _addresses(found[0])
    v4 = [a for a in addrs if a.ip in lab.shared_vlan.ipv4]
    v6 = [a for a in addrs if a.ip in lab.shared_vlan.ipv6]
    return ClientState(name, str(v4[0].ip) if v4 else None, _gateway(found[1]),
                       str(v6[0].ip) if v6 else None, _gateway(found[2]))


def vip_holders(lab, nodes) -> dict[str, list[str]]:
    """Tenant name -> the VIPs it holds on its VLAN 7 interface (the tenants read at once)."""
    def held(t) -> list[str]:
        return _vips_in(lab, addresses(nodes(t.vm), lab.shared_vlan.bridge))

    return dict(zip(lab.tenants, pmap(held, lab.tenants.values()), strict=True))


def _vips_in(lab, addrs) -> list[str]:
    on = {a.ip for a in addrs}
    return [str(v.ip) for v in (lab.vrrp.instances.ipv4.vip, lab.vrrp.instances.ipv6.vip) if v.ip in on]


def convergence_problems(elab) -> list[str]:
    """What keeps the lab from the converged state `invoke up` waits for (every node read at
    once, each in one command)."""
    lab, node = elab.lab, elab.node
    master = lab.master()

    def tenant(name: str) -> list[str]:
        t, problems = lab.tenants[name], []
        vm = node(t.vm)
        found = batch.run_many(vm, [
            (("ip", "-j", "addr", "show", "dev", lab.shared_vlan.bridge), 10),
            *((("sh", "-c", f'kill -0 "$(cat {vm.root}/run/{d}.pid)"'), 10) for d in ("keepalived", "radvd")),
            (("cat", vm.root + STATUS), 10)])
        held = _vips_in(lab, _addresses(found[0]))
        if name == master and len(held) != 2:
            problems.append(f"{t.vm} holds {held or 'no VIP'}, expected both VIPs")
        if name != master and held:
            problems.append(f"{t.vm} also holds {held}")
        for daemon, r in zip(("keepalived", "radvd"), found[1:3], strict=True):
            if not r.ok:
                problems.append(f"{t.vm}: {daemon} is not running")
        want = "MASTER" if name == master else "BACKUP"
        got = _vrrp_state(found[3].out)
        if got != want:
            problems.append(f"{t.vm}: keepalived reports {got}, expected {want}")
        return problems

    r = lab.dhcp.range
    vip4, vip6 = str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)

    def client(c: str) -> list[str]:
        s, problems = client_state(lab, c, node(c)), []
        if s.ipv4 is None or not r.first <= ipaddress.ip_address(s.ipv4) <= r.last:
            problems.append(f"{c}: no lease in {r.first}-{r.last} (has {s.ipv4})")
        if s.gateway4 != vip4:
            problems.append(f"{c}: IPv4 default via {s.gateway4}, expected {vip4}")
        if s.slaac is None:
            problems.append(f"{c}: no SLAAC address in {lab.shared_vlan.ipv6}")
        if s.gateway6 != vip6:
            problems.append(f"{c}: IPv6 default via {s.gateway6}, expected {vip6}")
        return problems

    jobs = [*(partial(tenant, n) for n in lab.tenants), partial(dhcp_problems, lab, node),
            *(partial(client, c) for t in lab.tenants.values() for c in t.clients)]
    return [p for found in pmap(lambda job: job(), jobs) for p in found]


def dhcp_problems(lab, node) -> list[str]:
    """The DHCP failover pair is not yet serving (both in failover state normal)."""
    servers = [t.dhcp_server.name for t in lab.tenants.values()]
    states = pmap(lambda name: dhcp_failover_state(node(name)), servers)
    return [f"{name}: DHCP failover state {s}, expected normal"
            for name, s in zip(servers, states, strict=True) if s != "normal"]

