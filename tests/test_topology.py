"""The cabling, worked out once: the topology's links, and what the netns wiring and the
Vagrant spec make of them (expected values from the model, never written out)."""

from pathlib import Path

import yaml

from lab import model
from lab.substrate.netns import NetnsLab
from lab.topology import INTERNET, SWITCH, Topology, port_name
from lab.vagrant import box as boxes
from lab.vagrant import spec


def test_every_machine_has_one_wire_to_dsw_host_and_the_router_a_trunk():
    lab = model.load()
    topo = Topology(lab)
    r = lab.router
    by_node = {lk.node: lk for lk in topo.switch_links}
    assert set(by_node) == {INTERNET, r.vm, *(t.vm for t in lab.tenants.values())}
    assert by_node[INTERNET].vlans == (r.uplink.vlan,) and not by_node[INTERNET].trunk
    assert by_node[r.vm].trunk
    assert by_node[r.vm].vlans == (r.uplink.vlan, *(t.vlan for t in lab.tenants.values()))
    for t in lab.tenants.values():
        assert (by_node[t.vm].nic, by_node[t.vm].vlans) == (t.nic, (t.vlan,))
    assert {lk.switch for lk in topo.switch_links} == {SWITCH}
    assert all(lk.mtu == lab.shared_vlan.vxlan.underlay_mtu for lk in topo.switch_links)


def test_containers_hang_on_their_tenants_bridge_of_the_shared_vlan():
    lab = model.load()
    links = {lk.node: lk for lk in Topology(lab).container_links}
    for name, t in lab.tenants.items():
        for c in lab.containers_of(name):
            lk = links.pop(c)
            assert (lk.switch, lk.port, lk.nic) == (t.vm, lab.shared_vlan.bridge, lab.containers.nic)
            assert (lk.vlans, lk.mtu) == ((lab.shared_vlan.vlan,), lab.shared_vlan.mtu)
    assert links == {}


def test_the_internet_and_the_switch_are_nodes():
    topo = Topology(model.load())
    assert [n.role for n in topo.nodes[:2]] == ["internet", "switch"]
    assert topo.node(SWITCH).role == "switch" and not topo.node(SWITCH).is_container


def test_netns_wiring_splits_the_trunk_into_one_veth_and_one_bridge_per_vlan():
    lab = model.load()
    net = NetnsLab(lab)
    r = lab.router
    vlans = Topology(lab).vlans()
    assert set(net.bridges()) == {f"br{v}" for v in vlans}
    router_ends = sorted(w.a[1] for w in net.wires() if w.a[0] == net.ns(r.vm))
    assert router_ends == sorted(r.subif(v) for v in vlans)
    for w in net.wires():
        assert w.b[0] == net.switch and w.b[1] in net.bridges()[f"br{w.vlan}"]


def test_the_vagrant_spec_gives_each_vm_its_links_vlans_as_a_portgroup():
    lab = model.load()
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    links = {lk.node: lk for lk in Topology(lab).vm_links()}
    for vm in s.vms:
        (nic,) = vm.nics
        lk = links[vm.name]
        assert (nic.name, nic.vlans, nic.mtu) == (lk.nic, lk.vlans, lk.mtu)
        assert s.switch.portgroups[nic.portgroup] == nic.vlans


def test_changed_vlans_flow_through(lab_data):
    lab_data["router"]["uplink"]["vlan"] = 300
    lab_data["tenants"]["blue"]["vlan"] = 301
    lab = model.parse(yaml.safe_dump(lab_data))
    topo = Topology(lab)
    assert topo.link_of(lab.router.vm).vlans[:2] == (300, 301)
    assert set(NetnsLab(lab).bridges()) == {"br300", "br301", f"br{lab.tenants['green'].vlan}"}


def test_light_container_port_names_fit_an_interface_name():
    assert port_name("blueC0") == "p-blueC0"
    long = port_name("averyveryverylongname")
    assert len(long) <= 15 and long != port_name("averyveryverylongnamf")
