"""What the Vagrantfile needs, from the lab description: `python -m lab.vagrant.spec` prints it
as JSON, and the Ruby Vagrantfile only consumes it, so nothing is written twice.

The names of what the host holds for the VMs (the OVS bridge, the libvirt networks and their
portgroups) are made here too; lab/vagrant/host/ creates them from the same `Spec`.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import asdict, dataclass, field
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path

from lab import model
from lab.host.names import ifname
from lab.topology import Link, Topology
from lab.vagrant import access, kvm, state
from lab.vagrant import box as boxes

# Vagrant's own host-only network (SSH from the host): isolated, no NAT, no route to the lab.
MGMT_SUBNET = IPv4Network("192.168.121.0/24")
MGMT_FIRST_VM = 10  # the VMs' fixed management addresses: .10 + their number (sshd listens there)


@dataclass(frozen=True)
class Nic:
    """A lab NIC of a VM: on the dsw-host network, in one of its portgroups."""

    name: str  # inside the VM (lab.yaml's `nic`, the seed's enp0s6)
    mac: str
    network: str  # libvirt network
    portgroup: str
    vlans: tuple[int, ...]  # carried by the port: one = access port, several = trunk
    mtu: int


@dataclass(frozen=True)
class Vm:
    name: str
    memory: int  # MiB
    cpus: int
    nics: tuple[Nic, ...]
    cmdline: str  # direct kernel boot
    serial_log: str
    mgmt_mac: str  # its management NIC: a fixed MAC, so that DHCP gives it a fixed address
    mgmt_address: str


@dataclass(frozen=True)
class Network:
    """An OVS-backed libvirt network on the host's bridge, with a portgroup per VLAN set."""

    name: str
    bridge: str
    mtu: int
    portgroups: dict[str, tuple[int, ...]]  # name -> VLANs (one: access; more: trunk)


@dataclass(frozen=True)
class Management:
    name: str
    subnet: str  # the host holds .1 (Vagrant's SSH), VMs get leases; nothing is forwarded
    bridge: str  # on the host (named by us: libvirt's files for it carry its name)


@dataclass(frozen=True)
class Spec:
    lab: str
    driver: str  # libvirt domain type: kvm or qemu
    cpu_mode: str
    box: dict
    management: Management
    switch: Network
    upstream_vlan: int
    domain_prefix: str  # libvirt domains are PREFIX + VM name
    ssh_key: str | None  # the lab's private key (host.up makes it)
    serial_dir: str
    not_ready: str | None  # why `vagrant up` cannot make the VMs yet (None: it can)
    vms: tuple[Vm, ...] = field(default=())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def mac(lab: model.Lab, index: int) -> str:
    """The MAC of the index-th VM's lab NIC: the seed's switch MAC prefix + the VM's number."""
    return f"{lab.switch.mac_prefix}:{index >> 8:02x}:{index & 0xff:02x}"


def portgroup(link: Link) -> str:
    """The libvirt portgroup of a VM's link: the trunk, or its one VLAN's."""
    return "trunk" if link.trunk else f"vlan{link.vlans[0]}"


def switch_network(lab: model.Lab) -> Network:
    links = Topology(lab).vm_links()
    return Network(f"{lab.name}-{lab.switch.name}", lab.switch.name,
                   lab.shared_vlan.vxlan.underlay_mtu, {portgroup(lk): lk.vlans for lk in links})


def management(lab: model.Lab) -> Management:
    return Management(f"{lab.name}-mgmt", str(MGMT_SUBNET), ifname(f"vxm-{lab.name}"))


def domain_prefix(lab: model.Lab) -> str:
    return f"{lab.name}_"


def domains(lab: model.Lab) -> list[str]:
    """The libvirt domains `vagrant up` makes for the lab's VMs (vagrant-libvirt's names)."""
    return [f"{domain_prefix(lab)}{vm}" for vm in (lab.router.vm, *(t.vm for t in lab.tenants.values()))]


def lab_nic(lab: model.Lab, vm: str) -> tuple[str, str]:
    """(libvirt domain, MAC) of a VM's lab NIC, as vms() gives them."""
    for i, lk in enumerate(Topology(lab).vm_links(), start=1):
        if lk.node == vm:
            return f"{domain_prefix(lab)}{vm}", mac(lab, i)
    raise ValueError(f"{vm} is no VM of lab {lab.name!r}")


