"""The host's side of the Vagrant lab: L2 plumbing only, and its exact undo.

`prepare()` makes, idempotently: the host's Open vSwitch (ovs.py) with the seed's switch
`dsw-host`; libvirtd and its helpers, and the libvirt networks the Vagrantfile names: an
isolated management network for Vagrant's SSH, and `dsw-host` with a portgroup per VLAN set
(libvirt.py); the upstream on VLAN 214 of dsw-host, one of UPSTREAMS (upstream.py); then the
seal (seal.py). `cleanup()` removes all of it, restores every file it changed (undo.py), and
touches nothing else.

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
from pathlib import Path

from lab import model
from lab.substrate.netns import NetnsNode, link_exists
from lab.vagrant import spec as specs
from lab.vagrant.host import libvirt
from lab.vagrant.host.libvirt import VIRSH, Libvirt
from lab.vagrant.host.ovs import Ovs
from lab.vagrant.host.seal import SealTable
from lab.vagrant.host.undo import Backups, Facts, Footprint
from lab.vagrant.host.upstream import Upstreams, del_links

__all__ = ["KEEP", "RUN", "UPSTREAMS", "VIRSH", "Host", "cleanup", "prepare"]

RUN = Path("/run/vxlab-host")  # pid files, OVS database, logs: gone with the host's boot
KEEP = Path("/var/lib/vxlab-host")  # backups of the files we change: they outlive a reboot
UPSTREAMS = ("simulated", "nat")
Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Host:
    """The host plumbing of one lab's VMs (names from lab.vagrant.spec)."""

    def __init__(self, lab: model.Lab, progress: Progress = _quiet) -> None:
        self.lab = lab
        self.say = progress
        self.run = RUN / lab.name
        keep = KEEP / lab.name
        self.backups = Backups(keep / "backup")
        self.facts = Facts(keep / "facts.json")  # what the host was like before us
        self.footprint = Footprint(keep / "libvirt")
        self.switch = specs.switch_network(lab)
        say = self._say
        self.ovs = Ovs(self.run, self.switch.bridge, self.switch.mtu)
        self.libvirt = Libvirt(lab, self.run, self.backups, say)
        self.upstreams = Upstreams(lab, self.run, self.ovs, self.libvirt, say)
        self.seal_table = SealTable(f"vxlab_host_{lab.name}", self.ovs)

    def _say(self, text: str) -> None:
        self.say(text)  # the parts' progress: through self.say as it is when they speak

    def upstream(self) -> str | None:
        """The upstream prepare() made (None before it ran)."""
        return self.facts.load().get("upstream", "simulated") if self.facts.recorded() else None

    def _record_facts(self, upstream: str) -> None:
        """Once, before we change anything: what exists already and must stay."""
        if self.facts.recorded():
            return
        facts = {"chains": libvirt.chains(), "nft_tables": libvirt.nft_tables(),
                 "ovs_run_existed": self.ovs.run_dir_exists(),
                 "storage_pools": self.libvirt.pools() if self.libvirt.up() else None,
                 "upstream": upstream}
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
        self.run.mkdir(parents=True, exist_ok=True)
        self._record_facts(upstream)
        if not self.libvirt.up():  # we shall start libvirtd: everything it writes is ours
            self.footprint.record()
        self.libvirt.qemu_conf(driver)
        self.libvirt.no_autostart()
        self.ovs.start()
        self.libvirt.start()
        if self.facts.load().get("storage_pools") is None:  # libvirt was not up when facts were taken
            self.facts.add(storage_pools=self.libvirt.pools())
        self.libvirt.networks(self.libvirt.network_xml())
        if upstream == "nat":
            self.upstreams.nat()
        else:
            self.upstreams.simulated()
        self.seal()
        where = self.upstreams.nat_net if upstream == "nat" else self.upstreams.ns
        self.say(f"host ready: OVS bridge {self.switch.bridge}, libvirt networks "
                 f"{self.libvirt.mgmt.name} and {self.switch.name}, {upstream} upstream {where}")

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
        """Undo prepare() (and what `vagrant up` left in libvirt): everything, also after an
        interrupted prepare or up. Returns what was removed. A step that fails does not stop
        the later ones (each is independent of the others' success); the failures are raised
        together at the end, so one never leaves the rest of the host prepared."""
        done: list[str] = []
        failed: list[str] = []
        facts = self.facts.load()
        up = self.upstreams

        def step(what: str, fn: Callable[[], list[str] | None]) -> None:
            try:
                done.extend(fn() or [])
            except Exception as e:  # whatever it was, the later steps still run; said at the end
                failed.append(f"{what}: {e}")

        networks = (self.switch.name, self.libvirt.mgmt.name, up.nat_net)
        pools_before = facts.get("storage_pools") or []
        step("libvirt objects", lambda: self.libvirt.remove_objects(networks, pools_before)
             if self.libvirt.up() else [])
        step("libvirt daemons", self.libvirt.stop)
        # The upstream's host ends first: deleting a veth takes its peer at once, whereas a
        # deleted namespace's links go later, asynchronously (the host's end can vanish
        # between a check and a delete: 2 in 30 on an idle host).
        step("upstream ports", lambda: del_links(up.port, up.nat_port))
        step("upstream namespace", up.remove_namespace)
        step("nat bridge", lambda: del_links(up.nat_bridge))  # if libvirtd died before net-destroy
        step("forwarding", lambda: up.restore_forwarding(facts.get("forwarding")))
        step("OVS bridge", self.ovs.remove_bridge)
        step("OVS daemons", lambda: self.ovs.stop(facts.get("ovs_run_existed", True)))
        step("seal", self.seal_table.remove)
        step("libvirt chains", lambda: libvirt.remove_chains(facts.get("chains", [])))
        step("iptables tables", lambda: libvirt.remove_tables(facts.get("nft_tables")))
        step("backups", lambda: [f"restored {p}" for p in self.backups.restore_all()])
        if not self.libvirt.ours():
            step("libvirt files", self.footprint.undo)
        if failed:  # keep the records: a later host.down needs them to finish the job
            raise RuntimeError("host clean-up incomplete (run `invoke host.down` again):\n  "
                               + "\n  ".join(failed) + "\nremoved: " + ", ".join(done))
        with contextlib.suppress(OSError):
            shutil.rmtree(specs.RUN_DIR)  # the VMs' serial logs
        shutil.rmtree(self.run, ignore_errors=True)
        shutil.rmtree(KEEP / self.lab.name, ignore_errors=True)
        for d in (RUN, KEEP):
            with contextlib.suppress(OSError):
                d.rmdir()
        return done

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
