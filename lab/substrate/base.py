"""The substrate interface: what the lab needs from the "hardware" it runs on.

A substrate makes nodes, NICs and wires; a node runs commands, holds files and runs
services. Everything above (recipes, checks, drills) is written against `Node` and `Runtime`
only, so it runs unchanged on network namespaces (netns) and on Vagrant VMs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from lab import model
    from lab.deployment import Deployment
    from lab.model import Lab
    from lab.render import File
    from lab.roles import Target

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class CommandError(RuntimeError):
    def __init__(self, node: str, result: Result):
        self.node, self.result = node, result
        cmd = " ".join(result.argv)
        detail = (result.err or result.out).strip().splitlines()[-5:]
        super().__init__(f"{node}: `{cmd}` failed (exit {result.rc})"
                         + ("".join(f"\n  {line}" for line in detail)))


@dataclass(frozen=True)
class Service:
    """A daemon of a node.

    `argv` runs it in the foreground with explicit per-node paths (namespaces have no init:
    the substrate supervises it); `unit` is its systemd unit where the node has systemd
    (VMs, LXD containers), which then runs it from the same files at their usual paths.
    `after_exit` runs once the daemon has exited for any reason, killed too: in a namespace
    the substrate runs it, under systemd the unit's ExecStopPost (a drop-in among the node's
    files) names the same command. `env` is the environment `argv` needs (a unit sets its own).
    `reload` makes the running daemon read its changed configuration, instead of a restart.
    """

    name: str
    argv: tuple[str, ...]
    unit: str | None = None
    pidfiles: tuple[str, ...] = ()  # the daemon's own pid files (stale ones block a restart)
    after_exit: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    reload: tuple[str, ...] = ()


class Node(Protocol):
    """One machine of the lab: a VM, a namespace or a container."""

    name: str
    kind: str  # what it is, for people: "VM", "namespace", "LXD container"
    root: str  # prefix of the node's paths on the machine that holds them ("" if its own fs)

    def path(self, p: str) -> str:
        """Where the node's path `p` is, as the commands run on it see it."""

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60) -> Result:
        """Run a command on the node; raise CommandError if `check` and it fails."""

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> bool:
        """Place a file at `path` on the node; return whether its content or mode changed."""

    def read(self, path: str) -> str | None:
        """A file of the node, or None if it does not exist."""

    def start(self, service: Service, restart: bool = False) -> None:
        """Start the service unless it runs (restart it if `restart`)."""

    def stop(self, service: Service) -> None:
        """Stop the service if it runs."""

    def running(self, service: Service) -> bool:
        """Whether the service runs."""

    def units_changed(self) -> None:
        """Files of its systemd units changed: make its init read them (nothing without one)."""

    def log(self, service: Service, lines: int = 50) -> str:
        """The service's last log lines."""

    def interactive(self, argv: Sequence[str]) -> list[str]:
        """A host command line that runs argv on the node with the caller's terminal."""



class Runtime(Protocol):
    """One lab deployed on one substrate: what the lifecycle, checks, drills and tasks need of
    it. The embedded lab (lab/embedded.py) and the Vagrant lab (lab/vagrant/lab.py) implement
    it; lab/lifecycle.py owns the order in which a lab is made, for both."""

    lab: Lab
    deployment: Deployment
    poll: float  # seconds between two reads of a converging lab
    timeout: float  # seconds a lab may take to converge

    def exists(self) -> bool:
        """Whether anything of the lab exists on this substrate."""

    def names(self) -> list[str]:
        """The nodes one can reach: machines, containers, and the Internet where it is ours."""

    def node(self, name: str) -> Node:
        """A node by name."""

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while the lab is changed: one change of a lab at a time."""

    def machines(self, progress: Progress) -> None:
        """Make, or check, the machines and their wires, and what must exist before any node
        is provisioned (the embedded lab: namespaces, veths, the lab's Internet; the Vagrant
        lab: the VMs run, the host's new ports are sealed, root logs in)."""

    def target(self, spec: model.Node, files: dict[str, File]) -> Target:
        """A node ready to be provisioned with these files."""

    def containers(self, tenant: str, progress: Progress) -> None:
        """Make a tenant's containers, on its VM's shared VLAN (the VM is provisioned)."""

    def carrier(self, machine: str, up: bool) -> None:
        """A machine's NIC loses (or gets back) its carrier, as when its cable is pulled: done
        on the switch's side, so the machine itself sees NO-CARRIER (a drill's fault)."""

    def problems(self) -> list[str]:
        """What keeps the lab from being converged (empty: converged)."""

    def down(self, progress: Progress) -> list[str]:
        """Remove what the lab made on this substrate; what was removed."""
