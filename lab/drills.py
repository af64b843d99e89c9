"""Failover drills: take something away from a tenant, prove the gateway moves (or stays) on
the other one with connectivity intact, give it back, prove the lab returns to its initial
state; measured by probes from every container and a long-lived TCP stream.

Every outage is computed on its prober's own clock (ping's timestamps in the container);
events are marked with the clock they were read on ("host" for what vxlab observed, a node's
name for what that node recorded). Written against the substrate's Node only.
"""

from __future__ import annotations

import ipaddress
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.host.wait import until
from lab.model import Lab
from lab.pool import parallel, pmap
from lab.roles import Target
from lab.roles import tenant as tenant_role
from lab.substrate.base import Node, Service

INTERVAL = 0.05      # probe interval (s); a substrate may ask for more (`probe_interval`)
TCP_PORT = 5001      # the TCP sink in the lab's Internet
SETTLE = 2.0         # seconds of steady state before the fault and after each phase
MODES = ("probe", "uplink", "crash")
FAMILIES = ("4", "6", "both")
CHAIN = "vxlab-drill"


class DrillError(RuntimeError):
    pass


# -- faults -------------------------------------------------------------------------------------

@dataclass
class Fault:
    what: str
    inject: Callable[[], None]
    restore: Callable[[], None]


def make_fault(lab: Lab, node_of: Callable[[str], Node], tenant: str, mode: str, family: str) -> Fault:
    t = lab.tenants[tenant]
    node = node_of(t.vm)
    if mode == "probe":  # the seed's drill: blind the health check only
        rule = ["OUTPUT", "-d", f"{lab.internet.resolver.ipv4}/32", "-j", "DROP"]
        return Fault(f"iptables -A {' '.join(rule)} on {t.vm} (the seed's drill)",
                     lambda: node.run(["iptables", "-A", *rule]),
                     lambda: node.run(["iptables", "-D", *rule], check=False))
    if mode == "uplink":
        fams = ("4", "6") if family == "both" else (family,)
        return Fault(f"{t.vm} loses its uplink (IPv{'+'.join(fams)}): all it sends toward the "
                     "Internet is dropped, its link to the router and the VXLAN stay up",
                     lambda: _uplink_rules(lab, node, tenant, fams, add=True),
                     lambda: _uplink_rules(lab, node, tenant, fams, add=False))
    if mode == "crash":
        keepalived = tenant_role.services(Target(lab, lab.node(t.vm), node, {}))[1]
        return Fault(f"keepalived on {t.vm} is killed (SIGKILL)",
                     lambda: _kill_keepalived(node),
                     lambda: node.start(keepalived))
    raise DrillError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")


def _uplink_rules(lab: Lab, node: Node, tenant: str, fams: tuple[str, ...], add: bool) -> None:
    """A chain that drops what the tenant forwards or sends out of its uplink, except toward
    the router's link and the VXLAN peer (so VLAN 7 stays stretched)."""
    t, peer = lab.tenants[tenant], lab.tenants[lab.peer(tenant)]
    keep = {"4": [str(t.underlay.router.ipv4.network), str(peer.underlay.tenant.ipv4.ip)],
            "6": [str(t.underlay.router.ipv6.network), "fe80::/10"]}
    for fam in fams:
        ipt = "iptables" if fam == "4" else "ip6tables"
        if add:
            node.run([ipt, "-N", CHAIN])
            for net in keep[fam]:
                node.run([ipt, "-A", CHAIN, "-o", t.nic, "-d", net, "-j", "RETURN"])
            if fam == "6":  # neighbour discovery with the router
                for icmp in ("neighbour-solicitation", "neighbour-advertisement"):
                    node.run([ipt, "-A", CHAIN, "-p", "icmpv6", "--icmpv6-type", icmp, "-j", "RETURN"])
            node.run([ipt, "-A", CHAIN, "-o", t.nic, "-j", "DROP"])
            for hook in ("FORWARD", "OUTPUT"):
                node.run([ipt, "-I", hook, "-j", CHAIN])
        else:
            for hook in ("FORWARD", "OUTPUT"):
                node.run([ipt, "-D", hook, "-j", CHAIN], check=False)
            node.run([ipt, "-F", CHAIN], check=False)
            node.run([ipt, "-X", CHAIN], check=False)


