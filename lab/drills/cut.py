"""The failures no peer drills: the VXLAN tunnel cut while both gateways stay up (failover.vxlan:
both become VRRP master, a split brain, and the DHCP pair loses contact), and a tenant VM's NIC
down (failover.link: its uplink and the tunnel share it, so the tenant is cut off). Run by the
failover drill's runner (gateway.Drill) with steps of their own: the cut, the split brain or the
takeover, the restore (and for a NIC set down by hand, the lab broken and `invoke provision`
repairing it), one master again, the DHCP pair back to normal, and after healing the VIPs on the
master only, no address twice on VLAN 7, no address leased to two MACs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import ClassVar

from lab.checks.seed import split_brain
from lab.drills import modes
from lab.drills.access import DrillError, LabAccess, Runtime
from lab.drills.gateway import SETTLE, Drill, _until, trial_line
from lab.drills.report import CutReport
from lab.drills.series import CutSeries

CHAIN = "vxlab-cut"
VXLAN_MODES = ("underlay", "port")
NEIGHBOURS = 60.0  # s: a neighbour cache entry's reachable time (15-45 s) and a probe's


class Cut(modes.Mode):
    """A cut in one tenant; `drill` names the task that injects it."""

    drill: ClassVar[str]
    # Both tenants become VRRP master while the cut is on (a split brain, expected).
    split: ClassVar[bool] = False
    # Restoring the fault leaves the lab broken: `invoke provision` repairs it.
    needs_repair: ClassVar[bool] = False
    # The VIPs on both tenants at once are the fault's expected effect, reported, not a problem.
    overlap_s = math.inf

    def cut_off(self) -> dict[str, str]:
        """Containers the fault cuts off from the Internet until the restore, and why."""
        return {}


class VxlanCut(Cut):
    """The tunnel fails, both gateways stay up: the backup hears no advert and becomes master too."""

    drill = "vxlan"
    split = True
    moves_gateway = False

    def expected_transitions(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        backup = self.lab.tenants[self.lab.peer(self.lab.master())].vm
        master = self.lab.tenants[self.lab.master()].vm
        return {backup: (("MASTER",), ("BACKUP",)), master: ((), ())}


class Underlay(VxlanCut):
    name = "underlay"
    help = "drop the tunnel's UDP between the tenants"

    @property
    def port(self) -> int:
        return self.lab.shared_vlan.vxlan.udp_port

    @property
    def peer_address(self) -> str:
        return str(self.lab.tenants[self.lab.peer(self.tenant)].underlay.tenant.ipv4.ip)

    @property
    def what(self) -> str:
        return (f"the VXLAN tunnel cut: {self.vm} drops UDP port {self.port} to and from "
                f"{self.peer_address} (its peer's underlay address); both gateways stay up")

    def inject(self) -> None:
        self.node.run(["iptables", "-N", CHAIN])
        for direction in ("-s", "-d"):
            self.node.run(["iptables", "-A", CHAIN, "-p", "udp", "--dport", str(self.port),
                           direction, self.peer_address, "-j", "DROP"])
        for hook in ("INPUT", "OUTPUT"):
            self.node.run(["iptables", "-I", hook, "-j", CHAIN])

    def restore(self) -> None:
        for hook in ("INPUT", "OUTPUT"):
            self.node.run(["iptables", "-D", hook, "-j", CHAIN], check=False)
        self.node.run(["iptables", "-F", CHAIN], check=False)
        self.node.run(["iptables", "-X", CHAIN], check=False)


class Port(VxlanCut):
    name = "port"
    help = "take the VXLAN port down on one side"

    @property
    def device(self) -> str:
        return self.lab.tenants[self.tenant].vxlan_port

    @property
    def what(self) -> str:
        return f"the VXLAN port {self.device} on {self.vm} is taken down; both gateways stay up"

    def _set(self, state: str) -> None:
        t = self.lab.tenants[self.tenant]
        if self.access.deployment.form.ovs:  # an OVS tunnel port: no kernel link to set down
            self.node.run(["ovs-ofctl", "mod-port", t.switch, self.device, state])
        else:
            self.node.run(["ip", "link", "set", "dev", self.device, state])

    def inject(self) -> None:
        self._set("down")

    def restore(self) -> None:
        self._set("up")


class Link(Cut):
    """The tenant VM's one NIC down: its uplink and the tunnel go together, its containers are cut
    off (their gateway, if the tenant held it, is gone with the tunnel; the tenant's own, once its
    keepalived is master for them, has no uplink), and its keepalived fails its checks."""

    drill = "link"
    faults = True

    def cut_off(self) -> dict[str, str]:
        why = (f"{self.vm}'s NIC {self.lab.tenants[self.tenant].nic} is down: its uplink and the "
               "VXLAN tunnel share it (expected)")
        return dict.fromkeys(self.lab.containers_of(self.tenant), why)

    def expected_transitions(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        master = self.lab.master()
        out = super().expected_transitions()
        if self.tenant != master:  # it hears no advert before its checks fail: master first
            out[self.vm] = (("MASTER", "FAULT"), out[self.vm][1])
        return out


class Carrier(Link):
    name = "carrier"
    help = "its NIC loses carrier (the cable pulled, on the switch's side)"

    @property
    def what(self) -> str:
        return f"{self.vm}'s NIC loses carrier (its port on the switch goes down)"

    def inject(self) -> None:
        self.access.carrier(self.vm, up=False)

    def restore(self) -> None:
        self.access.carrier(self.vm, up=True)


class Admin(Link):
    name = "admin"
    help = "its NIC set down by hand (ip link set down): its routes go and stay gone"
    needs_repair = True

    @property
    def nic(self) -> str:
        return self.lab.tenants[self.tenant].nic

    @property
    def what(self) -> str:
        return f"ip link set dev {self.nic} down on {self.vm}"

    def inject(self) -> None:
        self.node.run(["ip", "link", "set", "dev", self.nic, "down"])

    def restore(self) -> None:
        self.node.run(["ip", "link", "set", "dev", self.nic, "up"])


CUTS: dict[str, type[Cut]] = {c.name: c for c in (Underlay, Port, Carrier, Admin)}


# -- what the lab must be after healing (pure: tested without a lab) -------------------------------

def duplicates(addresses: dict[str, list[str]]) -> list[str]:
    """Every address that more than one node holds (node -> its addresses on the VLAN)."""
    holders: dict[str, list[str]] = {}
    for node, addrs in addresses.items():
        for a in dict.fromkeys(addrs):
            holders.setdefault(a, []).append(node)
    return [f"{a} on {' and '.join(nodes)}" for a, nodes in holders.items() if len(nodes) > 1]


def leased_twice(bindings: dict[str, dict[str, str]]) -> list[str]:
    """Every address bound to more than one MAC, by one server or by the two (server -> its
    bindings: address -> MAC)."""
    macs: dict[str, dict[str, list[str]]] = {}
    for server, bound in bindings.items():
        for addr, mac in bound.items():
            macs.setdefault(addr, {}).setdefault(mac.lower(), []).append(server)
    return [f"{addr} leased to " + " and ".join(f"{mac} (by {', '.join(s)})" for mac, s in by.items())
            for addr, by in sorted(macs.items()) if len(by) > 1]


def stale_neighbours(lab, caches: dict[str, dict[str, tuple[str | None, str]]], macs: dict[str, str | None]
                     ) -> list[str]:
    """The containers whose neighbour cache still sends a VIP anywhere but to the master (container ->
    address -> (MAC, state); macs: tenant VM -> its MAC on the VLAN). An entry without a MAC (being
    resolved, or failed) is no stale one."""
    master_vm = lab.tenants[lab.master()].vm
    owner = {mac: vm for vm, mac in macs.items() if mac}
    vips = [str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)]
    out = []
    for c, cache in caches.items():
        for vip in vips:
            mac, state = cache.get(vip, (None, ""))
            if mac and mac != macs.get(master_vm):
                out.append(f"{c}: {vip} at {owner.get(mac, mac)}'s MAC ({state})")
    return out


def vips_misplaced(lab, holders: dict[str, list[str]]) -> list[str]:
    """The VIPs anywhere but on the master, all of them there."""
    master = lab.master()
    out = []
    for name, held in holders.items():
        vm = lab.tenants[name].vm
        if name == master and len(held) < 2:
            out.append(f"{vm} (the master) holds {' and '.join(held) or 'no VIP'}")
        elif name != master and held:
            out.append(f"{vm} (the backup) still holds {' and '.join(held)}")
    return out


# -- the runner ------------------------------------------------------------------------------------

class CutDrill(Drill):
    """The failover drill's runner, with the cut's steps and the checks after healing."""

    Report = CutReport

    def __init__(self, access: LabAccess, fault: Cut, deadline: float, hold: float,
                 progress: Callable[[str], None]):
        super().__init__(access, fault.tenant, fault, deadline, progress)
        self.cut: Cut = fault
        self.hold = hold
        # The TCP stream from a side the fault does not cut off.
        keep = self.lab.peer(fault.tenant) if fault.cut_off() else fault.tenant
        self.stream_from = (self.lab.tenants[keep].clients or self.lab.containers_of(keep))[0]
        self.found: dict = {}
        self.macs: dict[str, str | None] = {}  # tenant VM -> its MAC on the shared VLAN

    @property
    def name(self) -> str:
        return f"failover.{self.cut.drill}"

    def _states(self) -> dict[str, str]:
        return {f"{server} DHCP failover": state or "unknown"
                for server, state in self.access.dhcp_states().items()}

    def _steps(self) -> None:
        self.injected = self._inject()
        if self.cut.split:
            self._await_split_brain()
        else:
            self._await_takeover(self.injected)
            self._await_fault()
        time.sleep(self.hold)
        self._restore()
        if self.cut.needs_repair:
            self._repair()
        self._await_one_master()
        self._await_dhcp_normal()
        self._await_initial_state()
        if self.restored is not None and self.initial_at is not None:
            self.found["healed_s"] = round(self.initial_at - self.restored, 2)
        self._after_healing()
        self._await_neighbours()
        time.sleep(SETTLE)

    def _await_split_brain(self) -> None:
        if not _until(lambda: self.watch.both_since is not None, self.deadline):
            self.problems.append(f"no split brain {self.deadline:.0f} s after the cut: the tunnel did not "
                                 f"fail, or a tenant did not become master (VIPs: {self.watch.holders})")
            return
        said = self.found["split_brain"] = split_brain(self.lab, self.watch.holders) or ""
        self.found["split_brain_s"] = round(self.watch.both_since - self.injected, 2)
        self.progress(f"[{self.watch.both_since:5.1f}s] {said}")

    def _repair(self) -> None:
        """The NIC back up by hand has lost what ifup gave it (its routes, its IPv6 address): the
        nodes say so; `invoke provision` repairs it."""
        time.sleep(SETTLE)
        broken = self.access.causes()
        self.found["broken"] = broken
        if broken:
            self.timeline.mark("the NIC is up, the lab still broken: " + "; ".join(broken), "host")
        else:
            self.timeline.mark("the NIC is up and no node says anything is missing", "host")
        self.timeline.mark("repair: invoke provision", "host")
        took = self.access.repair()
        self.found["repair_s"] = round(took, 2)
        self.timeline.mark(f"invoke provision done in {took:.1f} s", "host")

    def _await_one_master(self) -> None:
        master = self.lab.master()
        if not _until(lambda: self.watch.holder() == master and self.watch.both_since is None,
                      self.deadline):
            self.problems.append(f"not one master {self.deadline:.0f} s after the restore "
                                 f"(VIPs: {self.watch.holders})")
            return
        t = self.timeline.mark(f"one master again: {self.vm(master)} alone holds the VIPs", self.vm(master))
        self.found["one_master_s"] = round(t - self.restored, 2)

    def _await_dhcp_normal(self) -> None:
        usual = self.access.dhcp_normal_state()  # dhcpd's "normal", or Kea's HA mode's state

        def normal() -> bool:
            return all(s == usual for s in self.access.dhcp_states().values())

        changed = any("DHCP failover:" in e.what and not e.what.endswith(usual) for e in self.watch.events)
        if not changed:
            self.timeline.mark(f"the DHCP pair stayed in failover state {usual}: the fault lasted less than "
                               "the servers' max-response-delay", "host")
        if not _until(normal, 2 * self.deadline):
            self.problems.append(f"the DHCP pair is not back to normal {2 * self.deadline:.0f} s after the "
                                 f"restore: {self.access.dhcp_states()}")
            return
        t = self.timeline.mark(f"DHCP back to normal: both servers in failover state {usual}", "host")
        self.found["dhcp_normal_s"] = round(t - self.restored, 2)

    def _after_healing(self) -> None:
        misplaced = vips_misplaced(self.lab, self.access.vip_holders())
        nics = self.access.vlan_nics()
        dup = duplicates({n: [str(a.ip) for a in nic.addresses] for n, nic in nics.items()})
        self.macs = {t.vm: nics[t.vm].mac for t in self.lab.tenants.values()}
        twice = leased_twice(self.access.dhcp_bindings())
        self.found |= {"duplicates": dup, "leased_twice": twice}
        self.problems += [f"after healing: {m}" for m in misplaced]
        self.problems += [f"after healing, an address twice on VLAN 7: {d}" for d in dup]
        self.problems += [f"after healing: {t}" for t in twice]
        self.timeline.mark("after healing: " + ("; ".join([*misplaced, *dup, *twice]) or
                                               "the VIPs on the master only, no address twice on VLAN 7, "
                                               "no address leased to two MACs"), "host")

    def _stale(self) -> list[str]:
        return stale_neighbours(self.lab, self.access.neighbours(), self.macs)

    def _await_neighbours(self) -> None:
        """The containers' neighbour caches must follow the VIPs to the master: until they do,
        a container sends to the backup (which forwards, as a router would) what the master
        should. Without a gratuitous ARP from the master it takes their caches' reachable time."""
        stale = self._stale()
        self.found["stale_neighbours"] = stale
        if not stale:
            t = self.timeline.mark("every container's neighbour cache sends the VIPs to the master", "host")
        else:
            self.timeline.mark("neighbour caches still sending a VIP to the backup: " + "; ".join(stale),
                               "host")
            if not _until(lambda: not self._stale(), NEIGHBOURS):
                self.problems.append(f"{NEIGHBOURS:.0f} s after healing, neighbour caches still send a VIP "
                                     "to the backup: " + "; ".join(self._stale()))
                return
            t = self.timeline.mark("the neighbour caches followed: every container sends the VIPs to the "
                                   "master", "host")
        self.found["neighbours_s"] = round(t - self.restored, 2)

    def _report(self) -> CutReport:
        report = super()._report()
        assert isinstance(report, CutReport)
        report.cut_off = self.cut.cut_off()
        for k, v in self.found.items():
            setattr(report, k, v)
        return report


