"""The likely causes of failing checks, read from the nodes themselves: a split brain (both
tenants hold the VIPs), a link down, an address or route the kernel lost (what the node's
interfaces file says against what is live), a daemon that died. One read per node, all nodes
at once."""

from __future__ import annotations

from lab.checks.seed import split_brain
from lab.facts import Fact, dead, read
from lab.render import render
from lab.roles import daemon_pids, interfaces, tenant
from lab.roles.common import INTERFACES
from lab.substrate.base import Runtime


def causes(rt: Runtime) -> list[str]:
    files = render(rt.lab, rt.deployment)
    wanted: list[tuple[str, Fact]] = []
    for spec in rt.lab.nodes():
        node = rt.node(spec.name)
        if INTERFACES in files[spec.name]:
            wanted.append((spec.name, interfaces.fact(node, files[spec.name][INTERFACES].text)))
        if pids := daemon_pids(rt.lab, spec.role):
            wanted.append((spec.name, dead(node, pids)))
    vips = [tenant.vips(rt.lab, rt.node(t.vm)) for t in rt.lab.tenants.values()]
    found_all = read(rt.node, [*vips, *(f for _, f in wanted)])
    split = split_brain(rt.lab, dict(zip(rt.lab.tenants, found_all[:len(vips)], strict=True)))
    out = [split] if split else []
    for (name, _), found in zip(wanted, found_all[len(vips):], strict=True):
        out += [f"{name}: {d.what}" if isinstance(d, interfaces.Drift) else f"{name}: {d} is not running"
                for d in found]
    return out
