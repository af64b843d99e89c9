"""The stitch's plan (lab/vagrant/host/stitch.py) from a lab's `hosts:`: names, addresses, MACs
and VLANs each host's side gets; tests/e2e/test_stitch.py builds it for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import model
from lab.vagrant.host import stitch
from lab.vagrant.host.ovs import Ovs


def split(*endpoints: str, mtu: int = 9108, sets: tuple[str, ...] = ()) -> model.Lab:
    names = ["here", "far", "farther"][:len(endpoints)]
    hosts = ", ".join(f"{n}: {{{'' if i == 0 else f'ssh: root@192.0.2.{i}, '}endpoint: '{e}', "
                      f"underlay_mtu: {mtu}, nic: eth1}}"
                      for i, (n, e) in enumerate(zip(names, endpoints, strict=True)))
    vms = ["router.host=here", "tenants.blue.host=far", f"tenants.green.host={names[-1]}"]
    return model.load(model.DEFAULT_LAB, [f"hosts={{{hosts}}}", *vms, *sets])


def test_each_host_gets_a_trunk_to_each_peer_and_its_endpoint_on_the_underlay_bridge():
    lab = split("127.0.0.2", "127.0.0.3")
    here, far = stitch.plan(lab, "here"), stitch.plan(lab, "far")
    assert (here.switch, here.underlay, here.mtu, here.nic) == ("dsw-host", "dsw-host-ul", 9108, "eth1")
    assert here.vlans == (214, 220, 221)  # every VLAN of dsw-host: the uplink and each tenant's
    assert here.endpoint == "127.0.0.2/31" and far.endpoint == "127.0.0.3/31"  # each peer on-link
    assert [(p.name, p.port, str(p.endpoint)) for p in here.peers] == [("far", "vxh-far", "127.0.0.3")]
    assert here.peers[0].mac == far.mac != here.mac == far.peers[0].mac  # a peer's MAC, known to both
    assert here.mac.startswith(lab.switch.mac_prefix)
    assert here.vni == far.vni and here.udp_port == far.udp_port == 4789


@pytest.mark.parametrize(("endpoints", "prefixes"), [
    (("10.255.0.1", "10.255.0.2"), ["/30", "/30"]),
    (("10.255.0.1", "10.255.0.2", "10.255.0.3"), ["/30"] * 3),
    (("10.255.0.1", "10.255.0.9"), ["/28", "/28"]),
    (("2001:db8::a", "2001:db8::b"), ["/127", "/127"]),
])
def test_the_endpoint_prefix_holds_every_endpoint(endpoints, prefixes):
    lab = split(*endpoints, mtu=9128 if ":" in endpoints[0] else 9108)
    got = [stitch.plan(lab, h).endpoint for h in lab.hosts]
    assert got == [e + p for e, p in zip(endpoints, prefixes, strict=True)]
    three = stitch.plan(lab, "here")
    assert [p.name for p in three.peers] == [h for h in lab.hosts if h != "here"]


def test_no_stitch_without_a_second_host():
    with pytest.raises(ValueError, match="nothing to stitch"):
        stitch.plan(model.load(), "here")


def test_an_ovs_of_a_test_runs_in_its_namespace_on_its_socket(tmp_path: Path):
    o = Ovs(tmp_path, "mhdsw", 1500, sock=tmp_path / "sock", netns="mha", system_routes=False)
    assert o.vswitchd.argv[:5] == ("ip", "netns", "exec", "mha", "ovs-vswitchd")
    assert f"unix:{tmp_path}/sock/db.sock" in o.vswitchd.argv and "--disable-system-route" in o.vswitchd.argv
    assert f"--remote=punix:{tmp_path}/sock/db.sock" in o.ovsdb.argv
    host = Ovs(tmp_path, "dsw-host", 9054)  # the host's: libvirt's socket, the host's routes
    assert host.vswitchd.argv[0] == "ovs-vswitchd" and "--disable-system-route" not in host.vswitchd.argv
    assert "--remote=punix:/var/run/openvswitch/db.sock" in host.ovsdb.argv


def test_the_host_side_of_this_machine_only_where_it_is_one_of_the_hosts():
    from lab.vagrant.host import Host

    lab = split("10.255.0.1", "10.255.0.2")
    assert Host(lab).stitch == stitch.plan(lab, "here")
    assert Host(lab, host="far").stitch.peers[0].name == "here"
    assert Host(model.load()).stitch is None  # no hosts: as before
    remote_only = model.load(model.DEFAULT_LAB, [
        "hosts={a: {ssh: root@192.0.2.1, endpoint: 10.255.0.1, underlay_mtu: 9108, nic: eth1}, "
        "b: {ssh: root@192.0.2.2, endpoint: 10.255.0.2, underlay_mtu: 9108, nic: eth1}}",
        "router.host=a", "tenants.blue.host=a", "tenants.green.host=b"])
    assert Host(remote_only).stitch is None and Host(remote_only).seal_table.nics == ()
