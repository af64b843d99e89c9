"""The embedded lab: the whole seed lab on this host, in network namespaces.

    up:   namespaces + wires -> the lab's Internet -> router -> tenants -> containers -> converged
    down: every process by pid, LXD daemons, mounts, namespaces, files: nothing left behind
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import provision
from lab import internet, model
from lab.host.run import sh
from lab.host.wait import wait_until
from lab.pool import parallel
from lab.render import FORMS, File, render
from lab.state import dhcp_problems
from lab.substrate.base import Node
from lab.substrate.netns import NetnsLab, NetnsNode, link_exists, namespaces

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Timer:
    start: float

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def __str__(self) -> str:
        return f"{self.elapsed:5.1f}s"


class EmbeddedLab:
    """One lab on this host; `driver` chooses the containers: lxd or netns (light)."""

    probe_interval = 0.05  # the drills' probes (s): namespaces and containers are cheap here

    def __init__(self, lab: model.Lab, driver: str | None = None):
        running = NetnsLab(lab).state / "driver"
        if driver is None and running.exists():  # the driver the running lab was built with
            driver = running.read_text().strip()
        if driver:
            lab = lab.model_copy(update={"containers": lab.containers.model_copy(
                update={"driver": driver})})
        self.lab = lab
        self.driver = lab.containers.driver
        self.net = NetnsLab(lab)
        self.form = FORMS["netns"]
        self._lxd: dict[str, object] = {}

    # -- nodes ------------------------------------------------------------------------------

    def is_up(self) -> bool:
        return self.net.ns(self.lab.router.vm) in namespaces()

    def node(self, name: str) -> Node:
        if name in ("internet", "dsw-host"):
            return NetnsNode(name, self.net.ns(name), str(self.net.state / name))
        spec = self.lab.node(name)
        if spec.is_container and self.driver == "lxd":
            return self.lxd(spec.tenant).node(name)
        return self.net.node(name)

    def _running_driver(self) -> str | None:
        f = self.net.state / "driver"
        return f.read_text().strip() if f.exists() else None

    def lxd(self, tenant: str):
        from lab.containers.lxd_nodes import TenantLxd

        if tenant not in self._lxd:
            self._lxd[tenant] = TenantLxd(self.lab, tenant, self.net)
        return self._lxd[tenant]

    def names(self) -> list[str]:
        return ["internet", "dsw-host", *(n.name for n in self.lab.nodes())]

    # -- up -------------------------------------------------------------------------------

    def up(self, progress: Progress = _quiet, timeout: float = 120) -> float:
        """Build, provision and wait until converged; returns the seconds it took."""
        t = Timer(time.monotonic())
        with self.net.lock():
            progress(f"[{t}] namespaces and wires ({self.driver} containers)")
            if self.is_up() and self._running_driver() not in (None, self.driver):
                raise RuntimeError(f"lab {self.lab.name!r} runs with {self._running_driver()} "
                                   f"containers: `invoke down` first to change the driver")
            self.net.create(light_containers=self.driver == "netns")
            (self.net.state / "driver").write_text(self.driver + "\n")
            self._resolvers()
            progress(f"[{t}] the lab's Internet")
            internet.provision(self.node("internet"), self.lab)
            files = render(self.lab, self.form)

            def prov(spec: model.Node) -> None:
                self._provision(spec, files[spec.name], progress, t)

            # Machines are independent of each other: each step runs them side by side.
            parallel(prov, [n for n in self.lab.nodes() if not n.is_container])
            containers = [n for n in self.lab.nodes() if n.is_container]

            def tenant_containers(tenant: str) -> None:
                """Make a tenant's containers, then provision its DHCP server at once."""
                if self.driver == "lxd":
                    self.lxd(tenant).up(progress=lambda m: progress(f"[{t}]   {m}"))
                else:
                    parallel(self._light_container, [n for n in containers if n.tenant == tenant])
                prov(self.lab.node(self.lab.tenants[tenant].dhcp_server.name))

            if self.driver == "lxd":
                progress(f"[{t}] LXD in " + " and ".join(t_.vm for t_ in self.lab.tenants.values()))
            # The DHCP failover pair first, serving, then its clients (an LXD client's ifup
            # gives up after one try).
            parallel(tenant_containers, list(self.lab.tenants))
            wait_until(lambda: dhcp_problems(self.lab, self.node), timeout, "the DHCP failover pair")
            parallel(prov, [n for n in containers if n.role != "dhcp"])
        progress(f"[{t}] waiting for convergence")
        self.wait(timeout, progress)
        progress(f"[{t}] converged")
        return t.elapsed

    def _provision(self, spec: model.Node, files: dict[str, File], progress: Progress, t) -> None:
        target = provision.Target(self.lab, spec, self.node(spec.name), files,
                                  light=self.form.light(self.lab, spec),
                                  rewire=lambda: self.net.rewire(self.net.ns(spec.name)))
        actions = provision.apply(target)
        progress(f"[{t}] {spec.name}: {', '.join(actions) if actions else 'unchanged'}")

    def _resolvers(self) -> None:
        """Each namespace's /etc/resolv.conf (light clients get theirs from DHCP)."""
        res = self.lab.internet.resolver
        text = f"nameserver {res.ipv4}\nnameserver {res.ipv6}\n"
        for name in self.names():
            if name in ("internet", "dsw-host"):
                continue
            spec = self.lab.node(name)
            node = self.net.node(name)
            if spec.is_container and self.driver == "lxd":
                continue
            if spec.role == "client":
                if node.read("/etc/resolv.conf") is None:
                    node.put("/etc/resolv.conf", "")
            else:
                node.put("/etc/resolv.conf", text)

    def _light_container(self, spec: model.Node) -> None:
        """A namespace with eth0 on its tenant's VLAN 7 bridge."""
        tenant_ns = self.net.ns(self.lab.tenants[spec.tenant].vm)
        ns, nic = self.net.ns(spec.name), self.lab.containers.nic
        port = port_name(spec.name)
        if link_exists(ns, nic) and link_exists(tenant_ns, port):
            return
        sh(["ip", "-n", tenant_ns, "link", "del", port], check=False)
        sh(["ip", "-n", ns, "link", "del", nic], check=False)
        mtu = str(self.lab.shared_vlan.mtu)
        sh(["ip", "-n", tenant_ns, "link", "add", port, "mtu", mtu, "type", "veth",
            "peer", "name", nic, "mtu", mtu, "netns", ns])
        sh(["ip", "-n", tenant_ns, "link", "set", port, "master", self.lab.shared_vlan.bridge, "up"])

    # -- convergence -------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """What keeps the lab from being converged (empty: converged)."""
        from lab.state import convergence_problems

        return convergence_problems(self)

    def wait(self, timeout: float, progress: Progress = _quiet) -> None:
        wait_until(self.problems, timeout, "the lab")

    # -- down -------------------------------------------------------------------------------

    def down(self, progress: Progress = _quiet) -> list[str]:
        removed = []
        with self.net.lock():
            from lab.containers.lxd_nodes import TenantLxd

            for tenant in self.lab.tenants:
                removed += TenantLxd(self.lab, tenant, self.net).down()
            removed += self.net.destroy()
        for r in removed:
            progress(f"removed {r}")
        return removed


def port_name(container: str) -> str:
    """The tenant-side end of a light container's wire (interface names: 15 bytes at most)."""
    name = f"p-{container}"
    if len(name) <= 15:
        return name
    return f"p-{container[:8]}-{hashlib.sha1(container.encode()).hexdigest()[:4]}"

