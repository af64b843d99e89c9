"""The embedded lab: the whole seed lab on this host, in network namespaces (a `Runtime`).

    machines: namespaces + wires, resolvers, the lab's Internet; containers: LXD per tenant
    namespace, or light ones (a namespace each); down: every process by pid, LXD daemons,
    mounts, namespaces, files: nothing left behind
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

import yaml

from lab import checks, lifecycle, model
from lab.deployment import Deployment, Driver
from lab.host.run import sh
from lab.pool import parallel
from lab.render import File
from lab.roles import Target, internet
from lab.substrate.base import Node, Progress
from lab.substrate.netns import STATE, NetnsLab, link_exists, namespaces
from lab.topology import INTERNET, Topology, port_name
from lab.ui import Reporter

if TYPE_CHECKING:
    from lab.containers.lxd_nodes import TenantLxd


DRIVER = "driver"  # in the lab's state directory: the driver it was built with
DESCRIPTION = "lab.yaml"  # and the description it was last built from, --set changes applied
CREATED = "created"  # made by its first up: its age


def running_driver(lab: model.Lab) -> Driver | None:
    f = STATE / lab.name / DRIVER
    return f.read_text().strip() if f.exists() else None  # type: ignore[return-value]


def recorded(name: str) -> model.Lab | None:
    """The description the running lab of this name was built from, if it is up."""
    f = STATE / name / DESCRIPTION
    try:
        return model.parse(f.read_text(), f)
    except (OSError, model.LabError):
        return None


def age(name: str) -> float:
    """Seconds since the lab's first up."""
    made = STATE / name / CREATED
    return time.time() - (made if made.exists() else STATE / name).stat().st_mtime


def labs() -> list[str]:
    """The names of the embedded labs on this host."""
    return sorted(d.name for d in STATE.glob("*/") if (d / DRIVER).exists()) if STATE.is_dir() else []


def _quiet(_: str) -> None:
    pass


