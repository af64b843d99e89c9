"""The host's side of the Vagrant lab: L2 plumbing only, and its exact undo.

`prepare()` makes, idempotently: the host's Open vSwitch (ovs.py) with the seed's switch
`dsw-host`; libvirtd and its helpers, the libvirt networks the Vagrantfile names (an isolated
management network for Vagrant's SSH, and `dsw-host` with a portgroup per VLAN set) and the
storage pool vagrant-libvirt uses (libvirt.py); the upstream on VLAN 214 of dsw-host, one of
UPSTREAMS (upstream.py); then the seal (seal.py); and the lab's SSH key (lab.vagrant.access).
Each thing is recorded by name in the lab's Ledger before it is made (undo.py), with what
`vagrant up` will make for the lab (its domains, their disks, the box's volume); `cleanup()`
removes what the Ledger names, restores every file it changed, and touches nothing else.
One lab's host side at a time: two would share Open vSwitch's socket and the management subnet.

With `hosts:` (several hypervisors), each host's dsw-host is stitched to the others' (stitch.py):
this host's side is made after Open vSwitch starts and recorded like the rest; on a host reached
over SSH, `prepare_switch()` makes Open vSwitch, dsw-host and the stitch only (lab/vagrant/hosts.py).

Sealed with `simulated`: no lab address on the host (its only address is the management
network's .1, which Vagrant's SSH needs; that network forwards nothing), no forwarding, no
sysctl changed. `nat` is the one exception, chosen by the user: the host holds the lab's
Internet gateway addresses on the NAT bridge, forwards and NATs; the forwarding sysctls are
recorded before and restored by `cleanup()`.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable

from lab import model
from lab.substrate.netns import NetnsNode, link_exists
from lab.vagrant import access, state
from lab.vagrant import spec as specs
from lab.vagrant.host import libvirt, stitch
from lab.vagrant.host.libvirt import VIRSH, Libvirt
from lab.vagrant.host.ovs import OVS_RUN, Ovs
from lab.vagrant.host.seal import SealTable
from lab.vagrant.host.undo import Backups, Facts, Ledger, add_path, remove_paths
from lab.vagrant.host.upstream import Upstreams

__all__ = ["UPSTREAMS", "VIRSH", "Host", "cleanup", "prepare"]

UPSTREAMS = ("simulated", "nat")
LIBVIRT_OBJECTS = ("domain", "volume", "box-volumes", "pool", "network")
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Host:
    """The host plumbing of one lab's VMs (names from lab.vagrant.spec)."""

    def __init__(self, lab: model.Lab, progress: Progress = _quiet, host: str | None = None) -> None:
        self.lab = lab
        self.host = host or lab.local_host()  # its name in `hosts:` (None: the lab has none)
        stitched = len(lab.hosts or {}) > 1 and self.host is not None  # None: every host is remote
        self.stitch = stitch.plan(lab, self.host) if stitched else None
        self.say = progress
        self.run = state.RUN / lab.name  # pid files, OVS database, serial logs
        self.keep = state.KEEP / lab.name
        self.backups = Backups(self.keep / "backup")
        self.facts = Facts(self.keep / "facts.json")  # what the host was like before us
        self.ledger = Ledger(self.keep / "ledger.json")  # what we made, by name
        self.switch = specs.switch_network(lab)
        say = self._say
        self.ovs = Ovs(self.run, self.switch.bridge, self.switch.mtu)
        self.libvirt = Libvirt(lab, self.run, self.backups, self.ledger, say)
        self.upstreams = Upstreams(lab, self.run, self.ovs, self.libvirt, self.ledger, say)
        self.seal_table = SealTable(f"vxlab_host_{lab.name}", self.ovs, self.ledger,
                                    (self.stitch.nic,) if self.stitch else ())

    def _say(self, text: str) -> None:
        self.say(text)  # the parts' progress: through self.say as it is when they speak

    def upstream(self) -> str | None:
        """The upstream prepare() made (None before it ran)."""
        return self.facts.load().get("upstream", "simulated") if self.facts.recorded() else None

    def _record_facts(self, upstream: str) -> None:
        """Once, before we change anything: what exists already and must stay."""
        if self.facts.recorded():
            return
        facts = {"chains": libvirt.chains(), "nft_tables": libvirt.nft_tables(), "upstream": upstream}
        if upstream == "nat":  # before libvirt turns them on
            facts["forwarding"] = self.upstreams.forwarding()
        self.facts.record(facts)

    # -- prepare --------------------------------------------------------------------------

    def prepare(self, driver: str = "qemu", upstream: str = "simulated") -> None:
        """Make everything the Vagrantfile expects on the host; safe to run again."""
        if upstream not in UPSTREAMS:
            raise ValueError(f"upstream must be one of {', '.join(UPSTREAMS)}, not {upstream!r}")
        made = self.upstream()
        if made not in (None, upstream):
            raise RuntimeError(f"this host has the {made} upstream: `invoke host.down` before "
                               f"switching to {upstream}")
        others = self.others()
        if others:
            raise RuntimeError(f"the host side of lab {', '.join(others)} is up here: one Vagrant "
                               "lab at a time (they would share Open vSwitch's socket and the "
                               "management subnet); `invoke host.down` with its lab file first")
        state.run_dir(self.lab.name, "serial")  # private (0700): QEMU writes the serial logs as root
        state.keep_dir(self.lab.name)
        self._record_facts(upstream)
        access.ensure_key(self.lab.name)
        self.libvirt.qemu_conf(driver)
        self.libvirt.no_autostart()
        self._switch()
        self.libvirt.start()
        self.libvirt.networks(self.libvirt.network_xml())
        self.libvirt.pool()
        self.libvirt.expect_vms()
        if upstream == "nat":
            self.upstreams.nat()
        else:
            self.upstreams.simulated()
        self.seal()
        where = self.upstreams.nat_net if upstream == "nat" else self.upstreams.ns
        self.say(f"host ready: OVS bridge {self.switch.bridge}, libvirt networks "
                 f"{self.libvirt.mgmt.name} and {self.switch.name}, {upstream} upstream {where}")

    def _switch(self) -> None:
        add_path(self.ledger, OVS_RUN, tree=True)  # its sockets, if ours make it
        self.ovs.start()
        if self.stitch:
            self.ledger.add("stitch", self.stitch.host)
            stitch.apply(self.ovs, self.stitch)
            self.say(f"{self.stitch.switch} stitched to {', '.join(p.name for p in self.stitch.peers)} "
                     f"from {self.stitch.endpoint} on {self.stitch.nic}")

    def prepare_switch(self) -> None:
        """On a host reached over SSH: Open vSwitch, dsw-host and the stitch (what every host
        needs to carry the lab's VLANs between hosts); safe to run again."""
        others = self.others()
        if others:
            raise RuntimeError(f"the host side of lab {', '.join(others)} is up here: one Vagrant "
                               "lab at a time")
        state.run_dir(self.lab.name)
        state.keep_dir(self.lab.name)
        if not self.facts.recorded():
            self.facts.record({"upstream": None, "switch_only": True})
        self._switch()
        self.seal()
        self.say(f"host {self.host} ready: OVS bridge {self.switch.bridge}")

    def others(self) -> list[str]:
        """The other labs whose host side is up here (by their records)."""
        if not state.KEEP.is_dir():
            return []
        return sorted(d.name for d in state.KEEP.iterdir()
                      if d.name != self.lab.name and (d / "facts.json").exists())

    def seal(self) -> list[str]:
        """Seal the switch's ports off the host's stack (seal.py); the ports sealed. Run it
        again after `vagrant up` has made the VMs' taps."""
        return self.seal_table.apply()

    def internet_node(self) -> NetnsNode:
        if self.upstream() == "nat":
            raise RuntimeError("the nat upstream has no lab Internet node: drills need the "
                               "simulated upstream (`invoke host.down`, then `invoke host.up`)")
        return self.upstreams.node()

    # -- cleanup --------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Undo prepare() (and what `vagrant up` left in libvirt for the lab): what the Ledger
        names, also after an interrupted prepare or up. Returns what was removed. A step that
        fails does not stop the later ones that do not depend on it; the failures are raised
        together at the end, with the records kept for the next host.down."""
        done: list[str] = []
        failed: list[str] = []
        facts = self.facts.load()
        up = self.upstreams
        if "ovs_run_existed" in facts:  # written by a vxlab before the Ledger: it names nothing
            raise RuntimeError(f"lab {self.lab.name}'s host side was made by an older vxlab "
                               f"({self.keep} has no record by name): host.down with that version")

        def step(what: str, fn: Callable[[], list[str] | None]) -> None:
            try:
                done.extend(fn() or [])
            except Exception as e:  # whatever it was, the later steps still run; said at the end
                failed.append(f"{what}: {e}")

        if any(self.ledger.entries(kind) for kind in LIBVIRT_OBJECTS):
            step("libvirt objects", self._remove_libvirt_objects)
        step("libvirt daemons", self._stop_libvirt)
        step("upstream ports", up.remove_links)
        step("upstream namespace", up.remove_namespace)
        step("forwarding", lambda: up.restore_forwarding(facts.get("forwarding")))
        if self.ledger.entries("stitch"):
            step("stitch", self._unstitch)
        step("OVS bridge", self.ovs.remove_bridge)
        step("OVS daemons", self.ovs.stop)
        step("seal", self.seal_table.remove)
        if not self.libvirt.ours():  # else libvirtd still runs: its chains and files stay
            if self.ledger.get("daemon", "libvirtd"):
                step("libvirt chains", lambda: libvirt.remove_chains(facts.get("chains", [])))
                step("iptables tables", lambda: libvirt.remove_tables(facts.get("nft_tables")))
            step("files", lambda: remove_paths(self.ledger))
            step("backups", self.backups.restore_all)
        if failed:  # keep the records: a later host.down needs them to finish the job
            raise RuntimeError("host clean-up incomplete (run `invoke host.down` again):\n  "
                               + "\n  ".join(failed) + "\nremoved: " + ", ".join(done))
        shutil.rmtree(self.run, ignore_errors=True)  # pid files, OVS database, serial logs
        shutil.rmtree(self.keep, ignore_errors=True)  # records, keys, known hosts, certificates
        for d in (state.RUN, state.KEEP):
            with contextlib.suppress(OSError):
                d.rmdir()
        return done

    def _remove_libvirt_objects(self) -> list[str]:
        if not self.libvirt.up():
            if not self.ledger.get("daemon", "libvirtd"):
                raise RuntimeError("libvirtd does not answer: the lab's domains, volumes and "
                                   "networks cannot be removed (start it, then host.down again)")
            self.libvirt.start()  # ours, and died: again, to remove what the lab made there
        return [*self.libvirt.remove_vms(), *self.libvirt.remove_pool(), *self.libvirt.remove_networks()]

    def _unstitch(self) -> list[str]:
        # (If the lab's hosts: changed since, its bridges go with Open vSwitch's below.)
        done = stitch.remove(self.ovs, self.stitch) if self.stitch and self.ovs.ovsdb.pid() else []
        for name in self.ledger.names("stitch"):
            self.ledger.drop("stitch", name)
        return done

    def _stop_libvirt(self) -> list[str]:
        others = self.libvirt.serving_others()
        if others:
            raise RuntimeError(f"libvirtd, which host.up started, runs what the lab did not make "
                               f"({', '.join(others)}): left running, with its files; stop those, "
                               "then host.down again")
        return self.libvirt.stop()

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "daemons": {d.name: d.pid() for d in (*self.ovs.daemons, *self.libvirt.daemons)},
            "bridge": self.ovs.bridge_exists(),
            "networks": self.libvirt.names("net-list", "--name") if self.libvirt.up() else [],
            "upstream": self.upstream() if link_exists(None, self.upstreams.port) else None,
        }


def prepare(lab: model.Lab, progress: Progress = print, driver: str | None = None,
            upstream: str = "simulated") -> Host:
    host = Host(lab, progress)
    host.prepare(driver or specs.spec(lab).driver, upstream)
    return host


def cleanup(lab: model.Lab, progress: Progress = print) -> list[str]:
    return Host(lab, progress).cleanup()
