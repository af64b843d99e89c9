"""The Vagrant lab: the seed's three VMs (Vagrant + libvirt), their LXD containers, and the
host's simulated upstream: a `Runtime`, made by lab/lifecycle.py as the embedded lab is.

    provision: VMs side by side (router; each tenant: its VM, then its LXD and containers,
               then its DHCP server) -> the DHCP failover pair normal -> clients -> converged
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path
from xml.etree import ElementTree

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_incrementing

from lab import checks, model
from lab.deployment import Deployment
from lab.host.lock import exclusive
from lab.host.run import sh
from lab.pool import parallel
from lab.render import File
from lab.roles import Target
from lab.substrate.base import Node, Progress
from lab.substrate.vagrant import VagrantNode, nodes_from_vagrant
from lab.topology import INTERNET
from lab.vagrant import access, state
from lab.vagrant import host as hosts
from lab.vagrant import spec as specs
from lab.vagrant.host.libvirt import VIRSH
from lab.vagrant.lxd import ClientCert, TenantVmLxd

# The VMs' own daemons the recipes rely on (the seed's OVS stanzas need ovs-vswitchd). Under
# emulation on a busy host they may have missed their start timeout at boot: started here.
VM_UNITS = ("openvswitch-switch.service",)
ROOT = Path(__file__).resolve().parent.parent.parent  # the Vagrantfile's directory


class VagrantVms:
    """This directory's Vagrant VMs of one lab: do they exist, and SSH nodes for them."""

    def __init__(self, lab: model.Lab, root: Path = ROOT) -> None:
        self.root = root
        self.lab_name = lab.name
        self.names = [lab.router.vm, *(t.vm for t in lab.tenants.values())]
        self.ssh_config = state.RUN / lab.name / "ssh-config"
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
        # Another vagrant command may hold a machine's lock (e.g. a second task at once).
        retrying = Retrying(retry=retry_if_exception_type(subprocess.CalledProcessError),
                            stop=stop_after_attempt(6), wait=wait_incrementing(start=1, increment=1))
        try:
            return retrying(lambda: {s.name: s.state for s in v.status() if s.name in self.names})
        except RetryError:
            raise RuntimeError(f"`vagrant status` keeps failing in {self.root} (another "
                               "vagrant command running?)") from None

    def exist(self) -> bool:
        return any(s != "not_created" for s in self.states().values())

    def nodes(self) -> dict[str, VagrantNode]:
        with self._lock:
            if self._nodes is None:
                state.run_dir(self.lab_name)
                state.keep_dir(self.lab_name, "ssh")  # the VMs' host keys, recorded at first contact
                nodes = nodes_from_vagrant(self.root, self.names, self.ssh_config,
                                           lambda vm: access.known_hosts(self.lab_name, vm))
                parallel(VagrantNode.login_as_root, nodes.values())  # where provisioning allowed it
                self._nodes = nodes
            return self._nodes


class VagrantLab:
    """The lab on Vagrant VMs (a `Runtime`); the containers are LXD's in the tenant VMs (pylxd
    over HTTPS)."""

    poll = 1.0  # a read of the lab costs seconds of the VMs' CPU
    timeout = 300.0  # emulated VMs are slow

    def __init__(self, lab: model.Lab, root: Path = ROOT, libvirt_driver: str | None = None) -> None:
        self.libvirt_driver = libvirt_driver or specs.spec(lab).driver  # the Vagrantfile's: kvm or qemu
        self.lab = lab
        # Under TCG the seed's 1 s VRRP checks starve: the lab's timing for emulated VMs.
        self.deployment = Deployment.of(lab, "vagrant", "lxd", emulated=self.libvirt_driver == "qemu")
        self.vms = VagrantVms(lab, root)
        self.host = hosts.Host(lab)
        self.cert = ClientCert(lab.name)  # goes with `invoke host.down`
        self._lxd: dict[str, TenantVmLxd] = {}

    @property
    def driver(self) -> str:
        return self.deployment.driver

    # -- nodes ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.vms.exist()

    def is_up(self) -> bool:
        states = self.vms.states()
        return bool(states) and all(s == "running" for s in states.values())

    def names(self) -> list[str]:
        # the lab's Internet is a node with the simulated upstream only (`nat`: the real one)
        internet = [] if self.host.upstream() == "nat" else [INTERNET]
        return [*internet, *(n.name for n in self.lab.nodes())]

    def node(self, name: str) -> Node:
        if name == INTERNET:  # the simulated upstream, a namespace of this host
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

    # -- the lifecycle's steps ----------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return exclusive(state.run_dir(self.lab.name) / "provision.lock",
                         f"provisioning of lab {self.lab.name!r}")

    def machines(self, progress: Progress) -> None:
        if not self.is_up():
            raise RuntimeError(f"the VMs are not all running ({self.vms.states()}): `vagrant up` first")
        sealed = self.host.seal()  # the VMs' new ports on the host switch
        progress(f"host: sealed {len(sealed)} port(s) of {self.host.switch.bridge}")

        def as_root(vm: VagrantNode) -> None:
            vm.authorize_root()
            if not vm.login_as_root():
                raise RuntimeError(f"{vm.name}: root login refused after authorizing the key")

        parallel(as_root, self.vms.nodes().values())
        progress(f"{', '.join(self.vms.names)} (and each tenant's LXD)")

    def target(self, spec: model.Node, files: dict[str, File]) -> Target:
        node = self.node(spec.name)
        if not spec.is_container:
            node.run(["systemctl", "start", *VM_UNITS], timeout=300)
        return Target(self.lab, spec, node, files)

    def containers(self, tenant: str, progress: Progress) -> None:
        self.lxd(tenant).up(progress)

    def carrier(self, machine: str, up: bool) -> None:
        # QEMU's link state of the VM's lab NIC, set in its monitor: the guest's virtio NIC
        # loses its carrier. Not `virsh domif-setlink`: it plugs the Open vSwitch port again
        # through the Linux bridge API ("Unable to add bridge dsw-host port vnet5").
        domain, mac = specs.lab_nic(self.lab, machine)
        alias = nic_alias(sh([*VIRSH, "dumpxml", domain], timeout=60).out, mac)
        said = sh([*VIRSH, "qemu-monitor-command", domain, "--hmp",
                   f"set_link {alias} {'on' if up else 'off'}"], timeout=60).out.strip()
        if said:  # set_link says nothing when it did it
            raise RuntimeError(f"{machine}: QEMU did not set {alias}'s link {'up' if up else 'down'}: {said}")

    def problems(self) -> list[str]:
        return checks.problems(checks.converged(self.lab, self.node), self.node)

    def down(self, progress: Progress) -> list[str]:
        raise RuntimeError("the VMs go with `vagrant destroy -f`, then `invoke host.down`")


def nic_alias(domain_xml: str, mac: str) -> str:
    """The device name libvirt gave the domain's NIC of this MAC (QEMU's id for it: net0, ...)."""
    for nic in ElementTree.fromstring(domain_xml).iter("interface"):
        found, alias = nic.find("mac"), nic.find("alias")
        if found is not None and alias is not None and found.get("address", "").lower() == mac.lower():
            return alias.get("name", "")
    raise RuntimeError(f"the running domain has no NIC with MAC {mac}")
