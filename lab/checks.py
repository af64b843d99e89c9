"""The seed's "Check the results", as data: each check names where it runs, what it runs and
what must hold, with expected values taken from the lab model. Written against the
substrate's Node only, so the same checks run on namespaces and on VMs.

Groups: addressing, gateway, vxlan, internet (from every container), router;
`invoke test.connectivity` runs them all.
A check that fails is retried until a deadline: a lab that is still converging passes late,
a broken one fails with what was expected and what was found.
"""

from __future__ import annotations

import ipaddress
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from xml.etree import ElementTree

from lab.model import Lab
from lab.pool import pmap
from lab.substrate import batch
from lab.substrate.base import Node, Result

GROUPS = ("addressing", "gateway", "vxlan", "internet", "router")


# -- what must hold ---------------------------------------------------------------------------
# A predicate takes the command's result and returns None if it holds, else what was found.

Predicate = Callable[[Result], str | None]


def succeeds(r: Result) -> str | None:
    return None if r.ok else f"exit {r.rc}: {_last(r.err or r.out)}"


def contains(*needles: str) -> Predicate:
    def holds(r: Result) -> str | None:
        missing = [n for n in needles if n not in r.out]
        return f"no {', '.join(map(repr, missing))} in: {_last(r.out)}" if missing or not r.ok else None
    return holds


def lacks(*needles: str) -> Predicate:
    def holds(r: Result) -> str | None:
        found = [n for n in needles if n in r.out]
        return f"found {', '.join(map(repr, found))}" if found else None
    return holds


def matches(pattern: str) -> Predicate:
    def holds(r: Result) -> str | None:
        return None if re.search(pattern, r.out, re.M) else f"no match for /{pattern}/ in: {_last(r.out)}"
    return holds


def _last(text: str, n: int = 300) -> str:
    text = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return (text[:n] + "...") if len(text) > n else (text or "(nothing)")


@dataclass(frozen=True)
class Check:
    name: str           # e.g. "addressing.lease"
    node: str           # where it runs
    argv: tuple[str, ...]
    holds: Predicate
    expect: str         # what must hold, in words, with the expected values
    timeout: float = 20


@dataclass
class Outcome:
    check: Check
    ok: bool
    found: str = ""
    tries: int = 0
    seconds: float = 0.0

    def row(self) -> dict:
        c = self.check
        return {"check": c.name, "node": c.node, "ok": self.ok, "expected": c.expect,
                "found": self.found, "tries": self.tries, "seconds": round(self.seconds, 2)}


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

def build(lab: Lab, node: Callable[[str], Node], ovs: bool = False) -> list[Check]:
    """Every check, in the order they run (the router's conntrack needs the internet group's
    flows)."""
    macs = container_macs(lab, node)
    return [*addressing(lab, node, macs), *gateway(lab, node), *vxlan(lab, node, macs, ovs),
            *internet(lab, node), *router(lab)]


def addressing(lab: Lab, node: Callable[[str], Node], macs: dict[str, str]) -> Iterable[Check]:
    nic, r = lab.containers.nic, lab.dhcp.range
    vip4, vip6 = lab.vrrp.instances.ipv4.vip.ip, lab.vrrp.instances.ipv6.vip.ip
    dns = lab.internet.resolver.ipv4
    for name, t in lab.tenants.items():
        s = t.dhcp_server
        yield Check("addressing.static", s.name, ("ip", "-4", "addr", "show", "dev", nic),
                    contains(f"inet {s.ipv4} "), f"{s.name} holds {s.ipv4} on {nic}")
        for c in t.clients:
            yield Check("addressing.lease", c, ("ip", "-j", "-4", "addr", "show", "dev", nic),
                        lease_in(r.first, r.last), f"a DHCP lease in {r.first}-{r.last} on {nic}")
            yield Check("addressing.dns", c, ("cat", "/etc/resolv.conf"),
                        contains(f"nameserver {dns}"), f"DNS {dns} from DHCP in /etc/resolv.conf")
        for c in lab.containers_of(name):
            slaac = eui64(lab.shared_vlan.ipv6, macs[c]) if macs[c] != "unknown" else "?"
            yield Check("addressing.slaac", c, ("ip", "-6", "addr", "show", "dev", nic),
                        contains(f"inet6 {slaac}/64"), f"SLAAC {slaac}/64 (EUI-64 of {macs[c]})")
            yield Check("addressing.route4", c, ("ip", "-4", "route", "show", "default"),
                        contains(f"default via {vip4} dev {nic}"), f"IPv4 default route via {vip4}")
            yield Check("addressing.route6", c, ("ip", "-6", "route", "show", "default"),
                        contains(f"default via {vip6} dev {nic}"), f"IPv6 default route via {vip6}")