def _kill_keepalived(node: Node) -> None:
    pids = [p for f in ("/run/keepalived_vrrp.pid", tenant_role.DAEMONS["keepalived"])
            if (p := (node.read(f) or "").strip())]
    if not pids:
        raise DrillError(f"{node.name}: keepalived is not running")
    node.run(["kill", "-KILL", *pids], check=False)


# -- probes ------------------------------------------------------------------------------------

@dataclass
class Background:
    """A command left running on a node, its output in a file of that node."""

    node: Node
    name: str
    argv: tuple[str, ...]
    pid: str = ""
    # INT lets ping print its summary; a shell started in the background ignores INT, so a
    # script needs TERM.
    signal: str = "INT"

    @property
    def path(self) -> str:
        return f"/tmp/vxlab-drill-{self.name}"

    def start(self) -> None:
        out = self.node.root + self.path
        cmd = " ".join(_quote(a) for a in self.argv)
        r = self.node.run(["sh", "-c", f"mkdir -p {self.node.root}/tmp && "
                                       f"{{ setsid {cmd} > {out} 2>&1 < /dev/null & }}; echo $!"])
        self.pid = r.out.strip()

    def stop(self) -> None:
        if self.pid:
            self.node.run(["kill", f"-{self.signal}", self.pid], check=False)

    def output(self) -> str:
        return self.node.read(self.path) or ""

    def remove(self) -> None:
        self.node.run(["rm", "-f", self.node.root + self.path], check=False)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def pinger(node: Node, target: str, family: str, interval: float = INTERVAL) -> Background:
    # -D: the prober's own timestamps; -O: report each unanswered probe
    return Background(node, f"ping{family}", ("ping", f"-{family}", "-n", "-D", "-O", "-i", str(interval),
                                              "-W", "1", target))


def tcp_stream(node: Node, target: str, interval: float = INTERVAL) -> Background:
    """A line every `interval` over one TCP connection (bash's /dev/tcp: no extra tool in the image);
    it ends, saying so, on the first write error (a reset). Builtins only, no process per
    line (forks cost dearly in an emulated VM): the pause is a read on the socket, which the
    sink never writes to, the time is $EPOCHREALTIME."""
    script = (f"exec 3<>/dev/tcp/{target}/{TCP_PORT} || {{ echo CONNECT-FAILED; exit 1; }}; "
              f"while :; do read -r -t {interval} -u 3 _; "
              f"echo \"$EPOCHREALTIME\" >&3 || {{ echo RESET; exit 1; }}; done")
    return Background(node, "tcp", ("bash", "-c", script), signal="TERM")


PING_LINE = re.compile(r"^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms"
                       r"|no answer yet for icmp_seq=(\d+))")


def parse_ping(text: str, t0: float, interval: float = INTERVAL, grace: float = 1.0
               ) -> list[tuple[float, bool]]:
    """[(send time since t0, replied)] per probe, on the prober's clock. Probes sent in the
    last `grace` seconds of the prober's output are left out: it was stopped before their
    replies could come. Measured on the prober's own clock: an emulated VM's drifts from the
    host's by more than that."""
    sent: dict[int, float] = {}
    replied: set[int] = set()
    end = 0.0
    for m in map(PING_LINE.match, text.splitlines()):
        if not m:
            continue
        ts = float(m.group(1))
        end = max(end, ts)
        if m.group(2):
            seq = int(m.group(2))
            sent[seq] = ts - float(m.group(3)) / 1000
            replied.add(seq)
        else:  # printed as the next probe leaves: this one left an interval earlier
            seq = int(m.group(4))
            sent.setdefault(seq, ts - interval)
    if not sent:
        return []
    first, last = min(sent), max(sent)
    known = sorted(sent)
    out = []
    for seq in range(first, last + 1):
        if seq not in sent:  # interpolate between neighbours
            before = max(s for s in known if s < seq)
            sent[seq] = sent[before] + (seq - before) * interval
        if sent[seq] <= end - grace:
            out.append((round(sent[seq] - t0, 3), seq in replied))
    return out


