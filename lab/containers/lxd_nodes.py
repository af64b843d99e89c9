"""The lab's LXD containers as substrate nodes: one LXD daemon per tenant namespace.

Instances are named `<lab>-<node>` (names must be unique across daemons and labs); inside,
each keeps its seed name as host name. Services are the containers' own systemd units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lab import model
from lab.containers.container import LxdContainer, prune
from lab.containers.daemon import POOLS, LxdDaemon
from lab.containers.image import ensure_image
from lab.pool import parallel
from lab.substrate.base import CommandError, Result
from lab.substrate.netns import NetnsLab
from lab.substrate.systemd import SystemdServices


class LxdNode(SystemdServices):
    """A container of the lab, reached through pylxd."""

    kind = "LXD container"
    root = ""

    def __init__(self, name: str, container: LxdContainer):
        self.name = name
        self.container = container

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60) -> Result:
        rc, out, err = self.container.run(list(argv), input=input.encode() if input else None,
                                          timeout=timeout)
        r = Result(tuple(argv), rc, out, err)
        if check and not r.ok:
            raise CommandError(self.name, r)
        return r

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> bool:
        data = data.encode() if isinstance(data, str) else data
        old = self.read(path)
        if old is not None and old.encode() == data:
            return False
        self.container.put(path, data, mode)
        return True

    def read(self, path: str) -> str | None:
        try:
            return self.container.get(path).decode(errors="replace")
        except Exception:  # pylxd: NotFound, or an error reply for a missing file
            return None

    def path(self, p: str) -> str:
        return p  # its own file system

    def interactive(self, argv: Sequence[str]) -> list[str]:
        # pylxd has no terminal: the lxc client, on this daemon's socket
        return ["env", f"LXD_DIR={self.container.daemon.lxd_dir}", "lxc", "exec",
                self.container.name, "--", *argv]


class TenantLxd:
    """The LXD daemon in one tenant's namespace and that tenant's containers."""

    def __init__(self, lab: model.Lab, tenant: str, net: NetnsLab):
        self.lab = lab
        self.tenant = tenant
        self.daemon = LxdDaemon(net.ns(lab.tenants[tenant].vm), net.state / f"lxd-{tenant}",
                                POOLS / lab.name / f"lxd-{tenant}.btrfs")
        self.prepared = False  # by this process: prepare() ran to its end

    def instance(self, name: str) -> str:
        return f"{self.lab.name}-{name}"

    def node(self, name: str) -> LxdNode:
        return LxdNode(name, LxdContainer(self.daemon, self.instance(name)))

    def prepare(self, progress: Callable[[str], None]) -> None:
        """What needs only the tenant's namespace, not its VM: the daemon, its pool, profile
        and image, and the containers made (stopped). The first one unpacks the image into the
        pool (~2.4 s), the others are snapshots of it. Idempotent."""
        image = ensure_image(progress=progress)
        self.daemon.start()
        self.daemon.init(bridge=self.lab.shared_vlan.bridge, mtu=self.lab.shared_vlan.mtu, image=image)
        parallel(lambda name: LxdContainer(self.daemon, self.instance(name)).create(),
                 list(self.lab.containers_of(self.tenant)))
        self.prepared = True
        progress(f"LXD of {self.lab.tenants[self.tenant].vm}: daemon, image and containers made")

    def up(self, progress: Callable[[str], None]) -> None:
        """The containers running on the VM's shared VLAN (its bridge exists), each with its
        seed name as host name; those no longer in the lab's description removed."""
        if not self.prepared:
            self.prepare(progress)

        def launch(name: str) -> None:
            c = LxdContainer(self.daemon, self.instance(name))
            c.start()
            c.wait_booted()
            node = LxdNode(name, c)
            if node.put("/etc/hostname", f"{name}\n"):
                node.run(["hostname", name])
            progress(f"{name} ({c.name}) running")

        parallel(launch, list(self.lab.containers_of(self.tenant)))
        for name in prune(self.daemon, {self.instance(n) for n in self.lab.containers_of(self.tenant)}):
            progress(f"{name.removeprefix(self.instance(''))}: removed (no longer in the lab description)")

    def down(self) -> list[str]:
        d = self.daemon
        if not d.lxd_dir.exists() and not d.pool_file.exists() and not d.running():
            return []
        self.daemon.stop()
        return [f"LXD daemon and containers of {self.lab.tenants[self.tenant].vm}"]