def lease_in(first, last) -> Predicate:
    def holds(r: Result) -> str | None:
        try:
            addrs = [a["local"] for link in json.loads(r.out) for a in link["addr_info"]]
        except (ValueError, KeyError):
            return f"no address: {_last(r.out + r.err)}"
        ok = [a for a in addrs if first <= ipaddress.ip_address(a) <= last]
        return None if ok else f"addresses {addrs or 'none'}"
    return holds


def gateway(lab: Lab, node: Callable[[str], Node]) -> Iterable[Check]:
    master = lab.master()
    vips = (str(lab.vrrp.instances.ipv4.vip), str(lab.vrrp.instances.ipv6.vip))
    sv = lab.shared_vlan.bridge
    for name, t in lab.tenants.items():
        show = ("ip", "addr", "show", "dev", sv)
        status = node(t.vm).root + "/var/run/keepalived_status"
        if name == master:
            yield Check("gateway.vips", t.vm, show, contains(*vips),
                        f"{t.vm} (priority {t.vrrp_priority}, the highest) holds {' and '.join(vips)}")
            yield Check("gateway.vrrp", t.vm, ("cat", status), contains("MASTER state"),
                        "keepalived reports MASTER")
        else:
            yield Check("gateway.vips", t.vm, show, lacks(*(v.split("/")[0] for v in vips)),
                        f"{t.vm} (priority {t.vrrp_priority}) holds no VIP")
            yield Check("gateway.vrrp", t.vm, ("cat", status), contains("BACKUP state"),
                        "keepalived reports BACKUP")
    for t in lab.tenants.values():
        d = node(t.dhcp_server.name).root
        script = (f'kill -0 "$(cat {d}/run/dhcpd.pid)" || {{ echo "dhcpd is not running"; exit 1; }}; '
                  f"grep -o 'my state [a-z-]*' {d}/var/lib/dhcp/dhcpd.leases | tail -n 1")
        yield Check("gateway.dhcp-failover", t.dhcp_server.name, ("sh", "-c", script),
                    contains("my state normal"), f"dhcpd ({t.dhcp_server.role}) runs, failover state normal")


def vxlan(lab: Lab, node: Callable[[str], Node], macs: dict[str, str], ovs: bool) -> Iterable[Check]:
    sv = lab.shared_vlan.bridge
    for name, t in lab.tenants.items():
        peer = lab.tenants[lab.peer(name)]
        yield Check("vxlan.ping4", t.vm, ("ping", "-c", "2", "-i", "0.2", "-W", "1", str(peer.svi.ipv4.ip)),
                    succeeds, f"{t.vm} reaches {peer.vm}'s SVI {peer.svi.ipv4.ip} over VXLAN")
        ll = f"{peer.svi.link_local.ip}%{sv}"
        yield Check("vxlan.ping6", t.vm, ("ping", "-c", "2", "-i", "0.2", "-W", "1", ll),
                    succeeds, f"{t.vm} reaches {ll} over VXLAN")
    # Frames of every container cross the tunnel (the FDB checks below need them learned).
    for name in lab.tenants:
        peer = lab.tenants[lab.peer(name)]
        for c in lab.containers_of(name):
            yield Check("vxlan.reach", c, ("ping", "-c", "1", "-W", "1", str(peer.svi.ipv4.ip)),
                        succeeds, f"{c} reaches {peer.vm}'s SVI across the tunnel")
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
                        succeeds, f"ping {res.ipv4}")
            yield Check("internet.ping6", c, ("ping", "-c", "2", "-i", "0.2", "-W", "2", str(res.ipv6)),
                        succeeds, f"ping {res.ipv6}")
            yield Check("internet.dns", c, ("getent", "ahosts", MIRROR_HOST),
                        contains(str(res.ipv4), str(res.ipv6)),
                        f"{MIRROR_HOST} resolves to {res.ipv4}, {res.ipv6}")
            for fam in ("4", "6"):
                yield Check(f"internet.http{fam}", c,
                            ("curl", f"-{fam}", "-sSf", "-m", "5", "-o", "/dev/null",
                             f"http://{MIRROR_HOST}/"),
                            succeeds, f"HTTP over IPv{fam} from {MIRROR_HOST}")
            yield Check("internet.apt", c, apt_update(node(c).root), apt_ok,
                        "apt-get update reaches the lab's mirror (the seed's test)", timeout=60)