class EmbeddedLab:
    """One lab on this host; the deployment's driver chooses the containers: lxd or netns."""

    poll = 0.25
    timeout = 120.0

    def __init__(self, lab: model.Lab, driver: Driver | None = None):
        self.lab = lab
        # The driver asked for, else the one the running lab was built with, else lab.yaml's.
        self.deployment = Deployment.of(lab, "netns", driver or running_driver(lab))
        self.net = NetnsLab(lab, self.deployment)
        self.topology = Topology(lab)
        self._lxd: dict[str, TenantLxd] = {}
        self._preparing: dict[str, Future[None]] = {}  # tenant: its LXD being made in the background

    @property
    def driver(self) -> str:
        return self.deployment.driver

    # -- nodes ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.net.ns(self.lab.router.vm) in namespaces()

    def names(self) -> list[str]:
        return [n.name for n in self.topology.nodes]

    def node(self, name: str) -> Node:
        spec = self.topology.node(name)
        if spec.is_container and self.driver == "lxd":
            return self.lxd(spec.tenant).node(name)
        return self.net.node(name)

    def lxd(self, tenant: str) -> TenantLxd:
        from lab.containers.lxd_nodes import TenantLxd  # pylxd: only where LXD is used

        if tenant not in self._lxd:
            self._lxd[tenant] = TenantLxd(self.lab, tenant, self.net)
        return self._lxd[tenant]

    # -- the lifecycle's steps ----------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        with self.net.lock():
            try:
                yield
            except KeyboardInterrupt:  # Ctrl-C waits for nothing; `invoke down` removes it all
                self._preparing.clear()
                raise
            finally:  # background work started under the lock ends under it (a failed up's too)
                for future in self._preparing.values():
                    with contextlib.suppress(Exception):  # the up's own error is the one to say
                        future.result()
                self._preparing.clear()

    def up(self, report: Reporter | None = None, timeout: float | None = None) -> float:
        """Build, provision and wait until converged; returns the seconds it took."""
        return lifecycle.converge(self, report, timeout)

    def machines(self, progress: Progress) -> None:
        progress(f"namespaces and wires ({self.driver} containers)")
        running = running_driver(self.lab)
        if self.exists() and running not in (None, self.driver):
            raise RuntimeError(f"lab {self.lab.name!r} runs with {running} containers: "
                               "`invoke down` first to change the driver")
        self.net.create(light_containers=self.driver == "netns", made=lambda: self._prepare_lxd(progress))
        for name in self.net.prune(light_containers=self.driver == "netns"):
            progress(f"{name}: removed (no longer in the lab description)")
        (self.net.state / DRIVER).write_text(self.driver + "\n")
        if not (self.net.state / CREATED).exists():
            (self.net.state / CREATED).touch()
        (self.net.state / DESCRIPTION).write_text(
            yaml.safe_dump(self.lab.model_dump(mode="json", exclude_none=True), sort_keys=False))
        self._resolvers()
        progress("the lab's Internet")
        internet.provision(self.node(INTERNET), self.lab)

    def _prepare_lxd(self, progress: Progress) -> None:
        """Each tenant's LXD daemon, image and containers made, in the background from now on
        (the namespaces exist): it needs no wire, and its ~5 s overlap the plumbing, the
        router and the VMs' daemons. containers() waits for it; the lock for all of it."""
        if self.driver != "lxd":
            return
        progress("LXD in " + " and ".join(t.vm for t in self.lab.tenants.values()) + " (in the background)")
        pool = ThreadPoolExecutor(max_workers=len(self.lab.tenants), thread_name_prefix="lxd")
        for tenant in self.lab.tenants:
            self._preparing[tenant] = pool.submit(self.lxd(tenant).prepare, progress)
        pool.shutdown(wait=False)

    def target(self, spec: model.Node, files: dict[str, File]) -> Target:
        return Target(self.lab, spec, self.node(spec.name), files,
                                light=self.deployment.light(spec),
                                rewire=lambda: self.net.rewire(self.net.ns(spec.name)))

    def containers(self, tenant: str, progress: Progress) -> None:
        if self.driver == "lxd":
            if tenant in self._preparing:
                self._preparing.pop(tenant).result()  # its error, if it failed
            self.lxd(tenant).up(progress=progress)
        else:
            parallel(self._light_container, self.lab.containers_of(tenant))

    def _resolvers(self) -> None:
        """Each namespace's /etc/resolv.conf (light clients get theirs from DHCP)."""
        res = self.lab.internet.resolver
        text = f"nameserver {res.ipv4}\nnameserver {res.ipv6}\n"
        for spec in self.lab.nodes():
            if spec.is_container and self.driver == "lxd":
                continue
            node = self.net.node(spec.name)
            if spec.role != "client":
                node.put("/etc/resolv.conf", text)
            elif node.read("/etc/resolv.conf") is None:
                node.put("/etc/resolv.conf", "")

    def _light_container(self, name: str) -> None:
        """A namespace with its NIC on its tenant's bridge of the shared VLAN."""
        lk = self.topology.link_of(name)
        tenant_ns, ns, port = self.net.ns(lk.switch), self.net.ns(name), port_name(name)
        if link_exists(ns, lk.nic) and link_exists(tenant_ns, port):
            return
        sh(["ip", "-n", tenant_ns, "link", "del", "dev", port], check=False)
        sh(["ip", "-n", ns, "link", "del", "dev", lk.nic], check=False)
        mtu = str(lk.mtu)
        sh(["ip", "-n", tenant_ns, "link", "add", "name", port, "mtu", mtu, "type", "veth",
            "peer", "name", lk.nic, "mtu", mtu, "netns", ns])
        sh(["ip", "-n", tenant_ns, "link", "set", "dev", port, "master", lk.port, "up"])

    # -- convergence and down -------------------------------------------------------------------

    def carrier(self, machine: str, up: bool) -> None:
        # The switch's end of each of the machine's veths (a trunk has one per VLAN).
        ends = [w.b for w in self.net.wires() if w.a[0] == self.net.ns(machine)]
        if not ends:
            raise ValueError(f"{machine} has no wire to dsw-host")
        for ns, port in ends:
            sh(["ip", "-n", ns, "link", "set", "dev", port, "up" if up else "down"])

    def problems(self) -> list[str]:
        return checks.problems(checks.converged(self.lab, self.node), self.node)

    def down(self, progress: Progress = _quiet) -> list[str]:
        removed = []
        with self.net.lock():
            for tenant in self.lab.tenants:
                removed += self.lxd(tenant).down()
            removed += self.net.destroy()
        for r in removed:
            progress(f"removed {r}")
        return removed

