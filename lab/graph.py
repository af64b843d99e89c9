"""The lab drawn from its model: a Graphviz diagram of every VM, switch, interface and address.

`dot(lab)` gives the DOT text (what the tests read); `draw(lab, fmt, out)` renders it with
Graphviz's `dot` program. Every name and address comes from the `Lab`; nothing of the default
lab is written here. With `live` (the dict of `lab.commands.status`), the diagram also shows
what the running lab does: the current VRRP master, each container's lease, each daemon's state.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import graphviz

from lab import model
from lab.topology import Topology

FORMATS = ("svg", "png", "dot")

# Tenants are usually named after a colour (the seed's blue and green): use it, lightened.
# Any other name gets a colour by position, so a changed lab still tells its tenants apart.
_TINTS = {"blue": "#dde8fb", "green": "#ddf3dd", "red": "#fbdddd", "orange": "#fdebd3",
          "yellow": "#fbf6d2", "purple": "#ecdff7", "gray": "#eeeeee", "grey": "#eeeeee"}
_PALETTE = ("#dde8fb", "#ddf3dd", "#fdebd3", "#ecdff7")
_ROUTER, _HOST, _NET, _SHARED = "#f3f3f3", "#fff7e0", "#f7f7f7", "#fff2cc"
_LIVE = "#c0392b"  # what the running lab says, drawn in one colour so it stands out


# -- labels -------------------------------------------------------------------------------------

def _html(title: str, *rows: str, live: tuple[str, ...] = ()) -> str:
    """An HTML-like label: a bold title, one left-aligned line per row, then the live lines
    (what the running lab says) in their own colour. Empty lines are left out."""
    lines = [f"<b>{escape(title)}</b>", *(escape(r) for r in rows if r)]
    lines += [f'<font color="{_LIVE}">{escape(r)}</font>' for r in live if r]
    return "<" + '<br align="left"/>'.join(lines) + '<br align="left"/>>'


def _tint(lab: model.Lab, tenant: str) -> str:
    return _TINTS.get(tenant.lower(), _PALETTE[list(lab.tenants).index(tenant) % len(_PALETTE)])


def _id(*parts: str) -> str:
    """A node id: VM/interface ('routerVM/enp0s6.220'); '/' because ':' would name a port."""
    return "/".join(parts)


# -- live state (optional) ------------------------------------------------------------------------

def _rows(live: dict | None) -> dict[str, dict]:
    return {r["node"]: r for r in (live or {}).get("nodes", [])}


def _services(row: dict | None) -> str:
    """'keepalived running, radvd DEAD' from a status row (empty when not live)."""
    if not row or not row.get("services"):
        return ""
    return ", ".join(f"{name} {state}" for name, state in row["services"].items())


# -- the parts of the lab ---------------------------------------------------------------------------

def _internet(g: graphviz.Graph, lab: model.Lab, live: dict[str, dict]) -> None:
    gw, dns = lab.internet.gateway, lab.internet.resolver
    with g.subgraph(name="cluster_internet") as c:
        c.attr(label=f"the lab's Internet ({lab.name})", style="rounded,filled", fillcolor=_NET)
        c.node("internet/gateway", _html("gateway (Host SVI)", str(gw.ipv4), str(gw.ipv6),
                                         str(gw.link_local), live=(_services(live.get("internet")),)))
        c.node("internet/resolver", _html("resolver (DNS, health check)", str(dns.ipv4),
                                          str(dns.ipv6)), shape="ellipse")
        c.edge("internet/resolver", "internet/gateway", style="dashed")


def _host(g: graphviz.Graph, lab: model.Lab) -> None:
    """dsw-host as one table: a cell (port) per VLAN it carries, in left-to-right order."""
    sw, r = lab.switch, lab.router
    names = list(lab.tenants)
    cells = [(f"t{names[0]}", f"access VLAN {lab.tenants[names[0]].vlan}", lab.tenants[names[0]].vm),
             ("uplink", f"VLAN {r.uplink.vlan}", "uplink (SVI)"),
             ("trunk", "trunk " + ", ".join(str(v) for v in _router_vlans(lab)), r.vm)]
    cells += [(f"t{n}", f"access VLAN {lab.tenants[n].vlan}", lab.tenants[n].vm) for n in names[1:]]
    row = "".join(f'<td port="{p}" bgcolor="white">{escape(a)}<br/>{escape(b)}</td>' for p, a, b in cells)
    label = (f'<<table border="0" cellborder="1" cellspacing="0" cellpadding="4">'
             f'<tr><td colspan="{len(cells)}"><b>{escape(sw.name)}</b> (Host OVS switch, MAC prefix '
             f'{escape(sw.mac_prefix)})</td></tr><tr>{row}</tr></table>>')
    with g.subgraph(name="cluster_host") as c:
        c.attr(label="Host", style="rounded,filled", fillcolor=_HOST)
        c.node(sw.name, label, shape="plain")
    # The Internet above the Host: the edge's tail ranks first.
    g.edge("internet/gateway", f"{sw.name}:uplink:n", label=f"VLAN {r.uplink.vlan}")


def _router_vlans(lab: model.Lab) -> tuple[int, ...]:
    return Topology(lab).link_of(lab.router.vm).vlans


def _router(g: graphviz.Graph, lab: model.Lab, live: dict[str, dict]) -> None:
    r, sw = lab.router, lab.switch.name
    names = list(lab.tenants)
    # Same left-to-right order as dsw-host's cells: first tenant, uplink, the other tenant(s).
    order = [names[0], None, *names[1:]]
    with g.subgraph(name=f"cluster_{r.vm}") as c:
        c.attr(label=_html(f"{r.vm} (router)", live=(_services(live.get(r.vm)),)), style="rounded,filled",
               fillcolor=_ROUTER)
        for name in order:
            if name is None:
                c.node(_id(r.vm, r.subif(r.uplink.vlan)), _uplink_label(lab))
            else:
                _router_tenant_link(c, lab, name)
        vlans = [r.uplink.vlan if n is None else lab.tenants[n].vlan for n in order]
        with c.subgraph() as row:  # one row, in that order: invisible edges fix it
            row.attr(rank="same")
            for a, b in zip(vlans, vlans[1:], strict=False):
                row.edge(_id(r.vm, r.subif(a)), _id(r.vm, r.subif(b)), style="invis")
    for vlan in vlans:
        g.edge(f"{sw}:trunk:s", _id(r.vm, r.subif(vlan)), label=f"{vlan} tagged")


def _uplink_label(lab: model.Lab) -> str:
    r, gw = lab.router, lab.internet.gateway
    nat = "NAT: MASQUERADE v4+v6, MSS clamp" if r.nat else "no NAT"
    return _html(f"{r.subif(r.uplink.vlan)} (VLAN {r.uplink.vlan}, uplink)", str(r.uplink.ipv4),
                 str(r.uplink.ipv6), f"default via {gw.ipv4.ip}, {gw.link_local.ip}", nat)


def _router_tenant_link(c: graphviz.Graph, lab: model.Lab, name: str) -> None:
    """The router's subinterface on a tenant's VLAN, and the routing table its fwmark selects."""
    r, t = lab.router, lab.tenants[name]
    u, dev = t.underlay.router, r.subif(t.vlan)
    c.node(_id(r.vm, dev), _html(f"{dev} (VLAN {t.vlan}, {name})", str(u.ipv4), str(u.ipv6),
                                 str(u.link_local)), style="filled", fillcolor=_tint(lab, name))
    c.node(_id(r.vm, "table", name), _table_label(lab, name), shape="note",
           style="filled", fillcolor=_tint(lab, name))
    c.edge(_id(r.vm, dev), _id(r.vm, "table", name), style="dotted", label=f"fwmark {t.fwmark}")


def _table_label(lab: model.Lab, name: str) -> str:
    """The tenant's routing table on the router, as the router's interfaces file fills it."""
    t, sv, gw = lab.tenants[name], lab.shared_vlan, lab.internet.gateway
    u = t.underlay.tenant
    return _html(f"table {name} = {t.table}",
                 f"ip rule pref {t.table}: fwmark {t.fwmark} (CONNMARK)",
                 f"{sv.ipv4} via {u.ipv4.ip}", f"{sv.ipv6} via {u.ipv6.ip}",
                 f"default via {gw.ipv4.ip}, {gw.link_local.ip}")


def _tenant(g: graphviz.Graph, lab: model.Lab, name: str, live: dict[str, dict], ovs: bool) -> None:
    t, sv = lab.tenants[name], lab.shared_vlan
    vm = t.vm
    peer = lab.tenants[lab.peer(name)]
    row = live.get(vm)
    state = f"VRRP {row['vrrp']} (live)" if row and "vrrp" in row else ""
    is_live_master = bool(row and row.get("vrrp") == "MASTER")
    with g.subgraph(name=f"cluster_{vm}") as c:
        c.attr(label=_html(f"{vm} (tenant {name})", live=(_services(row), state)), style="rounded,filled",
               fillcolor=_tint(lab, name), penwidth="3" if is_live_master else "1",
               color=_LIVE if is_live_master else "black")
        u = t.underlay.tenant
        c.node(_id(vm, t.nic), _html(f"{t.nic} (underlay, VLAN {t.vlan})", str(u.ipv4), str(u.ipv6),
                                     f"MTU {sv.vxlan.underlay_mtu}"), style="filled", fillcolor="white")
        port = "VXLAN port" if ovs else "kernel VXLAN device"
        c.node(_id(vm, t.vxlan_port), _html(f"{t.vxlan_port} ({port})", f"VNI {sv.vxlan.vni}",
                                            f"local {u.ipv4.ip}", f"remote {peer.underlay.tenant.ipv4.ip}"),
               style="filled", fillcolor="white")
        svi = f"SVI, VLAN {sv.vlan}" if ovs else f"Linux bridge and SVI, VLAN {sv.vlan}"
        c.node(_id(vm, sv.bridge), _html(f"{sv.bridge} ({svi})", str(t.svi.ipv4),
                                         str(t.svi.ipv6), str(t.svi.link_local),
                                         f"VRRP priority {t.vrrp_priority}"),
               style="filled", fillcolor="white")
        c.edge(_id(vm, t.nic), _id(vm, t.vxlan_port), style="dashed", label="underlay")
        if ovs:  # the seed's: an OVS bridge, the VLAN a fake bridge on it
            c.node(_id(vm, t.switch), _html(f"{t.switch} (OVS bridge)", f"MTU {sv.mtu}"),
                   shape="box3d", style="filled", fillcolor="white")
            c.edge(_id(vm, t.vxlan_port), _id(vm, t.switch))
            c.edge(_id(vm, t.switch), _id(vm, sv.bridge), label=f"fake bridge, VLAN {sv.vlan}")
        else:  # the embedded lab: no OVS datapath, no 802.1q in its kernel
            c.edge(_id(vm, t.vxlan_port), _id(vm, sv.bridge), label="bridge port")
        _containers(c, lab, name, live)
    g.edge(f"{lab.switch.name}:t{name}", _id(vm, t.nic), label=f"VLAN {t.vlan}")


def _containers(c: graphviz.Graph, lab: model.Lab, name: str, live: dict[str, dict]) -> None:
    t, nic = lab.tenants[name], lab.containers.nic
    d, r = t.dhcp_server, lab.dhcp.range
    with c.subgraph(name=f"cluster_{t.vm}_containers") as k:
        # Label at the bottom, clear of the edges; own colour, not the tenant's live-master red.
        k.attr(label=f"containers ({lab.containers.driver}) on {lab.shared_vlan.bridge}",
               style="rounded,dashed", fillcolor="white", labelloc="b", color="gray30", penwidth="1")
        row = live.get(d.name)
        failover = f"DHCP failover {row.get('failover')}" if row and "failover" in row else ""
        r6 = lab.dhcp.range6 if lab.dhcp.v6 == "stateful" else None
        ranges = (f"range {r.first}-{r.last}", *((f"DHCPv6 {r6.first}-{r6.last}",) if r6 else ()))
        k.node(d.name, _html(d.name, f"DHCP {d.role}, peer port {d.port}", f"{nic} {d.ipv4}",
                             *ranges, live=(_services(row), failover)),
               shape="component", style="filled", fillcolor="white")
        for client in t.clients:
            k.node(client, _client_label(lab, client, live.get(client)), style="filled", fillcolor="white")
    # Edges outside the containers' cluster: an edge inside it would pull the SVI in.
    for name_ in (d.name, *t.clients):
        c.edge(_id(t.vm, lab.shared_vlan.bridge), name_, label=nic)


def _client_label(lab: model.Lab, name: str, row: dict | None) -> str:
    if not row or "ipv4" not in row:
        return _html(name, "client", f"{lab.containers.nic}: DHCPv4 + SLAAC")
    return _html(name, "client", live=(f"lease {row.get('ipv4')} via {row.get('gateway4')}",
                                       f"SLAAC {row.get('slaac')} via {row.get('gateway6')}",
                                       _services(row)))


def _shared(g: graphviz.Graph, lab: model.Lab, live: dict[str, dict]) -> None:
    """VLAN 7 stretched over VXLAN between the tenants, and its VIPs with the VRRP roles."""
    sv, vr = lab.shared_vlan, lab.vrrp
    names = list(lab.tenants)
    tunnel = _html(f"VXLAN VNI {sv.vxlan.vni} (UDP {sv.vxlan.udp_port})",
                   " <-> ".join(str(lab.tenants[n].underlay.tenant.ipv4.ip) for n in names),
                   f"underlay MTU {sv.vxlan.underlay_mtu}")
    g.node("shared/vxlan", tunnel, shape="cds", style="filled", fillcolor=_SHARED)
    for n in names:
        t = lab.tenants[n]
        g.edge(_id(t.vm, t.vxlan_port), "shared/vxlan", penwidth="2")
    v4, v6 = vr.instances.ipv4, vr.instances.ipv6
    g.node("shared/vlan", _html(f"shared VLAN {sv.vlan} ({sv.bridge})", str(sv.ipv4), str(sv.ipv6),
                                f"MTU {sv.mtu}", f"VIP {v4.vip} ({v4.name}, VRID {v4.vrid})",
                                f"VIP {v6.vip} ({v6.name}, VRID {v6.vrid})",
                                f"VRRPv{vr.version}, master: {lab.tenants[lab.master()].vm}"),
           style="filled", fillcolor=_SHARED)
    g.edge("shared/vxlan", "shared/vlan", style="dotted", label="stretches")
    for n in names:
        g.edge("shared/vlan", _id(lab.tenants[n].vm, sv.bridge), **_vrrp_edge(lab, n, live))


def _vrrp_edge(lab: model.Lab, name: str, live: dict[str, dict]) -> dict[str, str]:
    """The VIPs' edge to a tenant's SVI: the expected role by priority, and the live one if known."""
    t = lab.tenants[name]
    expected = "MASTER" if name == lab.master() else "BACKUP"
    label = f"{expected} by priority ({t.vrrp_priority})"
    row = live.get(t.vm)
    if row and "vrrp" in row:
        label += f"\\nlive: {row['vrrp']} {' '.join(row.get('vips', []))}".rstrip()
        bold = row["vrrp"] == "MASTER"
        return {"label": label, "style": "bold" if bold else "dashed", "penwidth": "3" if bold else "1",
                "color": _LIVE if bold else "gray40", "fontcolor": _LIVE}
    bold = expected == "MASTER"
    return {"label": label, "style": "bold" if bold else "dashed", "penwidth": "2" if bold else "1"}


# -- the whole --------------------------------------------------------------------------------

def graph(lab: model.Lab, live: dict | None = None) -> graphviz.Graph:
    rows = _rows(live)
    g = graphviz.Graph(lab.name, strict=False)
    # newrank: the rank=same row inside the router's cluster is honoured (the old ranking ignores it)
    g.attr(rankdir="TB", newrank="true", fontname="Helvetica", fontsize="11", nodesep="0.3", ranksep="0.5",
           label=f"vxlab: lab {lab.name}" + (" (live)" if live else ""), labelloc="t")
    g.attr("node", shape="box", style="rounded", fontname="Helvetica", fontsize="10")
    g.attr("edge", fontname="Helvetica", fontsize="9")
    _internet(g, lab, rows)
    _host(g, lab)
    names = list(lab.tenants)
    # Definition order is left-to-right order: first tenant, router, second tenant.
    # What runs: the embedded lab has Linux bridges and kernel VXLAN where the VMs have OVS.
    ovs = (live or {}).get("substrate", "vagrant") != "embedded"
    _tenant(g, lab, names[0], rows, ovs)
    _router(g, lab, rows)
    for n in names[1:]:
        _tenant(g, lab, n, rows, ovs)
    _shared(g, lab, rows)
    return g


def dot(lab: model.Lab, live: dict | None = None) -> str:
    """The lab's diagram as DOT text."""
    return graph(lab, live).source


def draw(lab: model.Lab, fmt: str, out: Path, live: dict | None = None) -> Path:
    """Write the diagram to `out` as svg, png or dot; returns `out`."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Path(out)
    g = graph(lab, live)
    if fmt == "dot":
        out.write_text(g.source)
        return out
    try:
        data = g.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RuntimeError("Graphviz's `dot` program is missing: apt-get install graphviz") from None
    out.write_bytes(data)
    return out