def apt_ok(r: Result) -> str | None:
    """apt-get update fetched the release file, without an error or a warning."""
    text = r.out + r.err
    bad = [line for line in text.splitlines() if line.startswith(("Err:", "E:", "W:"))]
    if r.ok and not bad and re.search(r"^(Hit|Get):\d+ http://\S+ \S+ (In)?Release", text, re.M):
        return None
    return _last("\n".join(bad) or text)


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


def router(lab: Lab) -> Iterable[Check]:
    r, gw = lab.router, lab.internet.gateway
    up = r.subif(r.uplink.vlan)
    for fam, flag in (("4", "-4"), ("6", "-6")):
        rules = [rf"^{t.table}:\s+from all fwmark {t.fwmark:#x} lookup {n}$" for n, t in lab.tenants.items()]
        yield Check(f"router.rules{fam}", r.vm, ("ip", flag, "rule"), all_of(*map(matches, rules)),
                    "fwmark rules: " + ", ".join(f"{t.fwmark:#x} -> {n}" for n, t in lab.tenants.items()))
    for n, t in lab.tenants.items():
        dev = r.subif(t.vlan)
        v4 = [f"default via {gw.ipv4.ip} dev {up}",
              f"{lab.shared_vlan.ipv4} via {t.underlay.tenant.ipv4.ip} dev {dev}",
              f"{t.underlay.router.ipv4.network} dev {dev}", f"{r.uplink.ipv4.network} dev {up}"]
        v6 = [f"default via {gw.link_local.ip} dev {up}",
              f"{lab.shared_vlan.ipv6} via {t.underlay.tenant.ipv6.ip} dev {dev}",
              f"{t.underlay.router.ipv6.network} dev {dev}", f"{r.uplink.ipv6.network} dev {up}"]
        yield Check("router.table4", r.vm, ("ip", "-4", "route", "show", "table", n), contains(*v4),
                    f"table {n}: " + "; ".join(v4))
        yield Check("router.table6", r.vm, ("ip", "-6", "route", "show", "table", n), contains(*v6),
                    f"table {n}: " + "; ".join(v6))
    mark = lab.tenants[lab.master()].fwmark
    for fam, src in (("ipv4", lab.shared_vlan.ipv4), ("ipv6", lab.shared_vlan.ipv6)):
        yield Check(f"router.conntrack{fam[-1]}", r.vm, ("conntrack", "-L", "-f", fam, "--mark", str(mark)),
                    flows_from(src), f"flows from {src} marked {mark} ({lab.master()}, the master)")


def flows_from(net) -> Predicate:
    """conntrack -L lists a flow whose original source is in `net`."""
    def holds(r: Result) -> str | None:
        sources = [m.group(1) for m in re.finditer(r"^\S+.*?\bsrc=(\S+)", r.out, re.M)]
        if any(ipaddress.ip_address(s) in net for s in sources):
            return None
        return f"flows from {sorted(set(sources)) or 'nowhere'}"
    return holds


