"""A node to provision: what it is, its rendered files, and the substrate's handle on it."""

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
    # blocks until the nodes its health checks reach are provisioned (a tenant's: the router)
    upstream_ready: Callable[[], object] = lambda: None
    # blocks until the failover partner it connects to has started (a secondary DHCP server's:
    # its primary)
    partner_ready: Callable[[], object] = lambda: None
    actions: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, lab: model.Lab, spec: model.Node, node: Node, deployment: Deployment) -> Target:
        """The target of a node as its deployment renders it (for tasks and drills that act
        on one node outside a whole provisioning run)."""
        from lab.render import render_node

        return cls(lab, spec, node, render_node(lab, spec, deployment), light=deployment.light(spec))

    def path(self, p: str) -> str:
        return self.node.path(p)

    def did(self, what: str) -> None:
        self.actions.append(what)