def outages(series: list[tuple[float, bool]], restore_t: float) -> list[dict]:
    """Runs of lost probes: from the first lost one's departure to the next answered one's."""
    out, run = [], []
    for t, ok in series:
        if not ok:
            run.append(t)
            continue
        if run:
            out.append({"start": run[0], "end": t, "ms": round((t - run[0]) * 1000),
                        "lost": len(run), "phase": "failover" if run[0] < restore_t else "failback"})
            run = []
    if run:  # never came back
        out.append({"start": run[0], "end": None, "ms": None, "lost": len(run),
                    "phase": "failover" if run[0] < restore_t else "failback"})
    return out


# -- the timeline ----------------------------------------------------------------------------------

@dataclass
class Timeline:
    """What vxlab did and saw, on the host's clock, in seconds since t0."""

    t0: float
    progress: Callable[[str], None]
    events: list[dict] = field(default_factory=list)

    def mark(self, what: str, node: str) -> float:
        t = time.time() - self.t0
        self.events.append({"t": round(t, 3), "what": what, "node": node, "clock": "host"})
        self.progress(f"[{t:5.1f}s] {what}")
        return t


# -- watching the gateway -----------------------------------------------------------------------

@dataclass(eq=False)  # a thread: hashed by identity
class Watch(threading.Thread):
    """Polls who holds the VIPs and which mark the router gives the containers' flows;
    records each change on the host's clock."""

    lab: Lab
    node_of: Callable[[str], Node]
    t0: float
    events: list[dict] = field(default_factory=list)
    holders: dict[str, list[str]] = field(default_factory=dict)
    duplicate: bool = False
    crash: bool = False  # the drill kills keepalived
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def event(self, what: str, node: str) -> None:
        self.events.append({"t": round(time.time() - self.t0, 3), "what": what, "node": node,
                            "clock": "host"})

    def run(self) -> None:
        marks_seen: str | None = None
        router = self.node_of(self.lab.router.vm)
        names = {t.fwmark: n for n, t in self.lab.tenants.items()}
        while not self.stopping.is_set():
            began = time.monotonic()
            now = tenant_role.holders(self.lab, self.node_of)
            for name, held in now.items():
                vm = self.lab.tenants[name].vm
                was = self.holders.get(name)
                if was is not None and held != was:
                    self.event(f"VIPs {'arrive on' if len(held) > len(was) else 'leave'} {vm}: "
                               f"{' '.join(held) or 'none'}", vm)
            both = sorted(set.intersection(*(set(h) for h in now.values())))
            if both and not self.duplicate:
                # Otherwise a moment of overlap while one tenant takes over (the reads are not atomic)
                why = " (the crashed keepalived could not remove its own)" if self.crash else ""
                self.event(f"VIPs on both tenants: {' '.join(both)}{why}", "host")
            self.duplicate = bool(both)
            self.holders = now
            r = router.run(["conntrack", "-L", "-f", "ipv4", "-p", "icmp",
                            "-s", str(self.lab.shared_vlan.ipv4)], check=False)
            marks = sorted({int(m) for m in re.findall(r"mark=(\d+)", r.out) if int(m)})
            label = "+".join(f"{m} ({names.get(m, '?')})" for m in marks)
            if label and label != marks_seen:
                if marks_seen is not None:
                    self.event(f"router marks the containers' flows {label}", self.lab.router.vm)
                marks_seen = label
            # Busy half the time at most: on an emulated VM a round costs seconds of its CPU,
            # which keepalived needs more than we do.
            time.sleep(max(INTERVAL, time.monotonic() - began))


