"""The running lab as the drills see it: every read of it and every action on it outside a
node's own commands goes through here (the lab's runtime, its deployment, the roles' services
and facts), so that a change of that surface is a change of this module only."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from lab import facts, lifecycle
from lab.deployment import Deployment
from lab.drills.probes import INTERVAL
from lab.facts import read
from lab.host.wait import until
from lab.model import Lab
from lab.roles import Target, client, dhcp, tenant
from lab.substrate.base import Node, Runtime, Service

R = TypeVar("R")  # a drill's report


class DrillError(RuntimeError):
    pass


@dataclass(frozen=True)
class LabAccess:
    runtime: Runtime
    _targets: dict[str, Target] = field(default_factory=dict, compare=False, repr=False)

    @property
    def lab(self) -> Lab:
        return self.runtime.lab

    @property
    def deployment(self) -> Deployment:
        return self.runtime.deployment

    @property
    def probe_interval(self) -> float:
        return self.deployment.probe_interval

    def master_down(self, tenant: str) -> float:
        """VRRP's master-down interval for this tenant as a backup, at the deployment's pace."""
        return self.deployment.master_down(self.lab, tenant)

    def node(self, name: str) -> Node:
        return self.runtime.node(name)

    def problems(self) -> list[str]:
        """What keeps the lab from its initial (converged) state."""
        return self.runtime.problems()

    def causes(self) -> list[str]:
        """What the nodes say is wrong with them: a link down, an address or route lost, a daemon dead."""
        from lab.checks.diagnose import causes

        return causes(self.runtime)

    def require_initial_state(self) -> None:
        initial = self.problems()
        if initial:
            raise DrillError("the lab is not in its initial state, drill refused:\n  " + "\n  ".join(initial))

    def back_to_back(self, trials: int, wait: float, one: Callable[[], R], line: Callable[[R], str],
                     progress: Callable[[str], None]) -> tuple[list[R], list[str]]:
        """`trials` runs of a drill (`one()`), each from the initial state, read before each, not
        assumed: the first is refused without it, a later one waits `wait` seconds for it, and
        the series stops there if it does not come. The reports, and why the series stopped;
        progress: one line per trial (`line(report)`)."""
        if trials < 1:
            raise DrillError(f"--repeat must be at least 1, not {trials}")
        self.require_initial_state()
        done: list[R] = []
        for i in range(1, trials + 1):
            if i > 1 and not until(lambda: not self.problems(), wait, INTERVAL, paced=True):
                return done, [f"stopped before trial {i}: the lab is not in its initial state "
                              f"{wait:.0f} s after trial {i - 1}: " + "; ".join(self.problems())]
            done.append(one())
            progress(f"trial {i}/{trials}: {line(done[-1])}")
        return done, []

    # -- state ------------------------------------------------------------------------------------

    def vip_holders(self) -> dict[str, list[str]]:
        """Tenant name -> the VIPs it holds."""
        return tenant.holders(self.lab, self.node)

    def vrrp_state(self, name: str) -> str | None:
        """The state a tenant's keepalived reports."""
        node = self.node(self.lab.tenants[name].vm)
        return read(self.node, [tenant.vrrp(node)])[0]

    def dhcp_states(self) -> dict[str, str | None]:
        """DHCP server -> its failover state (dhcpd's, or Kea's HA state; both read at once)."""
        names = [s.name for s in self.lab.dhcp_servers().values()]
        found = read(self.node, [dhcp.failover(self.lab, self.node(n)) for n in names])
        return dict(zip(names, found, strict=True))

    def dhcp_take_over(self, server: str) -> str | None:
        """Kea: tell the server that its partner was stopped, so that it serves every client
        at once (ha-maintenance-start); None when done, else Kea's answer."""
        return read(self.node, [dhcp.take_over(self.lab, self.node(server))])[0]

    def dhcp_partner_down(self, server: str) -> bool:
        """Kea: the server took its partner for down (then a partner that starts again syncs
        and both go back to normal)."""
        return self.dhcp_states()[server] == dhcp.PARTNER_DOWN

    def dhcp_bindings(self) -> dict[str, dict[str, str]]:
        """DHCP server -> its active leases, address: MAC (both read at once; unread: none)."""
        names = [s.name for s in self.lab.dhcp_servers().values()]
        found = read(self.node, [dhcp.leases(self.lab, self.node(n)) for n in names])
        return {n: leases or {} for n, leases in zip(names, found, strict=True)}

    def containers(self) -> list[str]:
        return [c for t in self.lab.tenants for c in self.lab.containers_of(t)]

    def vlan_nics(self) -> dict[str, facts.Nic]:
        """Every node on the shared VLAN (tenant VMs, containers) -> its interface there."""
        lab = self.lab
        nics = {t.vm: facts.nic(self.node(t.vm), lab.shared_vlan.bridge) for t in lab.tenants.values()}
        nics |= {c: facts.nic(self.node(c), lab.containers.nic) for c in self.containers()}
        return dict(zip(nics, read(self.node, list(nics.values())), strict=True))

    def neighbours(self) -> dict[str, dict[str, tuple[str | None, str]]]:
        """Every container -> its neighbour cache on the shared VLAN."""
        cs = self.containers()
        found = read(self.node, [facts.neighbours(self.node(c), self.lab.containers.nic) for c in cs])
        return dict(zip(cs, found, strict=True))

    def client_state(self, name: str) -> client.Addressing:
        return client.addressing(self.lab, self.node(name))

    def transitions(self, name: str, since: float) -> list[tuple[float, str]]:
        """A tenant's VRRP transitions since `since` (its own clock), as its notify script wrote them."""
        return tenant.transitions(self.node(self.lab.tenants[name].vm).read(tenant.TRANSITIONS) or "", since)

    # -- actions on the lab ------------------------------------------------------------------------

    def carrier(self, machine: str, up: bool) -> None:
        """The machine's NIC loses (or gets back) its carrier, on the switch's side."""
        self.runtime.carrier(machine, up)

    def repair(self) -> float:
        """`invoke provision`: converge the lab to its description; the seconds it took."""
        return lifecycle.converge(self.runtime)

    # -- the roles' services ----------------------------------------------------------------------

    def _target(self, name: str) -> Target:
        """The node's provisioning target (rendered once: the drills poll through it)."""
        if name not in self._targets:
            self._targets[name] = Target.of(self.lab, self.lab.node(name), self.node(name), self.deployment)
        return self._targets[name]

    def tenant_service(self, name: str, service: str) -> Service:
        """A tenant VM's daemon by name: radvd or keepalived."""
        found = {s.name: s for s in tenant.services(self._target(self.lab.tenants[name].vm))}
        return found[service]

    def keepalived_pidfiles(self) -> tuple[str, ...]:
        """keepalived's VRRP child first, then its parent (a crash kills both)."""
        return (tenant.KEEPALIVED_PIDS["keepalived_vrrp"], tenant.KEEPALIVED_PIDS["keepalived"])

    def radvd_pidfile(self) -> str:
        return tenant.DAEMONS["radvd"]

    def dhcpd(self, server: str) -> Service:
        """The daemon that answers DHCP on this server: dhcpd or kea-dhcp4."""
        return dhcp.server(self._target(server))

    def in_primary_scope(self, name: str) -> bool:
        """The client is one the primary DHCP server answers for (Kea's HA scope)."""
        return dhcp.primary_scope(self.lab, self.client_state(name).ipv4)

    def dhcp_normal_state(self) -> str:
        """Both DHCP servers' failover state when all is well (dhcpd's, or Kea's HA mode)."""
        return dhcp.normal(self.lab)

    def leases(self, server: str) -> dict[str, str] | None:
        """A DHCP server's active leases, address: MAC (None: unread)."""
        return read(self.node, [dhcp.leases(self.lab, self.node(server))])[0]

    def lease_server(self, name: str) -> str | None:
        """The DHCP server the client's lease came from."""
        return client.lease_server(self._target(name))

    def new_lease(self, name: str) -> None:
        """The client drops its lease and asks for a new one."""
        client.new_lease(self._target(name))
