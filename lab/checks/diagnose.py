"""The likely causes of failing checks, read from the nodes themselves: a link down, an
address or route the kernel lost (what the node's interfaces file says against what is live),
a daemon that died. One read per node, all nodes at once."""

from __future__ import annotations

from lab.facts import Fact, dead, read
from lab.render import render
from lab.roles import ROLES, dhcp, interfaces
from lab.roles.common import INTERFACES
from lab.substrate.base import Runtime


def causes(rt: Runtime) -> list[str]:
    files = render(rt.lab, rt.deployment)
    wanted: list[tuple[str, Fact]] = []
    for spec in rt.lab.nodes():
        node = rt.node(spec.name)
        if INTERFACES in files[spec.name]:
            wanted.append((spec.name, interfaces.fact(node, files[spec.name][INTERFACES].text)))
        daemons = dhcp.daemons_of(rt.lab) if spec.role == "dhcp" else ROLES[spec.role].DAEMONS
        if daemons:
            wanted.append((spec.name, dead(node, daemons)))
    out = []
    for (name, _), found in zip(wanted, read(rt.node, [f for _, f in wanted]), strict=True):
        out += [f"{name}: {d.what}" if isinstance(d, interfaces.Drift) else f"{name}: {d} is not running"
                for d in found]
    return out
