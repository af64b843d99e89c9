"""The lab's diagram: every node, link and address of the model is in the DOT, and only the model's.

Expected sets are computed from the model, never written out, so a changed lab.yaml is checked
the same way as the default one. Node ids are graph.py's 'VM/interface' ('routerVM/enp0s6.220').
"""

import ipaddress
import itertools
import os
import re
import shutil

import pytest
import yaml
from pydantic import BaseModel

from lab import graph, model

needs_dot = pytest.mark.skipif(not os.environ.get("CI") and shutil.which("dot") is None,
                               reason="needs Graphviz's dot (apt-get install graphviz)")

ADDRESS_TYPES = (ipaddress.IPv4Interface, ipaddress.IPv6Interface, ipaddress.IPv4Address,
                 ipaddress.IPv6Address, ipaddress.IPv4Network, ipaddress.IPv6Network)

EDGE = re.compile(r'^\s*("[^"]+"|[\w.-]+)(?::\w+)*\s--\s("[^"]+"|[\w.-]+)(?::\w+)*(?:\s|$)')


def addresses(obj) -> set[str]:
    """Every address and prefix anywhere in the model, as text."""
    if isinstance(obj, ADDRESS_TYPES):
        return {str(obj)}
    if isinstance(obj, BaseModel):
        # the DHCPv6 range is the lab's only when used (dhcp.v6 stateful)
        unused = {"range6"} if getattr(obj, "v6", None) == "slaac" else set()
        return set().union(*(addresses(getattr(obj, k)) for k in type(obj).model_fields if k not in unused))
    if isinstance(obj, dict):
        return set().union(set(), *(addresses(v) for v in obj.values()))
    return set()


def names(lab: model.Lab) -> set[str]:
    """Every machine, switch and interface name of the model."""
    out = {n.name for n in lab.nodes()} | {lab.switch.name, lab.shared_vlan.bridge}
    out |= {lab.router.subif(v) for v in (lab.router.uplink.vlan, *(t.vlan for t in lab.tenants.values()))}
    for t in lab.tenants.values():
        out |= {t.nic, t.switch, t.vxlan_port}
    return out


def links(lab: model.Lab) -> set[frozenset[str]]:
    """The wires and logical links the diagram must draw, between graph.py's node ids."""
    r, sw, br = lab.router, lab.switch.name, lab.shared_vlan.bridge
    out = {("internet/gateway", sw), ("internet/resolver", "internet/gateway"),
           (sw, f"{r.vm}/{r.subif(r.uplink.vlan)}"), ("shared/vlan", "shared/vxlan")}
    for name, t in lab.tenants.items():
        vm = t.vm
        out |= {(sw, f"{r.vm}/{r.subif(t.vlan)}"), (f"{r.vm}/{r.subif(t.vlan)}", f"{r.vm}/table/{name}"),
                (sw, f"{vm}/{t.nic}"), (f"{vm}/{t.nic}", f"{vm}/{t.vxlan_port}"),
                (f"{vm}/{t.vxlan_port}", f"{vm}/{t.switch}"), (f"{vm}/{t.switch}", f"{vm}/{br}"),
                (f"{vm}/{t.vxlan_port}", "shared/vxlan"), ("shared/vlan", f"{vm}/{br}")}
        out |= {(f"{vm}/{br}", c) for c in lab.containers_of(name)}
    return {frozenset(e) for e in out}


def edges(dot: str) -> set[frozenset[str]]:
    """The edges of DOT text, ports dropped, ignoring the invisible ones that only steer layout."""
    out = set()
    for line in dot.splitlines():
        m = EDGE.match(line)
        if m and "style=invis" not in line:
            out.add(frozenset(x.strip('"') for x in m.groups()))
    return out


def edge_line(dot: str, a: str, b: str) -> str:
    (line,) = [ln for ln in dot.splitlines() if EDGE.match(ln)
               and {x.strip('"') for x in EDGE.match(ln).groups()} == {a, b}]
    return line


def cluster(dot: str, name: str) -> str:
    """The text of one cluster (up to its first nested cluster or its end)."""
    start = dot.index(f"subgraph cluster_{name} {{")
    return dot[start:dot.index("\n\t}", start)]


@pytest.fixture(scope="module")
def lab() -> model.Lab:
    return model.load()


@pytest.fixture(scope="module")
def dot(lab) -> str:
    return graph.dot(lab)


# -- the default lab ------------------------------------------------------------------------------

def test_every_address_of_the_model_is_drawn(lab, dot):
    expected = addresses(lab)
    assert len(expected) >= 20  # the walk did find the model's addresses
    assert sorted(a for a in expected if a not in dot) == []
    stateful = model.load(sets=["dhcp.server=kea", "dhcp.v6=stateful", "containers.driver=netns"])
    assert all(a in graph.dot(stateful) for a in addresses(stateful.dhcp.range6))