def transitions(lab: Lab, node_of: Callable[[str], Node], t0: float) -> list[dict]:
    """VRRP transitions since t0 as each tenant's notify script recorded them (its clock)."""
    out = []
    for t in lab.tenants.values():
        text = node_of(t.vm).read(tenant_role.TRANSITIONS) or ""
        for ts, state in tenant_role.transitions(text, t0):
            out.append({"t": round(ts - t0, 3), "what": f"{t.vm} enters {state}", "node": t.vm,
                        "clock": t.vm})
    return out


# -- the drill -----------------------------------------------------------------------------------

def run(elab, tenant: str, mode: str = "probe", family: str = "both", deadline: float = 20,
        progress: Callable[[str], None] = lambda m: None) -> dict:
    """Drill one tenant; returns the report (see README "Drills")."""
    lab, node_of = elab.lab, elab.node
    if tenant not in lab.tenants:
        raise DrillError(f"no tenant {tenant!r}; tenants: {', '.join(lab.tenants)}")
    if family not in FAMILIES:
        raise DrillError(f"--family must be one of {', '.join(FAMILIES)}")
    initial = elab.problems()
    if initial:
        raise DrillError("the lab is not in its initial state, drill refused:\n  " + "\n  ".join(initial))
    fault = make_fault(lab, node_of, tenant, mode, family)
    other = lab.peer(tenant)
    expect = other if lab.master() == tenant else lab.master()  # where the gateway must be
    res = lab.internet.resolver
    containers = [c for t in lab.tenants for c in lab.containers_of(t)]
    stream_from = lab.tenants[tenant].clients[0] if lab.tenants[tenant].clients else containers[0]

    internet = node_of("internet")
    sink = Service("tcpsink", ("/usr/bin/python3", str(Path(__file__).with_name("tcpsink.py")),
                               str(TCP_PORT), internet.root + "/var/log/tcpsink.log"))
    internet.start(sink)
    t0 = time.time()
    # Every 50 ms; slower where the substrate asks (emulated VMs: 12 probers at 20/s starve
    # the emulated router, and both tenants' health checks fail at once).
    interval = elab.deployment.probe_interval
    probes = {(c, fam): pinger(node_of(c), str(res.ipv4 if fam == "4" else res.ipv6), fam, interval)
              for c in containers for fam in ("4", "6")}
    stream = tcp_stream(node_of(stream_from), str(res.ipv4), interval)
    watch = Watch(lab, node_of, t0, crash=mode == "crash")
    timeline = Timeline(t0, progress)
    mark, events = timeline.mark, timeline.events
    problems: list[str] = []

    injected = restored = None
    takeover = None
    try:
        parallel(Background.start, [*probes.values(), stream])
        watch.start()
        mark(f"probes from {len(containers)} containers (IPv4 and IPv6, every {interval * 1000:.0f} ms), "
             f"TCP stream from {stream_from}", "host")
        time.sleep(SETTLE)
        injected = mark(f"fault injected: {fault.what}", lab.tenants[tenant].vm)
        fault.inject()
        mark("fault in place", lab.tenants[tenant].vm)
        # A killed keepalived leaves its VIPs behind: then the other holding both is the takeover.
        def moved() -> bool:
            if mode == "crash" and expect != tenant:
                return len(watch.holders.get(expect, [])) == 2
            return _holder(watch) == expect

        if not until(moved, deadline, INTERVAL, paced=True):
            problems.append(f"the gateway is not on {lab.tenants[expect].vm} {deadline:.0f} s after "
                            f"the fault (VIPs: {watch.holders})")
        else:
            took = mark(f"the gateway is on {lab.tenants[expect].vm}", lab.tenants[expect].vm) - injected
            takeover = round(took, 2)
            limit = elab.deployment.master_down(lab, expect)
            if mode == "crash" and expect != tenant and took > limit + 1.0:  # + our polling
                problems.append(f"{lab.tenants[expect].vm} took over after {took:.1f} s, more than "
                                f"VRRP's master-down interval ({limit:.2f} s)")
        time.sleep(SETTLE + 2)
        restored = mark("restore", lab.tenants[tenant].vm)
        fault.restore()
        mark("restored", lab.tenants[tenant].vm)
        left: list[str] = []

        def back() -> bool:
            # The full reading runs a command in every container: seconds of CPU each on an
            # emulated VM, whose health checks then starve and fail. Only once the watch sees
            # the VIPs back on the master alone.
            if _holder(watch) != lab.master():
                left[:] = [f"the VIPs are not on {lab.tenants[lab.master()].vm} alone: {watch.holders}"]
                return False
            left[:] = elab.problems()
            return not left

        # Twice the takeover's deadline: the failback waits out the health checks' rise, then
        # the whole lab (leases, routes, daemons' own states) is read, on a busy VM slowly.
        if not until(back, 2 * deadline, INTERVAL, paced=True):
            problems.append("the lab is not back to its initial state after restore: " + "; ".join(left))
        else:
            mark(f"back to the initial state: the gateway on {lab.tenants[lab.master()].vm}", "host")
        time.sleep(SETTLE)
    finally:
        if injected is not None and restored is None:
            fault.restore()
        watch.stopping.set()
        parallel(Background.stop, [*probes.values(), stream])
        time.sleep(0.3)
    watch.join(timeout=2)

    restore_t = restored if restored is not None else float("inf")
    report_probes: dict[str, dict[str, list]] = {}
    outage_list = []
    texts = dict(zip(probes, pmap(Background.output, probes.values()), strict=True))
    tcp_out = stream.output()
    parallel(Background.remove, [*probes.values(), stream])
    for (c, fam) in probes:
        series = parse_ping(texts[c, fam], t0, interval)
        report_probes.setdefault(c, {})[fam] = [[t, ok] for t, ok in series]
        for o in outages(series, restore_t):
            outage_list.append({"container": c, "family": fam, **o})
            if o["end"] is None:
                problems.append(f"{c} IPv{fam}: no reply since {o['start']:.1f} s")
        if not series:
            problems.append(f"{c} IPv{fam}: the prober recorded nothing")
    tcp = {"container": stream_from, "target": f"{res.ipv4}:{TCP_PORT}",
           "survived": "RESET" not in tcp_out and "CONNECT-FAILED" not in tcp_out,
           "resets": tcp_out.count("RESET"), "detail": tcp_out.strip()[-200:]}
    if not tcp["survived"]:
        problems.append(f"the TCP stream from {stream_from} did not survive: {tcp['detail']}")
    all_events = sorted(events + watch.events + transitions(lab, node_of, t0), key=lambda e: e["t"])
    return {
        "drill": f"failover.{tenant}", "tenant": tenant, "mode": mode, "family": family, "lab": lab.name,
        "clock": "seconds since the drill started; probes on each prober's clock, events on the "
                 "clock named in each",
        "interval": interval, "expected_gateway": lab.tenants[expect].vm,
        "takeover_s": takeover, "master_down_s": round(elab.deployment.master_down(lab, expect), 3),
        "events": all_events, "probes": report_probes, "outages": outage_list, "tcp": tcp,
        "ok": not problems, "problems": problems,
    }




