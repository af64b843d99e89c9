"""One module per role of node, written once for every substrate. A role owns:

- `TEMPLATES`: its template folders in files/ (laid out like the files they produce);
- `DAEMONS`: its daemons' own pid files (name: path on the node), how vxlab tells they run;
  a role whose daemons depend on the lab adds `daemon_pids(lab)` (the tenant: the fast
  profile's probers);
- `services(target)`: its daemons, with their per-node paths;
- `apply(target)`: its recipe: place the rendered files and apply them with the seed's own
  tools (ifupdown, iptables-restore, sysctl, keepalived, radvd, dhcpd, dhclient). Run again,
  it converges: what changed is re-applied and its service restarted, what died restarts;
- where its daemons keep their state, and the facts read from it (`Fact`s: a command and
  its parser), which status, convergence, checks and drills all read.

Adding a role is adding a module here and a line to ROLES.
"""

from __future__ import annotations

from types import ModuleType

from lab.model import Lab
from lab.roles import client, dhcp, internet, router, switch, tenant
from lab.roles.target import Target
from lab.substrate.base import Service

ROLES: dict[str, ModuleType] = {
    "internet": internet, "switch": switch, "router": router, "tenant": tenant,
    "dhcp": dhcp, "client": client,
}


def apply(target: Target) -> list[str]:
    """Converge one node to its files; returns what was done (empty: nothing changed)."""
    ROLES[target.spec.role].apply(target)
    return target.actions


def services(target: Target) -> list[Service]:
    return list(ROLES[target.spec.role].services(target))


def daemon_pids(lab: Lab, role: str) -> dict[str, str]:
    """The daemons of a role's node in this lab: name -> its own pid file."""
    module = ROLES[role]
    return module.daemon_pids(lab) if hasattr(module, "daemon_pids") else module.DAEMONS


__all__ = ["ROLES", "Target", "apply", "daemon_pids", "services"]
