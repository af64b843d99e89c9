"""How a lab is made, in one place for every substrate (a `Runtime`):

    machines and wires -> render -> side by side: the router | each tenant: its VM, its
    containers, its DHCP server -> the DHCP failover pair serving -> the clients -> converged

Run again on a running lab it converges it: what changed is re-applied, what died restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import provision
from lab import model
from lab.host.wait import wait_until
from lab.pool import parallel
from lab.render import File, render
from lab.state import dhcp_problems
from lab.substrate.base import Progress, Runtime


class Timer:
    def __init__(self) -> None:
        self.start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __str__(self) -> str:
        return f"{self.elapsed:5.1f}s"


def _quiet(_: str) -> None:
    pass


def converge(rt: Runtime, progress: Progress = _quiet, timeout: float = 120) -> float:
    """Make the lab, or converge it to its description; wait until it has converged.
    Returns the seconds it took."""
    t = Timer()

    def say(msg: str) -> None:
        progress(f"[{t}] {msg}")

    lab = rt.lab
    with rt.lock():
        rt.machines(say)
        files = render(lab, rt.deployment)

        def apply(spec: model.Node) -> None:
            _apply(rt, spec, files[spec.name], say)

        def tenant(name: str) -> None:
            t_ = lab.tenants[name]
            apply(lab.node(t_.vm))  # its shared VLAN's bridge exists before containers join it
            rt.containers(name, lambda m: say(f"  {m}"))
            apply(lab.node(t_.dhcp_server.name))

        parallel(lambda job: job(), [lambda: apply(lab.node(lab.router.vm)),
                                     *(lambda n=n: tenant(n) for n in lab.tenants)])
        # The DHCP failover pair serving first: an LXD client's ifup gives up after one try.
        wait_until(lambda: dhcp_problems(lab, rt.node), timeout, "the DHCP failover pair", pause=rt.poll)
        parallel(apply, [n for n in lab.nodes() if n.role == "client"])
    say("waiting for convergence")
    wait(rt, timeout)
    say("converged")
    return t.elapsed


def _apply(rt: Runtime, spec: model.Node, files: dict[str, File], say: Callable[[str], None]) -> None:
    actions = provision.apply(rt.target(spec, files))
    say(f"{spec.name}: {', '.join(actions) if actions else 'unchanged'}")


def wait(rt: Runtime, timeout: float) -> None:
    """Until the lab has converged; TimeoutError naming what is still wrong."""
    wait_until(rt.problems, timeout, "the lab", pause=rt.poll)
