"""The running lab as the drills see it: every read of it and every action on it outside a
node's own commands goes through here (the lab's runtime, the provisioning recipes' services,
lab.state), so that a change of that surface is a change of this module only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from lab import state
from lab.model import Lab
from lab.substrate.base import Node, Service


class DrillError(RuntimeError):
    pass


class Runtime(Protocol):
    """A running lab (EmbeddedLab, VagrantLab)."""

    lab: Lab
    form: Any
    probe_interval: float

    def node(self, name: str) -> Node: ...

    def problems(self) -> list[str]: ...


@dataclass(frozen=True)
class LabAccess:
    runtime: Runtime
    _targets: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def lab(self) -> Lab:
        return self.runtime.lab

    @property
    def probe_interval(self) -> float:
        return self.runtime.probe_interval

    def node(self, name: str) -> Node:
        return self.runtime.node(name)

    def problems(self) -> list[str]:
        """What keeps the lab from its initial (converged) state."""
        return self.runtime.problems()

    def require_initial_state(self) -> None:
        initial = self.problems()
        if initial:
            raise DrillError("the lab is not in its initial state, drill refused:\n  " + "\n  ".join(initial))

    # -- state ------------------------------------------------------------------------------------

    def vip_holders(self) -> dict[str, list[str]]:
        """Tenant name -> the VIPs it holds."""
        return state.vip_holders(self.lab, self.node)

    def client_state(self, name: str) -> state.ClientState:
        return state.client_state(self.lab, name, self.node(name))

    # -- the roles' services ----------------------------------------------------------------------

    def _target(self, name: str):
        """The node's provisioning target (rendered once: the drills poll through it)."""
        import provision

        if name not in self._targets:
            self._targets[name] = provision.Target.of(self.lab, self.lab.node(name), self.node(name),
                                                      self.runtime.form)
        return self._targets[name]

    def tenant_service(self, tenant: str, name: str) -> Service:
        """A tenant VM's daemon by name: radvd or keepalived."""
        from provision.tenant import services

        found = {s.name: s for s in services(self._target(self.lab.tenants[tenant].vm))}
        return found[name]

    def dhcpd(self, server: str) -> Service:
        from provision import dhcp

        return dhcp.dhcpd(self._target(server))

    def lease_server(self, client: str) -> str | None:
        """The DHCP server the client's lease came from."""
        from provision import client as recipe

        return recipe.lease_server(self._target(client))

    def new_lease(self, client: str) -> None:
        """The client drops its lease and asks for a new one."""
        from provision import client as recipe

        recipe.new_lease(self._target(client))