def _holder(watch: Watch) -> str | None:
    full = [n for n, held in watch.holders.items() if len(held) == 2]
    return full[0] if len(full) == 1 else None



def summary(report: dict) -> str:
    """The report for people: the timeline, then outages per container and family."""
    lines = [f"{report['drill']} (mode {report['mode']}, family {report['family']}): "
             + ("PASS" if report["ok"] else "FAIL")]
    for e in report["events"]:
        lines.append(f"  {e['t']:7.2f} s  [{e['clock']:>8}]  {e['what']}")
    lines.append(f"  {'container':10} {'family':6} {'failover ms (lost)':>20} {'failback ms (lost)':>20}")
    for c, fams in report["probes"].items():
        for fam in fams:
            cells = []
            for phase in ("failover", "failback"):
                os_ = [o for o in report["outages"]
                       if (o["container"], o["family"], o["phase"]) == (c, fam, phase)]
                ms = sum(o["ms"] or 0 for o in os_)
                lost = sum(o["lost"] for o in os_)
                cells.append(f"{ms} ({lost})" if os_ else "0 (0)")
            lines.append(f"  {c:10} IPv{fam:3} {cells[0]:>20} {cells[1]:>20}")
    tcp = report["tcp"]
    lines.append(f"  TCP stream {tcp['container']} -> {tcp['target']}: "
                 + ("survived, no reset" if tcp["survived"] else "BROKEN"))
    lines += [f"  problem: {p}" for p in report["problems"]]
    return "\n".join(lines)


