"""Provisioning recipes, one module per role, written once for every substrate.

A recipe places a node's rendered files and applies them with the seed's own tools
(ifupdown, iptables-restore, sysctl, keepalived, radvd, dhcpd, dhclient). Run again, it
converges: what changed is re-applied and its service restarted, what did not is left
alone, and what died is started again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab import model
from lab.render import File
from lab.substrate.base import Node

if TYPE_CHECKING:
    from lab.deployment import Deployment


@dataclass
class Target:
    """One node to provision: what it is, its files, and the substrate's handle on it."""

    lab: model.Lab
    spec: model.Node
    node: Node
    files: dict[str, File]
    light: bool = False  # a container that is only a namespace: no init, shared /etc
    rewire: Callable[[], None] = lambda: None  # remake wires that ifdown deleted
    actions: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, lab: model.Lab, spec: model.Node, node: Node, deployment: Deployment) -> Target:
        """The target of a node as its deployment renders it (for tasks and drills that act
        on one node outside a whole provisioning run)."""
        from lab.render import render_node

        return cls(lab, spec, node, render_node(lab, spec, deployment), light=deployment.light(spec))

    def path(self, p: str) -> str:
        return self.node.root + p

    def did(self, what: str) -> None:
        self.actions.append(what)


def apply(target: Target) -> list[str]:
    """Converge one node to its files; returns what was done (empty: nothing changed)."""
    from provision import client, dhcp, router, tenant

    recipe = {"router": router, "tenant": tenant, "dhcp": dhcp, "client": client}[target.spec.role]
    recipe.apply(target)
    return target.actions
