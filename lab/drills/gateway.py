"""The failover drill: take something away from a tenant (its mode's fault), prove the gateway
moves (or stays) on the other one with connectivity intact, give it back, prove the lab
returns to its initial state; measured by probes from every container and a long-lived TCP
stream. Every outage is computed on its prober's own clock (ping's timestamps in the
container). Written against the substrate's Node and lab/drills/access.py only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lab.drills import modes
from lab.drills.access import DrillError, LabAccess, Runtime
from lab.drills.probes import INTERVAL, TCP_PORT, Background, outages, parse_ping, pinger, tcp_stream
from lab.drills.report import GatewayReport, TcpStream
from lab.drills.series import GatewaySeries
from lab.drills.watch import Timeline, Watch, transitions, unexplained
from lab.host.wait import until
from lab.pool import parallel, pmap
from lab.substrate.base import Service

SETTLE = 2.0         # seconds of steady state before the fault and after each phase
FAMILIES = ("4", "6", "both")
CLOCK = "seconds since the drill started; probes on each prober's clock, events on the clock named in each"


def run(runtime: Runtime, tenant: str, mode: str = "probe", family: str = "both", deadline: float = 20,
        progress: Callable[[str], None] = lambda m: None) -> GatewayReport:
    """Drill one tenant; returns the report (see README "Drills")."""
    access, kind = _prepare(runtime, tenant, mode, family)
    access.require_initial_state()
    return Drill(access, tenant, kind(access, tenant, family), deadline, progress).run()


def repeat(runtime: Runtime, tenant: str, mode: str = "probe", family: str = "both", trials: int = 1,
           deadline: float = 20, progress: Callable[[str], None] = lambda m: None) -> GatewaySeries:
    """`trials` drills back to back, each from the initial state (read before each, not assumed:
    the first is refused without it, a later one waits for it as long as a failback may take,
    and the series stops there if it does not come); progress: one line per trial."""
    access, kind = _prepare(runtime, tenant, mode, family)
    done, stopped = access.back_to_back(  # a failback may take twice the takeover's deadline
        trials, 2 * deadline, lambda: Drill(access, tenant, kind(access, tenant, family), deadline,
                                            lambda m: None).run(), trial_line, progress)
    return GatewaySeries.of(done, trials, stopped, drill=f"failover.{tenant}", tenant=tenant, mode=mode,
                            family=family, lab=access.lab.name, profile=access.deployment.profile)


def trial_line(r: GatewayReport) -> str:
    """One trial in a line: verdict, takeover and failback, the longest outage, what went wrong."""
    parts = ["PASS" if r.ok else "FAIL"]
    if r.moved:
        parts.append(f"takeover {_s(r.takeover_s)}, failback {_s(r.failback_s)}")
    worst = max(r.outages, key=lambda o: (o.ms is None, o.ms or 0), default=None)
    parts.append("no probe lost" if worst is None else
                 f"longest outage {'open' if worst.ms is None else f'{worst.ms} ms'} "
                 f"({worst.container} IPv{worst.family}, {worst.phase}), "
                 f"{sum(o.lost for o in r.outages)} probes lost")
    if r.spurious:
        parts.append(f"{len(r.spurious)} spurious transitions")
    return "; ".join(parts) + "".join(f"\n    problem: {p}" for p in r.problems)


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _prepare(runtime: Runtime, tenant: str, mode: str, family: str) -> tuple[LabAccess, type[modes.Mode]]:
    access = LabAccess(runtime)
    if tenant not in access.lab.tenants:
        raise DrillError(f"no tenant {tenant!r}; tenants: {', '.join(access.lab.tenants)}")
    if family not in FAMILIES:
        raise DrillError(f"--family must be one of {', '.join(FAMILIES)}")
    return access, modes.get(mode)


class Drill:
    """One run of the drill: its probers, its watch, its timeline and what went wrong."""

    Report: type[GatewayReport] = GatewayReport

    def __init__(self, access: LabAccess, tenant: str, fault: modes.Mode, deadline: float,
                 progress: Callable[[str], None]):
        self.access, self.lab, self.tenant, self.fault = access, access.lab, tenant, fault
        self.deadline, self.progress = deadline, progress
        self.expect = fault.expected_gateway()
        self.containers = [c for t in self.lab.tenants for c in self.lab.containers_of(t)]
        clients = self.lab.tenants[tenant].clients
        self.stream_from = clients[0] if clients else self.containers[0]
        # Every 50 ms; slower where the substrate asks (emulated VMs: 12 probers at 20/s starve
        # the emulated router, and both tenants' health checks fail at once).
        self.interval = access.probe_interval
        self.problems: list[str] = []
        self.takeover: float | None = None
        self.injected: float | None = None
        self.restored: float | None = None
        self.initial_at: float | None = None  # back to the initial state after the restore

    @property
    def name(self) -> str:
        return f"failover.{self.tenant}"

    def _states(self) -> dict[str, str]:
        """What the watch records as it changes, beyond the VIPs (none here)."""
        return {}

    def vm(self, tenant: str) -> str:
        return self.lab.tenants[tenant].vm

    def run(self) -> GatewayReport:
        self._start_sink()
        self.t0 = time.time()
        res = self.lab.internet.resolver
        self.probes = {(c, fam): pinger(self.access.node(c), str(res.ipv4 if fam == "4" else res.ipv6),
                                        fam, self.interval)
                       for c in self.containers for fam in ("4", "6")}
        self.stream = tcp_stream(self.access.node(self.stream_from), str(res.ipv4), self.interval)
        self.watch = Watch(self.access, self.t0, observe=self.fault.observe, states=self._states)
        self.timeline = Timeline(self.t0, self.progress)
        self.recorders = self.fault.background()
        try:
            self._start_probers()
            self._steps()
        finally:
            if self.injected is not None and self.restored is None:
                self.fault.restore()
            self.watch.stopping.set()
            parallel(Background.stop, [*self.probes.values(), self.stream, *self.recorders])
            time.sleep(0.3)
        self.watch.join(timeout=2)
        return self._report()

    # -- the steps --------------------------------------------------------------------------------

    def _steps(self) -> None:
        """From the probers running to the lab back in its initial state."""
        self.injected = self._inject()
        self._await_takeover(self.injected)
        self._await_fault()
        time.sleep(SETTLE + 2)
        self._restore()
        self._await_initial_state()
        time.sleep(SETTLE)

    def _start_sink(self) -> None:
        internet = self.access.node("internet")
        internet.start(Service("tcpsink", ("/usr/bin/python3", str(Path(__file__).with_name("tcpsink.py")),
                                           str(TCP_PORT), internet.path("/var/log/tcpsink.log"))))

    def _start_probers(self) -> None:
        parallel(Background.start, [*self.probes.values(), self.stream, *self.recorders])
        self.watch.start()
        self.timeline.mark(f"probes from {len(self.containers)} containers (IPv4 and IPv6, every "
                           f"{self.interval * 1000:.0f} ms), TCP stream from {self.stream_from}", "host")
        time.sleep(SETTLE)

    def _inject(self) -> float:
        vm = self.vm(self.tenant)
        injected = self.timeline.mark(f"fault injected: {self.fault.what}", vm)
        self.fault.inject()
        self.timeline.mark("fault in place", vm)
        return injected

    def _await_takeover(self, injected: float) -> None:
        def moved() -> bool:
            return self.watch.holder() == self.expect

        vm = self.vm(self.expect)
        if not _until(moved, self.deadline):
            self.problems.append(f"the gateway is not on {vm} {self.deadline:.0f} s after "
                                 f"the fault (VIPs: {self.watch.holders})")
            return
        took = self.timeline.mark(f"the gateway is on {vm}", vm) - injected
        self.takeover = round(took, 2)
        limit = self.access.master_down(self.expect)
        if self.fault.takeover_within_master_down and took > limit + 1.0:  # + our polling
            self.problems.append(f"{vm} took over after {took:.1f} s, more than "
                                 f"VRRP's master-down interval ({limit:.2f} s)")

    def _await_fault(self) -> None:
        """A fault that fails the tenant's health checks must put its keepalived in FAULT, as
        keepalived itself reports it (on the backup too, where the gateway does not move)."""
        if not self.fault.faults:
            return
        if not _until(lambda: self.access.vrrp_state(self.tenant) == "FAULT", self.deadline):
            self.problems.append(f"{self.vm(self.tenant)} did not enter FAULT within {self.deadline:.0f} s "
                                 f"of the fault (keepalived reports {self.access.vrrp_state(self.tenant)})")

    def _restore(self) -> None:
        vm = self.vm(self.tenant)
        self.restored = self.timeline.mark("restore", vm)
        self.fault.restore()
        self.timeline.mark("restored", vm)

    def _await_initial_state(self) -> None:
        left: list[str] = []
        master = self.lab.master()

        def back() -> bool:
            # The full reading runs a command in every container: seconds of CPU each on an
            # emulated VM, whose health checks then starve and fail. Only once the watch sees
            # the VIPs back on the master alone.
            if self.watch.holder() != master:
                left[:] = [f"the VIPs are not on {self.vm(master)} alone: {self.watch.holders}"]
                return False
            left[:] = self.access.problems()
            return not left

        # Twice the takeover's deadline: the failback waits out the health checks' rise, then
        # the whole lab (leases, routes, daemons' own states) is read, on a busy VM slowly.
        if not _until(back, 2 * self.deadline):
            self.problems.append("the lab is not back to its initial state after restore: " + "; ".join(left))
        else:
            self.initial_at = self.timeline.mark(
                f"back to the initial state: the gateway on {self.vm(master)}", "host")

    # -- the report -------------------------------------------------------------------------------

    def _report(self) -> GatewayReport:
        restore_t = self.restored if self.restored is not None else float("inf")
        texts = dict(zip(self.probes, pmap(Background.output, self.probes.values()), strict=True))
        tcp_out = self.stream.output()
        parallel(Background.remove, [*self.probes.values(), self.stream])
        master = self.lab.master()
        since = self.watch.alone_since(master, restore_t)
        seen = transitions(self.access, self.t0)
        report = self.Report(
            drill=self.name, tenant=self.tenant, mode=self.fault.name,
            family=self.fault.family, lab=self.lab.name, clock=CLOCK, interval=self.interval,
            expected_gateway=self.vm(self.expect), takeover_s=self.takeover,
            master_down_s=round(self.access.master_down(self.expect), 3),
            events=sorted(self.timeline.events + self.watch.events + seen, key=lambda e: e.t),
            tcp=self._tcp(tcp_out), master=self.vm(master),
            failback_s=None if since is None else round(since - restore_t, 2),
            spurious=self._spurious(seen), vips_on_both_s=self.watch.overlap(),
            profile=self.access.deployment.profile)
        for (c, fam), text in texts.items():
            series = parse_ping(text, self.t0, self.interval)
            report.probes.setdefault(c, {})[fam] = series
            for o in outages(series, restore_t, c, fam):
                report.outages.append(o)
                if o.open:
                    self.problems.append(f"{c} IPv{fam}: no reply since {o.start:.1f} s")
            if not series:
                self.problems.append(f"{c} IPv{fam}: the prober recorded nothing")
        if not report.tcp.survived:
            self.problems.append(f"the TCP stream from {self.stream_from} did not survive: "
                                 f"{report.tcp.detail}")
        self.problems += [f"{what} (at {t:.2f} s)" for what, t in self.watch.observed.items()]
        if report.vips_on_both_s > self.fault.overlap_s:
            self.problems.append(f"a VIP was on both tenants for {report.vips_on_both_s:.2f} s "
                                 f"(at most {self.fault.overlap_s:g} s: duplicate addresses on VLAN 7)")
        self.problems += self.fault.judge(report, self.t0)
        parallel(Background.remove, self.recorders)
        report.problems, report.ok = self.problems, not self.problems
        return report

    def _spurious(self, seen) -> list[str]:
        """The VRRP transitions the fault does not explain: any before it, and any beyond the
        states its mode expects while it is on and after the restore (on the tenants' clocks)."""
        inject = self.injected if self.injected is not None else float("inf")
        restore = self.restored if self.restored is not None else float("inf")
        out = []
        for vm, (on, back) in self.fault.expected_transitions().items():
            mine = [(e.t, e.what.split()[-1]) for e in seen if e.node == vm]
            for phase, expected, lo, hi in (("before the fault", (), float("-inf"), inject),
                                            ("while the fault was on", on, inject, restore),
                                            ("after the restore", back, restore, float("inf"))):
                out += [f"{vm} enters {state} at {t:.2f} s ({phase})"
                        for t, state in unexplained([m for m in mine if lo <= m[0] < hi], expected)]
        return out

    def _tcp(self, out: str) -> TcpStream:
        return TcpStream(container=self.stream_from, target=f"{self.lab.internet.resolver.ipv4}:{TCP_PORT}",
                         survived="RESET" not in out and "CONNECT-FAILED" not in out,
                         resets=out.count("RESET"), detail=out.strip()[-200:])


def _until(ok: Callable[[], bool], deadline: float) -> bool:
    return until(ok, deadline, INTERVAL, paced=True)