def test_every_name_of_the_model_is_drawn(lab, dot):
    assert sorted(n for n in names(lab) if n not in dot) == []


def test_every_link_of_the_model_is_drawn(lab, dot):
    drawn = edges(dot)
    assert {tuple(sorted(e)) for e in links(lab) - drawn} == set()
    # nothing else either: every drawn edge is one of the model's links
    assert {tuple(sorted(e)) for e in drawn - links(lab)} == set()


def test_vms_are_clusters_and_containers_sit_in_their_tenant(lab, dot):
    for vm in [lab.router.vm, *(t.vm for t in lab.tenants.values())]:
        assert f"subgraph cluster_{vm} {{" in dot
    for name, t in lab.tenants.items():
        inside = dot[dot.index(f"subgraph cluster_{t.vm}_containers {{"):]
        for c in lab.containers_of(name):
            assert re.search(rf"^\s*{c} \[label=", inside, re.M), c


def test_numbers_of_the_model_are_drawn(lab, dot):
    vx, v = lab.shared_vlan.vxlan, lab.vrrp.instances
    assert f"VXLAN VNI {vx.vni} (UDP {vx.udp_port})" in dot
    assert f"VRID {v.ipv4.vrid}" in dot and f"VRID {v.ipv6.vrid}" in dot
    for name, t in lab.tenants.items():
        assert f"table {name} = {t.table}" in dot
        assert f"fwmark {t.fwmark}" in dot
        assert f"VRRP priority {t.vrrp_priority}" in dot
        assert f"access VLAN {t.vlan}" in dot
        assert f"DHCP {t.dhcp_server.role}, peer port {t.dhcp_server.port}" in dot
        peer = lab.tenants[lab.peer(name)]
        assert (f"local {t.underlay.tenant.ipv4.ip}<br align=\"left\"/>"
                f"remote {peer.underlay.tenant.ipv4.ip}") in dot


def test_the_higher_priority_is_the_master(lab, dot):
    master = lab.tenants[lab.master()]
    assert f"master: {master.vm}" in dot
    line = edge_line(dot, "shared/vlan", f"{master.vm}/{lab.shared_vlan.bridge}")
    assert f"MASTER by priority ({master.vrrp_priority})" in line and "bold" in line
    backup = lab.tenants[lab.peer(lab.master())]
    assert "BACKUP by priority" in edge_line(dot, "shared/vlan", f"{backup.vm}/{lab.shared_vlan.bridge}")
    assert "(live)" not in dot and "live:" not in dot


# -- a changed lab ---------------------------------------------------------------------------------

def changed(lab_data: dict) -> model.Lab:
    d = lab_data
    d["tenants"]["blue"]["clients"].append("blueC2")
    d["tenants"]["green"]["clients"].append("greenC2")
    d["tenants"]["blue"]["svi"]["ipv4"] = "192.0.2.230/24"
    d["tenants"]["green"]["switch"] = "SW-GREEN"
    d["tenants"]["blue"]["vrrp_priority"] = 240  # blue now outranks green
    d["shared_vlan"]["vxlan"]["vni"] = 4242
    d["router"]["uplink"]["ipv4"] = "172.16.96.201/24"
    d["tenants"]["red"] = d["tenants"].pop("green")  # a tenant renamed: its table too
    return model.parse(yaml.safe_dump(d, sort_keys=False))


def test_a_changed_lab_changes_the_picture(lab_data, dot):
    new = changed(lab_data)
    text = graph.dot(new)
    assert text != dot
    for what in ("blueC2", "greenC2", "192.0.2.230/24", "SW-GREEN", "VNI 4242", "172.16.96.201/24",
                 "table red = 221", "master: blueVM"):
        assert what in text, what
    for gone in ("192.0.2.220/24", "C-3PO-GREEN", "VNI 7 ", "172.16.96.200/24", "table green",
                 "master: greenVM"):
        assert gone not in text, gone
    assert sorted(a for a in addresses(new) if a not in text) == []
    assert sorted(n for n in names(new) if n not in text) == []
    assert edges(text) == links(new)
    assert "MASTER by priority (240)" in edge_line(text, "shared/vlan", "blueVM/sw-vlan7")


# -- live state --------------------------------------------------------------------------------------