def all_of(*preds: Predicate) -> Predicate:
    def holds(r: Result) -> str | None:
        found = [f for p in preds if (f := p(r))]
        return found[0] if found else None
    return holds


# -- running --------------------------------------------------------------------------------------

@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def table(self) -> str:
        rows = [("CHECK", "NODE", "RESULT", "DETAIL")]
        for o in self.outcomes:
            detail = o.check.expect if o.ok else f"expected {o.check.expect}; found {o.found}"
            rows.append((o.check.name, o.check.node, "ok" if o.ok else "FAIL", detail))
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join([r[0].ljust(w[0]), r[1].ljust(w[1]), r[2].ljust(w[2]), r[3]]) for r in rows]
        failed = sum(not o.ok for o in self.outcomes)
        lines.append(f"{len(self.outcomes) - failed} passed, {failed} failed")
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps({"ok": self.ok, "checks": [o.row() for o in self.outcomes]}, indent=2)

    def junit(self) -> str:
        suite = ElementTree.Element("testsuite", name="vxlab", tests=str(len(self.outcomes)),
                                    failures=str(sum(not o.ok for o in self.outcomes)))
        for o in self.outcomes:
            case = ElementTree.SubElement(suite, "testcase", classname=o.check.name,
                                          name=f"{o.check.name}[{o.check.node}]", time=f"{o.seconds:.2f}")
            if not o.ok:
                ElementTree.SubElement(case, "failure", message=f"expected {o.check.expect}").text = o.found
        return ElementTree.tostring(suite, encoding="unicode")


def run(checks: list[Check], node: Callable[[str], Node], wait: float = 30,
        progress: Callable[[Outcome], None] = lambda o: None) -> Report:
    """Run every check; a failing one is retried until `wait` seconds after the start.

    Each round runs, on every node at once, that node's pending checks in one command (a
    command costs seconds in a container of an emulated VM: one per node and round, not one
    per check). The router's checks come last: its conntrack check needs the flows the
    internet group makes. The report keeps the checks' order."""
    deadline = time.monotonic() + wait
    outcomes: dict[int, Outcome] = {}
    for phase in _phases(checks):
        started = time.monotonic()
        tries: dict[int, int] = dict.fromkeys(phase, 0)
        pending = list(phase)
        while pending:
            by_node: dict[str, list[int]] = {}
            for i in pending:
                by_node.setdefault(checks[i].node, []).append(i)
            groups = list(by_node.items())
            found_by_node = pmap(lambda g: run_batch(node, g[0], [checks[i] for i in g[1]]), groups)
            results: dict[int, Result] = {i: r for (_, mine), found in zip(groups, found_by_node, strict=True)
                                          for i, r in zip(mine, found, strict=True)}
            late = time.monotonic() > deadline
            still = []
            for i in pending:
                tries[i] += 1
                found = checks[i].holds(results[i])
                if found is None or late:
                    outcomes[i] = Outcome(checks[i], found is None, found or "", tries[i],
                                          time.monotonic() - started)
                    progress(outcomes[i])
                else:
                    still.append(i)
            pending = still
            if pending:
                time.sleep(0.5)
    return Report([outcomes[i] for i in sorted(outcomes)])


def _phases(checks: list[Check]) -> list[list[int]]:
    last = [i for i, c in enumerate(checks) if c.name.startswith("router.")]
    first = [i for i in range(len(checks)) if i not in set(last)]
    return [p for p in (first, last) if p]


def run_batch(node: Callable[[str], Node], name: str, checks: list[Check]) -> list[Result]:
    """The checks of one node, in one command."""
    return batch.run_many(node(name), [(c.argv, c.timeout) for c in checks])


def select(checks: list[Check], group: str | None) -> list[Check]:
    if group in (None, "connectivity-all", "all"):
        return checks
    if group not in GROUPS:
        raise ValueError(f"no check group {group!r}; groups: {', '.join(GROUPS)}")
    return [c for c in checks if c.name.split(".")[0] == group]