def mgmt_host_address(lab: model.Lab) -> IPv4Interface:
    return IPv4Interface(f"{next(MGMT_SUBNET.hosts())}/{MGMT_SUBNET.prefixlen}")


def mgmt_mac(index: int) -> str:
    return f"52:54:00:ff:{index >> 8:02x}:{index & 0xff:02x}"


def mgmt_address(index: int) -> str:
    return str(MGMT_SUBNET.network_address + MGMT_FIRST_VM + index)


def serial_dir(lab: model.Lab) -> Path:
    """The VMs' serial logs (QEMU writes them as root): a private dir of the lab's, made by host.up."""
    return state.RUN / lab.name / "serial"


def vms(lab: model.Lab) -> tuple[Vm, ...]:
    net = switch_network(lab)
    resources = {lab.router.vm: lab.router.resources, **{t.vm: t.resources for t in lab.tenants.values()}}
    key = access.public_key(lab.name)
    out = []
    for i, lk in enumerate(Topology(lab).vm_links(), start=1):
        name, res = lk.node, resources[lk.node]
        n = Nic(lk.nic, mac(lab, i), net.name, portgroup(lk), lk.vlans, lk.mtu)
        # systemd.hostname: Vagrant's hostname capability costs ~20 s per VM under TCG.
        # vxlab.ifname: the box names the NIC by MAC; vxlab.mgmt: sshd listens there only;
        # vxlab.sshkey: the lab's public key, the only one let in (lab/vagrant/box.py).
        cmdline = (f"root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.hostname={name} "
                   f"vxlab.ifname={n.name}:{n.mac} vxlab.mgmt={mgmt_address(i)}"
                   + (f" vxlab.sshkey={key}" if key else ""))
        out.append(Vm(name, res.memory, res.cpus, (n,), cmdline, str(serial_dir(lab) / f"serial-{name}.log"),
                      mgmt_mac(i), mgmt_address(i)))
    return tuple(out)


def not_ready(lab: model.Lab) -> str | None:
    """Why `vagrant up` cannot make the lab's VMs yet: what host.up makes is missing or wrong."""
    if access.public_key(lab.name) is None:
        return f"the lab's SSH key ({access.key_path(lab.name)}) is not made"
    d = serial_dir(lab)
    if not (d.exists() or d.is_symlink()):
        return f"the directory of the VMs' serial logs ({d}) is not made"
    try:
        state.private_dir(d)  # exists: only checked
    except RuntimeError as e:
        return str(e)
    return None


def box_info(box: boxes.Box | None) -> dict:
    if box is None:
        return {"name": None, "url": None, "kernel": None, "initrd": None, "built": False}
    return {"name": box.name, "url": box.file.as_uri(), "kernel": str(box.kernel),
            "initrd": str(box.initrd), "built": box.exists()}


def spec(lab: model.Lab, box: boxes.Box | None = None, driver: str | None = None) -> Spec:
    box = box if box is not None else boxes.current()
    kernel = box.kernel if box is not None and box.exists() else None
    driver = driver or kvm.driver(kernel)
    return Spec(
        lab=lab.name,
        driver=driver,
        # KVM: the host's CPU; TCG: a plain model every QEMU emulates
        cpu_mode="host-passthrough" if driver == "kvm" else "custom",
        box=box_info(box),
        management=management(lab),
        switch=switch_network(lab),
        upstream_vlan=lab.router.uplink.vlan,
        domain_prefix=domain_prefix(lab),
        ssh_key=str(access.key_path(lab.name)) if access.public_key(lab.name) else None,
        serial_dir=str(serial_dir(lab)),
        not_ready=not_ready(lab),
        vms=vms(lab),
    )


def overrides_from(env) -> list[str]:
    """The `--set` changes the tasks were given, as the Vagrantfile's environment carries them:
    VXLAB_SET="name=alice 'tenants.blue.clients=[blueC0, blueC1]'" (shell words)."""
    return shlex.split(env.get("VXLAB_SET", ""))


def main(argv: list[str]) -> int:
    lab_file = os.environ.get("VXLAB_LAB") or (argv[0] if argv else model.DEFAULT_LAB)
    try:
        lab = model.load(lab_file, overrides_from(os.environ))
    except model.LabError as e:
        print(f"invalid lab description:\n{e}", file=sys.stderr)
        return 2
    try:
        print(spec(lab).to_json())
    except RuntimeError as e:  # e.g. the lab's state on the host is not what host.up made
        print(f"vxlab: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