def live_status(lab: model.Lab, master: str) -> dict:
    """A status dict as lab.commands.status returns it, with `master` holding the VIPs."""
    vips = [str(lab.vrrp.instances.ipv4.vip.ip), str(lab.vrrp.instances.ipv6.vip.ip)]
    rows = [{"node": "internet", "kind": "namespace", "services": {"dnsmasq": "running"}},
            {"node": lab.switch.name, "kind": "namespace", "services": {}},
            {"node": lab.router.vm, "kind": "namespace", "services": {}}]
    for name, t in lab.tenants.items():
        holds = name == master
        rows.append({"node": t.vm, "kind": "namespace",
                     "services": {"radvd": "running", "keepalived": "running" if holds else "DEAD"},
                     "vrrp": "MASTER" if holds else "BACKUP", "vips": vips if holds else []})
    for t in lab.tenants.values():
        rows.append({"node": t.dhcp_server.name, "kind": "LXD container", "services": {},
                     "failover": "normal"})
        for i, c in enumerate(t.clients):
            rows.append({"node": c, "kind": "LXD container", "services": {},
                         "ipv4": f"192.0.2.{40 + len(rows) + i}", "gateway4": vips[0],
                         "slaac": f"2001:db8:7::{len(rows):x}", "gateway6": vips[1]})
    return {"lab": lab.name, "driver": "lxd", "converged": True, "problems": [], "nodes": rows}


def test_live_marks_the_current_master(lab):
    # The lower priority holds the VIPs (as during a failover): the picture says so.
    backup = lab.peer(lab.master())
    live = live_status(lab, master=backup)
    text = graph.dot(lab, live)
    now, other = lab.tenants[backup], lab.tenants[lab.master()]
    assert "VRRP MASTER (live)" in cluster(text, now.vm)
    assert "VRRP BACKUP (live)" in cluster(text, other.vm)
    line = edge_line(text, "shared/vlan", f"{now.vm}/{lab.shared_vlan.bridge}")
    assert "live: MASTER" in line and "penwidth=3" in line
    assert "live: BACKUP" in edge_line(text, "shared/vlan", f"{other.vm}/{lab.shared_vlan.bridge}")
    assert "keepalived DEAD" in cluster(text, other.vm)


def test_live_shows_leases_and_daemons(lab):
    live = live_status(lab, master=lab.master())
    text = graph.dot(lab, live)
    for row in live["nodes"]:
        if "ipv4" in row:
            assert f"lease {row['ipv4']} via {row['gateway4']}" in text
            assert f"SLAAC {row['slaac']} via {row['gateway6']}" in text
        if "failover" in row:
            assert "DHCP failover normal" in text
    assert "dnsmasq running" in text
    assert sorted(a for a in addresses(lab) if a not in text) == []  # the model is still all there


# -- rendering ------------------------------------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("png", b"\x89PNG"), ("dot", b"graph ")])
def test_draw_writes_each_format(lab, tmp_path, fmt, magic):
    out = graph.draw(lab, fmt, tmp_path / f"lab.{fmt}")
    assert out.read_bytes().startswith(magic)


def test_draw_refuses_an_unknown_format(lab, tmp_path):
    with pytest.raises(ValueError, match="svg, png, dot"):
        graph.draw(lab, "jpg", tmp_path / "lab.jpg")


@needs_dot
def test_no_two_nodes_of_the_default_lab_overlap(lab):
    """Readable at a glance: Graphviz's own layout, no node box drawn over another."""
    plain = graph.graph(lab).pipe(format="plain").decode()
    boxes = []
    for line in plain.splitlines():
        if line.startswith("node "):
            name, x, y, w, h = re.match(r'node ("[^"]+"|\S+) (\S+) (\S+) (\S+) (\S+)', line).groups()
            x, y, w, h = map(float, (x, y, w, h))
            boxes.append((name, x - w / 2, y - h / 2, x + w / 2, y + h / 2))
    assert len(boxes) >= len(names(lab))
    for a, b in itertools.combinations(boxes, 2):
        apart = a[3] <= b[1] or b[3] <= a[1] or a[4] <= b[2] or b[4] <= a[2]
        assert apart, f"{a[0]} overlaps {b[0]}"


def test_live_draws_the_substrate_that_runs(lab):
    """The embedded lab has a Linux bridge and a kernel VXLAN device where the VMs have OVS."""
    live = live_status(lab, master=lab.master())
    vms = graph.dot(lab, {**live, "substrate": "vagrant"})
    embedded = graph.dot(lab, {**live, "substrate": "embedded"})
    for t in lab.tenants.values():
        assert f"{t.vm}/{t.switch}" in vms and "(OVS bridge)" in cluster(vms, t.vm)
        assert f"{t.vm}/{t.switch}" not in embedded and "OVS" not in cluster(embedded, t.vm)
        assert "Linux bridge and SVI" in cluster(embedded, t.vm)
        assert frozenset((f"{t.vm}/{t.vxlan_port}", f"{t.vm}/{lab.shared_vlan.bridge}")) in edges(embedded)
