"""The Vagrant lab: the seed's three VMs (Vagrant + libvirt), their LXD containers, and the
host's simulated upstream, with the surface checks, drills and tasks use (as EmbeddedLab).

    provision: VMs side by side (router; each tenant: its VM, then its LXD and containers,
               then its DHCP server) -> the DHCP failover pair normal -> clients -> converged
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import provision
from lab import model
from lab.embedded import Timer
from lab.host.wait import wait_until
from lab.pool import parallel
from lab.render import FORMS, File, render
from lab.state import dhcp_problems
from lab.substrate.base import Node
from lab.substrate.vagrant import VagrantNode, nodes_from_vagrant
from lab.vagrant import host as hosts
from lab.vagrant import spec as specs
from lab.vagrant.lxd import ClientCert, TenantVmLxd

Progress = Callable[[str], None]
# The VMs' own daemons the recipes rely on (the seed's OVS stanzas need ovs-vswitchd). Under
# emulation on a busy host they may have missed their start timeout at boot: started here.
VM_UNITS = ("openvswitch-switch.service",)
ROOT = Path(__file__).resolve().parent.parent.parent  # the Vagrantfile's directory


def _quiet(_: str) -> None:
    pass


class VagrantVms:
    """This directory's Vagrant VMs of one lab: do they exist, and SSH nodes for them."""

    def __init__(self, lab: model.Lab, root: Path = ROOT) -> None:
        self.root = root
        self.names = [lab.router.vm, *(t.vm for t in lab.tenants.values())]
        self.ssh_config = hosts.RUN / lab.name / "ssh-config"
        self._nodes: dict[str, VagrantNode] | None = None
        self._lock = threading.Lock()  # two `vagrant ssh-config` at once: one fails (machine lock)

    def _created_here(self) -> bool:
        """Cheap first look (no Vagrant start-up): Vagrant records each created machine's id."""
        return any((self.root / ".vagrant/machines" / n / "libvirt/id").exists() for n in self.names)

    def states(self) -> dict[str, str]:
        """VM -> Vagrant's state (running, shutoff, not_created, ...), from python-vagrant."""
        if not self._created_here():
            return {n: "not_created" for n in self.names}
        import vagrant

        v = vagrant.Vagrant(root=str(self.root), quiet_stdout=True, quiet_stderr=True)
        for attempt in range(6):
            try:
                return {s.name: s.state for s in v.status() if s.name in self.names}
            except subprocess.CalledProcessError:
                # Another vagrant command holds a machine's lock (e.g. a second task at once).
                if attempt == 5:
                    raise RuntimeError(f"`vagrant status` keeps failing in {self.root} (another "
                                       "vagrant command running?)") from None
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def exist(self) -> bool:
        return any(s != "not_created" for s in self.states().values())

    def nodes(self) -> dict[str, VagrantNode]:
        with self._lock:
            if self._nodes is None:
                nodes = nodes_from_vagrant(self.root, self.names, self.ssh_config)
                parallel(VagrantNode.login_as_root, nodes.values())  # where provisioning allowed it
                self._nodes = nodes
            return self._nodes


class VagrantLab:
    """The lab on Vagrant VMs; the containers are LXD's in the tenant VMs (pylxd over HTTPS)."""

    driver = "lxd"

    def __init__(self, lab: model.Lab, root: Path = ROOT, driver: str | None = None) -> None:
        self.driver = driver or specs.spec(lab).driver  # the Vagrantfile's answer: kvm or qemu
        lab = lab.model_copy(update={"containers": lab.containers.model_copy(update={"driver": "lxd"})})
        # Under TCG the seed's 1 s VRRP checks starve: the lab's timing for emulated VMs.
        self.lab = lab.emulated() if self.driver == "qemu" else lab
        self.probe_interval = 0.2 if self.driver == "qemu" else 0.05  # the drills' probes (s)
        self.form = FORMS["vagrant"]
        self.vms = VagrantVms(self.lab, root)
        self.host = hosts.Host(self.lab)
        self.cert = ClientCert(hosts.KEEP / self.lab.name)  # goes with `invoke host.down`
        self._lxd: dict[str, TenantVmLxd] = {}

    # -- nodes ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.vms.exist()

    def is_up(self) -> bool:
        states = self.vms.states()
        return bool(states) and all(s == "running" for s in states.values())

    def names(self) -> list[str]:
        # the lab's Internet is a node with the simulated upstream only (`nat`: the real one)
        internet = [] if self.host.upstream() == "nat" else ["internet"]
        return [*internet, *(n.name for n in self.lab.nodes())]

    def node(self, name: str) -> Node:
        if name == "internet":  # the simulated upstream, a namespace of this host
            return self.host.internet_node()
        spec = self.lab.node(name)
        if spec.is_container:
            return self.lxd(spec.tenant).node(name)
        return self.vms.nodes()[name]

    def lxd(self, tenant: str) -> TenantVmLxd:
        if tenant not in self._lxd:
            vm = self.vms.nodes()[self.lab.tenants[tenant].vm]
            self._lxd[tenant] = TenantVmLxd(self.lab, tenant, vm, self.cert.ensure())
        return self._lxd[tenant]

    # -- provision --------------------------------------------------------------------------

    def provision(self, progress: Progress = _quiet, timeout: float = 300) -> float:
        """Converge the VMs and containers to the lab description; returns the seconds it took."""
        t = Timer(time.monotonic())
        if not self.is_up():
            raise RuntimeError(f"the VMs are not all running ({self.vms.states()}): `vagrant up` first")
        files = render(self.lab, self.form)

        def as_root(vm: VagrantNode) -> None:
            vm.authorize_root()
            if not vm.login_as_root():
                raise RuntimeError(f"{vm.name}: root login refused after authorizing the key")

        parallel(as_root, self.vms.nodes().values())  # once, before the threads

        def prov(name: str) -> None:
            self._provision(self.lab.node(name), files[name], progress, t)

        def tenant(name: str) -> None:
            tn = self.lab.tenants[name]
            prov(tn.vm)  # sw-vlan7 exists before LXD's profile uses it
            self.lxd(name).up(lambda m: progress(f"[{t}]   {m}"))
            prov(tn.dhcp_server.name)

        progress(f"[{t}] {', '.join(self.vms.names)} (and each tenant's LXD)")
        parallel(lambda job: job(), [lambda: prov(self.lab.router.vm),
                                     *(lambda n=n: tenant(n) for n in self.lab.tenants)])
        wait_until(lambda: dhcp_problems(self.lab, self.node), timeout, "the DHCP failover pair", pause=1)
        parallel(prov, [n.name for n in self.lab.nodes() if n.role == "client"])
        progress(f"[{t}] waiting for convergence")
        wait_until(self.problems, timeout, "the lab", pause=1)
        progress(f"[{t}] converged")
        return t.elapsed

    def _provision(self, spec: model.Node, files: dict[str, File], progress: Progress, t: Timer) -> None:
        node = self.node(spec.name)
        if not spec.is_container:
            node.run(["systemctl", "start", *VM_UNITS], timeout=300)
        target = provision.Target(self.lab, spec, node, files)
        actions = provision.apply(target)
        progress(f"[{t}] {spec.name}: {', '.join(actions) if actions else 'unchanged'}")

    # -- convergence -------------------------------------------------------------------------

    def problems(self) -> list[str]:
        from lab.state import convergence_problems

        return convergence_problems(self)

    def wait(self, timeout: float, progress: Progress = _quiet) -> None:
        wait_until(self.problems, timeout, "the lab", pause=1)