# -- the DHCP failover drill -----------------------------------------------------------------------

def dhcp(elab, deadline: float = 30, progress: Callable[[str], None] = lambda m: None) -> dict:
    """Stop the primary DHCP server; a client the primary served gets a new lease from the
    secondary (timed); start the primary again; both back to failover state normal."""
    from lab.roles import client as client_recipe
    from lab.roles import dhcp as dhcp_recipe

    lab, node_of = elab.lab, elab.node
    initial = elab.problems()
    if initial:
        raise DrillError("the lab is not in its initial state, drill refused:\n  " + "\n  ".join(initial))
    servers = lab.dhcp_servers()
    primary, secondary = servers["primary"], servers["secondary"]

    def target(name: str) -> Target:
        return Target.of(lab, lab.node(name), node_of(name), elab.deployment)

    clients = [c for t in lab.tenants.values() for c in t.clients]
    served = {c: client_recipe.lease_server(target(c)) for c in clients}
    by_primary = [c for c, s in served.items() if s == str(primary.ipv4.ip)]
    client = (by_primary or clients)[0]
    timeline = Timeline(time.time(), progress)
    mark, events = timeline.mark, timeline.events
    problems: list[str] = []

    mark(f"{client} holds a lease from {served[client]} "
         f"({'the primary' if by_primary else 'no client was served by the primary'})", client)
    p_target = target(primary.name)
    dhcpd = dhcp_recipe.dhcpd(p_target)
    mark(f"stop dhcpd on {primary.name} (primary)", primary.name)
    p_target.node.stop(dhcpd)
    c_target = target(client)
    asked = mark(f"{client} drops its lease and asks for a new one", client)
    client_recipe.new_lease(c_target)
    r = lab.dhcp.range
    got = until(lambda: (s := client_recipe.addressing(lab, node_of(client))).ipv4 is not None
                and r.first <= ipaddress.ip_address(s.ipv4) <= r.last, deadline, INTERVAL, paced=True)
    lease_s = None
    if got:
        addr = client_recipe.addressing(lab, node_of(client)).ipv4
        lease_s = round(mark(f"{client} has a lease: {addr}", client) - asked, 2)
        until(lambda: client_recipe.lease_server(c_target) is not None, 5, INTERVAL, paced=True)
        by = client_recipe.lease_server(c_target)
        mark(f"... given by {by}", client)
        if by != str(secondary.ipv4.ip):
            problems.append(f"{client}'s new lease came from {by}, "
                            f"expected the secondary {secondary.ipv4.ip}")
    else:
        problems.append(f"{client} got no lease within {deadline:.0f} s with the primary stopped")
    mark(f"start dhcpd on {primary.name}", primary.name)
    p_target.node.start(dhcpd)
    if until(lambda: not elab.problems(), deadline + 30, INTERVAL, paced=True):
        mark("both DHCP servers back to failover state normal; the lab is in its initial state", "host")
    else:
        problems.append("not back to the initial state: " + "; ".join(elab.problems()))
    return {"drill": "failover.dhcp", "lab": lab.name, "client": client,
            "served_by_before": served[client], "lease_s": lease_s, "events": events,
            "ok": not problems, "problems": problems}


def dhcp_summary(report: dict) -> str:
    lines = [f"failover.dhcp: {'PASS' if report['ok'] else 'FAIL'}"]
    lines += [f"  {e['t']:7.2f} s  {e['what']}" for e in report["events"]]
    if report["lease_s"] is not None:
        lines.append(f"  new lease for {report['client']} with the primary down: {report['lease_s']:.2f} s")
    lines += [f"  problem: {p}" for p in report["problems"]]
    return "\n".join(lines)