# -- the drills ------------------------------------------------------------------------------------

def _fault(runtime: Runtime, mode: str, node: str | None) -> tuple[LabAccess, Callable[[], Cut]]:
    access = LabAccess(runtime)
    lab = access.lab
    if mode not in CUTS:
        raise DrillError(f"no cut {mode!r}: {', '.join(CUTS)}")
    kind = CUTS[mode]
    if kind.drill == "vxlan":
        tenant = lab.master()  # the side the cut is made on: the rule or the port is there
    else:
        vms = {t.vm: n for n, t in lab.tenants.items()}
        if node not in vms:
            raise DrillError(f"failover.link takes a tenant VM: {', '.join(vms)}, not {node!r}")
        tenant = vms[node]
    return access, lambda: kind(access, tenant, "both")


def run(runtime: Runtime, mode: str, node: str | None = None, deadline: float = 20, hold: float = 4,
        progress: Callable[[str], None] = lambda m: None) -> CutReport:
    access, fault = _fault(runtime, mode, node)
    access.require_initial_state()
    return CutDrill(access, fault(), deadline, hold, progress).run()


def repeat(runtime: Runtime, mode: str, node: str | None = None, trials: int = 1, deadline: float = 20,
           hold: float = 4, progress: Callable[[str], None] = lambda m: None) -> CutSeries:
    access, fault = _fault(runtime, mode, node)
    done, stopped = access.back_to_back(
        trials, 2 * deadline, lambda: CutDrill(access, fault(), deadline, hold, lambda m: None).run(),
        cut_line, progress)
    f = fault()
    return CutSeries.of(done, trials, stopped, drill=f"failover.{f.drill}", tenant=f.tenant, mode=mode,
                        family="both", lab=access.lab.name, profile=access.deployment.profile)


def cut_line(r: CutReport) -> str:
    """One trial in a line: the gateway drill's, with the cut's own figures first."""
    figures = [f"{k} {v:.2f} s" for k, v in (("split brain after", r.split_brain_s),
                                                ("one master after", r.one_master_s),
                                                ("DHCP normal after", r.dhcp_normal_s),
                                                ("healed after", r.healed_s),
                                                ("neighbour caches at the master after", r.neighbours_s))
               if v is not None]
    return "; ".join(figures) + ("; " if figures else "") + trial_line(r)
