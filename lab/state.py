"""Reading a running lab's state through the substrate's nodes: who holds the VIPs, the DHCP
failover state, each client's lease, SLAAC address and default routes."""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.substrate.base import Node

LEASES = "/var/lib/dhcp/dhcpd.leases"


def addresses(node: Node, dev: str, family: int) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    r = node.run(["ip", "-j", f"-{family}", "addr", "show", "dev", dev], check=False)
    if not r.ok or not r.out.strip():
        return []
    out = []
    for link in json.loads(r.out):
        for a in link.get("addr_info", []):
            out.append(ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}"))
    return out


def default_gateway(node: Node, family: int) -> str | None:
    r = node.run(["ip", "-j", f"-{family}", "route", "show", "default"], check=False)
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
    m = re.search(r"transitioned to the (\S+) state", node.read("/var/run/keepalived_status") or "")
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
    v4 = [a for a in addresses(node, nic, 4) if a.ip in lab.shared_vlan.ipv4]
    v6 = [a for a in addresses(node, nic, 6) if a.ip in lab.shared_vlan.ipv6]
    return ClientState(name, str(v4[0].ip) if v4 else None, default_gateway(node, 4),
                       str(v6[0].ip) if v6 else None, default_gateway(node, 6))


def vip_holders(lab, nodes) -> dict[str, list[str]]:
    """Tenant name -> the VIPs it holds on its VLAN 7 interface."""
    vips = [lab.vrrp.instances.ipv4.vip.ip, lab.vrrp.instances.ipv6.vip.ip]
    out = {}
    for name, t in lab.tenants.items():
        node = nodes(t.vm)
        held = {a.ip for f in (4, 6) for a in addresses(node, lab.shared_vlan.bridge, f)}
        out[name] = [str(v) for v in vips if v in held]
    return out


def convergence_problems(elab) -> list[str]:
    """What keeps the lab from the converged state `invoke up` waits for."""
    lab, node = elab.lab, elab.node
    problems = []
    holders = vip_holders(lab, node)
    master = lab.master()
    if len(holders[master]) != 2:
        problems.append(f"{lab.tenants[master].vm} holds {holders[master] or 'no VIP'}, "
                        "expected both VIPs")
    for name, held in holders.items():
        if name != master and held:
            problems.append(f"{lab.tenants[name].vm} also holds {held}")
    for name, t in lab.tenants.items():
        for daemon in ("keepalived", "radvd"):
            if not pid_alive(node(t.vm), f"/run/{daemon}.pid"):
                problems.append(f"{t.vm}: {daemon} is not running")
        want = "MASTER" if name == master else "BACKUP"
        got = vrrp_state(node(t.vm))
        if got != want:
            problems.append(f"{t.vm}: keepalived reports {got}, expected {want}")
    problems += dhcp_problems(lab, node)
    r = lab.dhcp.range
    vip4, vip6 = str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)
    for t in lab.tenants.values():
        for c in t.clients:
            s = client_state(lab, c, node(c))
            if s.ipv4 is None or not r.first <= ipaddress.ip_address(s.ipv4) <= r.last:
                problems.append(f"{c}: no lease in {r.first}-{r.last} (has {s.ipv4})")
            if s.gateway4 != vip4:
                problems.append(f"{c}: IPv4 default via {s.gateway4}, expected {vip4}")
            if s.slaac is None:
                problems.append(f"{c}: no SLAAC address in {lab.shared_vlan.ipv6}")
            if s.gateway6 != vip6:
                problems.append(f"{c}: IPv6 default via {s.gateway6}, expected {vip6}")
    return problems


def dhcp_problems(lab, node) -> list[str]:
    """The DHCP failover pair is not yet serving (both in failover state normal)."""
    return [f"{t.dhcp_server.name}: DHCP failover state {s}, expected normal"
            for t in lab.tenants.values()
            if (s := dhcp_failover_state(node(t.dhcp_server.name))) != "normal"]


def wait_until(problems: Callable[[], list[str]], timeout: float, what: str, pause: float = 0.25) -> None:
    """Poll until `problems()` is empty; TimeoutError naming what is still wrong."""
    deadline = time.monotonic() + timeout
    while last := problems():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not converge within {timeout:.0f} s:\n  " + "\n  ".join(last))
        time.sleep(pause)
