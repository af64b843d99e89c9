"""The faults a failover drill injects into one tenant, one class each, and what the drill must
then see. A mode says what it does (inject, restore), where the gateway must be while the fault
is on, and what it tolerates or demands beyond the drill's common checks. The registry gives
the task's --mode choices, their help and the error for an unknown mode; a new mode is one
class here (or in its own module, imported by lab/drills/__init__.py) with @register.
"""

from __future__ import annotations

from typing import ClassVar

from lab.drills.access import DrillError, LabAccess
from lab.drills.probes import Background
from lab.drills.report import GatewayReport

CHAIN = "vxlab-drill"
MODES: dict[str, type[Mode]] = {}


def register(cls: type[Mode]) -> type[Mode]:
    MODES[cls.name] = cls
    return cls


def get(name: str) -> type[Mode]:
    if name not in MODES:
        raise DrillError(f"--mode must be one of {', '.join(MODES)}, not {name!r}")
    return MODES[name]


def help_text() -> str:
    """The --mode help: each mode with what it does."""
    parts = [f"{name} ({cls.help})" for name, cls in MODES.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else "".join(parts)


class Mode:
    """A fault in one tenant (on `family`, for modes that care), and its expectations."""

    name: ClassVar[str]
    help: ClassVar[str]
    # The fault takes the gateway from the tenant if it is the master (else the gateway stays).
    moves_gateway: ClassVar[bool] = True
    # The longest a VIP may be on both tenants at once (s): duplicate addresses on VLAN 7.
    overlap_s: ClassVar[float] = 1.0
    # The takeover must come within VRRP's master-down interval (+ the drill's polling).
    takeover_within_master_down: ClassVar[bool] = False
    # The fault fails the tenant's health checks: its keepalived must enter FAULT.
    faults: ClassVar[bool] = False
    # The restore starts the tenant's keepalived again.
    restarts_vrrp: ClassVar[bool] = False

    def __init__(self, access: LabAccess, tenant: str, family: str):
        self.access, self.lab, self.tenant, self.family = access, access.lab, tenant, family
        self.vm = self.lab.tenants[tenant].vm
        self.node = access.node(self.vm)

    @property
    def what(self) -> str:
        """The fault, for the timeline."""
        raise NotImplementedError

    def inject(self) -> None:
        raise NotImplementedError

    def restore(self) -> None:
        raise NotImplementedError

    def expected_gateway(self) -> str:
        """The tenant that must hold the gateway while the fault is on."""
        master = self.lab.master()
        return self.lab.peer(self.tenant) if self.moves_gateway and master == self.tenant else master

    def expected_transitions(self) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
        """Per tenant VM, the VRRP states the fault explains, in order: while it is on, and after
        the restore. Any other transition is spurious."""
        master, peer = self.lab.master(), self.lab.peer(self.tenant)
        moved = self.expected_gateway() != master
        back = (("BACKUP", "MASTER") if self.tenant == master else ("BACKUP",)
                ) if self.faults or self.restarts_vrrp else ()
        return {self.vm: (("FAULT",) if self.faults else (), back),
                self.lab.tenants[peer].vm: (("MASTER",), ("BACKUP",)) if moved else ((), ())}

    def background(self) -> list[Background]:
        """The mode's own recorders, run on the nodes alongside the probers throughout."""
        return []

    def observe(self) -> list[str]:
        """What is wrong right now for this mode (polled throughout the drill)."""
        return []

    def judge(self, report: GatewayReport, t0: float) -> list[str]:
        """Problems in the finished report (and the mode's recorders, stopped now; t0: the
        drill's start, epoch seconds) beyond the drill's common checks."""
        return []


@register
class Probe(Mode):
    """The seed's drill: blind the health check only."""

    name = "probe"
    help = "the seed's: blind the health check"
    faults = True

    @property
    def rule(self) -> list[str]:
        return ["OUTPUT", "-d", f"{self.lab.internet.resolver.ipv4}/32", "-j", "DROP"]

    @property
    def what(self) -> str:
        return f"iptables -A {' '.join(self.rule)} on {self.vm} (the seed's drill)"

    def inject(self) -> None:
        self.node.run(["iptables", "-A", *self.rule])

    def restore(self) -> None:
        self.node.run(["iptables", "-D", *self.rule], check=False)


@register
class Uplink(Mode):
    """A chain that drops what the tenant forwards or sends out of its uplink, except toward
    the router's link and the VXLAN peer (so VLAN 7 stays stretched)."""

    name = "uplink"
    faults = True
    help = "drop what the tenant sends to the Internet"

    @property
    def families(self) -> tuple[str, ...]:
        return ("4", "6") if self.family == "both" else (self.family,)

    @property
    def what(self) -> str:
        return (f"{self.vm} loses its uplink (IPv{'+'.join(self.families)}): all it sends toward the "
                "Internet is dropped, its link to the router and the VXLAN stay up")

    def inject(self) -> None:
        t, peer = self.lab.tenants[self.tenant], self.lab.tenants[self.lab.peer(self.tenant)]
        keep = {"4": [str(t.underlay.router.ipv4.network), str(peer.underlay.tenant.ipv4.ip)],
                "6": [str(t.underlay.router.ipv6.network), "fe80::/10"]}
        for fam in self.families:
            ipt = self._ipt(fam)
            self.node.run([ipt, "-N", CHAIN])
            for net in keep[fam]:
                self.node.run([ipt, "-A", CHAIN, "-o", t.nic, "-d", net, "-j", "RETURN"])
            if fam == "6":  # neighbour discovery with the router
                for icmp in ("neighbour-solicitation", "neighbour-advertisement"):
                    self.node.run([ipt, "-A", CHAIN, "-p", "icmpv6", "--icmpv6-type", icmp, "-j", "RETURN"])
            self.node.run([ipt, "-A", CHAIN, "-o", t.nic, "-j", "DROP"])
            for hook in ("FORWARD", "OUTPUT"):
                self.node.run([ipt, "-I", hook, "-j", CHAIN])

    def restore(self) -> None:
        for fam in self.families:
            ipt = self._ipt(fam)
            for hook in ("FORWARD", "OUTPUT"):
                self.node.run([ipt, "-D", hook, "-j", CHAIN], check=False)
            self.node.run([ipt, "-F", CHAIN], check=False)
            self.node.run([ipt, "-X", CHAIN], check=False)

    @staticmethod
    def _ipt(family: str) -> str:
        return "iptables" if family == "4" else "ip6tables"


@register
class Crash(Mode):
    """keepalived killed: it cannot remove its VIPs, the lab's after-exit command must (both
    substrates run it), and the other tenant must take over within VRRP's master-down interval."""

    name = "crash"
    help = "kill its keepalived"
    takeover_within_master_down = True
    restarts_vrrp = True

    @property
    def what(self) -> str:
        return f"keepalived on {self.vm} is killed (SIGKILL)"

    def inject(self) -> None:
        pids = [p for f in self.access.keepalived_pidfiles() if (p := (self.node.read(f) or "").strip())]
        if not pids:
            raise DrillError(f"{self.vm}: keepalived is not running")
        self.node.run(["kill", "-KILL", *pids], check=False)

    def restore(self) -> None:
        self.node.start(self.access.tenant_service(self.tenant, "keepalived"))
