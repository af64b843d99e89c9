"""How a lab is made, in one place for every substrate (a `Runtime`):

    machines and wires -> render -> side by side: the router | each tenant: its VM, its
    containers, its DHCP server -> the DHCP failover pair serving -> the clients -> converged

Run again on a running lab it converges it: what changed is re-applied, what died restarts.
"""

from __future__ import annotations

import threading
import time

from lab import checks, model, roles
from lab.host.wait import wait_until
from lab.pool import parallel
from lab.render import render
from lab.substrate.base import Runtime
from lab.ui import Quiet, Reporter


class Timer:
    """Seconds since the start, and how long each stage took."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.stages: list[tuple[str, float]] = []  # (name, when it began)

    def stage(self, name: str) -> None:
        self.stages.append((name, self.elapsed))

    def spent(self) -> str:
        """Where the time went: each stage's seconds."""
        ends = [b for _, b in self.stages[1:]] + [self.elapsed]
        return ", ".join(f"{name} {end - began:.1f} s"
                         for (name, began), end in zip(self.stages, ends, strict=True))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __str__(self) -> str:
        return f"{self.elapsed:5.1f}s"


def converge(rt: Runtime, report: Reporter | None = None, timeout: float | None = None) -> float:
    """Make the lab, or converge it to its description; wait until it has converged (within
    `timeout`, the runtime's own by default). Returns the seconds it took."""
    report = report or Quiet()
    timeout = timeout or rt.timeout
    t = Timer()

    def note(msg: str) -> None:
        report.note(f"[{t}] {msg}")

    def stage(name: str, says: str) -> None:
        t.stage(name)
        report.stage(f"[{t}] {says}")

    lab = rt.lab
    try:
        with rt.lock():
            stage("machines", "machines and wires")
            rendered: list[dict] = []  # the files, rendered while the machines are made (CPU | waits)
            parallel(lambda job: job(), [lambda: rt.machines(note),
                                         lambda: rendered.append(render(lab, rt.deployment))])
            files = rendered[0]

            router_done = threading.Event()
            # A DHCP server has started (or failed to): its failover partner may start now
            servers = [t.dhcp_server for t in lab.tenants.values()]
            dhcp_started = {s.name: threading.Event() for s in servers}
            primary = next(s.name for s in servers if s.role == "primary")

            def apply(spec: model.Node) -> None:
                target = rt.target(spec, files[spec.name])
                target.upstream_ready = router_done.wait
                if spec.role == "dhcp" and spec.name != primary:
                    target.partner_ready = dhcp_started[primary].wait
                actions = roles.apply(target)
                note(f"{spec.name}: {', '.join(actions) if actions else 'unchanged'}")

            def router() -> None:
                try:
                    apply(lab.node(lab.router.vm))
                finally:  # failed too: nobody waits for it any longer
                    router_done.set()

            def tenant(name: str) -> None:
                t_ = lab.tenants[name]
                try:
                    apply(lab.node(t_.vm))  # its shared VLAN's bridge exists before containers join it
                    rt.containers(name, lambda m: note(f"  {m}"))
                    apply(lab.node(t_.dhcp_server.name))
                finally:  # failed too: its partner waits for it no longer
                    dhcp_started[t_.dhcp_server.name].set()

            stage("nodes", "the router | each tenant: its VM, its containers, its DHCP server")
            parallel(lambda job: job(), [router, *(lambda n=n: tenant(n) for n in lab.tenants)])
            # The DHCP failover pair serving first: an LXD client's ifup gives up after one try.
            stage("DHCP pair", "the DHCP failover pair")
            pair = checks.dhcp_pair(lab, rt.node)
            wait_until(lambda: checks.problems(pair, rt.node), timeout, "the DHCP failover pair",
                       pause=rt.poll)
            stage("clients", "the clients")
            parallel(apply, [n for n in lab.nodes() if n.role == "client"])
        stage("convergence", "waiting for convergence (VRRP, leases, SLAAC, routes)")
        wait(rt, timeout)
    finally:
        report.close()
    report.note(f"[{t}] converged; where the time went: {t.spent()}")
    return t.elapsed


def wait(rt: Runtime, timeout: float | None = None) -> None:
    """Until the lab has converged; TimeoutError naming what is still wrong."""
    wait_until(rt.problems, timeout or rt.timeout, "the lab", pause=rt.poll)
