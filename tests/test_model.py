"""Every validation rule of the lab model: each bad input is refused, naming file, field, reason."""

import copy
import re
import time
from dataclasses import dataclass

import pytest
import yaml

from lab import model


def dump_and_parse(data, file="lab.yaml"):
    return model.parse(yaml.safe_dump(data, sort_keys=False), file)


@dataclass(frozen=True)
class Rename:
    """Give a mapping's key another name, in its place (a tenant, a sysctl key)."""

    to: str


def set_at(data, path, value):
    """Set the value at a field path; a key with dots is written in brackets: sysctl[net.a.b]."""
    *parents, last = [a or b for a, b in re.findall(r"\[([^\]]+)\]|([^.\[\]]+)", path)]
    for p in parents:
        data = data[int(p)] if isinstance(data, list) else data[p]
    if value is DELETE:
        del data[last]
    elif isinstance(value, Rename):
        items = [(value.to if k == last else k, v) for k, v in data.items()]
        data.clear()
        data.update(items)
    elif isinstance(data, list):
        data[int(last)] = value
    else:
        data[last] = value


DELETE = object()


def test_default_lab_is_the_seed():
    lab = model.load()
    assert lab.name == "vxlab"
    assert [n.name for n in lab.nodes()] == [
        "routerVM", "blueVM", "greenVM",
        "blueDHCP", "blueC0", "blueC1", "greenDHCP", "greenC0", "greenC1"]
    assert lab.master() == "green"
    assert lab.peer("blue") == "green"
    assert str(lab.vrrp.instances.ipv4.vip) == "192.0.2.222/24"
    assert lab.tenants["blue"].vrrp_priority == 220




def test_model_is_immutable():
    lab = model.load()
    with pytest.raises(Exception):  # noqa: B017 (pydantic raises its ValidationError)
        lab.name = "other"


# (what to change, new value, field path named in the error, words of the reason)
BAD = [
    ("nmae", "x", "nmae", "unknown key"),
    ("tenants.green.vrrp_priorty", 3, "tenants.green.vrrp_priorty", "did you mean 'vrrp_priority'"),
    ("tenants.green.vrrp_priority", "high", "tenants.green.vrrp_priority", "integer"),
    ("tenants.green.vrrp_priority", 255, "tenants.green.vrrp_priority", "less than or equal to 254"),
    ("tenants.green.vrrp_priority", 0, "tenants.green.vrrp_priority", "greater than or equal to 1"),
    ("tenants.green.vrrp_priority", 220, "tenants.green.vrrp_priority", "must differ"),
    ("tenants.blue.svi.ipv4", "192.0.2.300/24", "tenants.blue.svi.ipv4", "IPv4"),
    ("tenants.blue.svi.ipv4", "198.51.100.220/24", "tenants.blue.svi.ipv4", "outside 192.0.2.0/24"),
    ("tenants.blue.svi.ipv6", "2001:db8:8::dc/64", "tenants.blue.svi.ipv6", "outside 2001:db8:7::/64"),
    ("tenants.blue.svi.link_local", "2001:db8:7::1/64", "tenants.blue.svi.link_local", "link-local"),
    ("vrrp.instances.ipv4.vip", "198.51.100.222/24", "vrrp.instances.ipv4.vip", "outside"),
    ("vrrp.instances.ipv6.vip", "2001:db8:7::de/64", "vrrp.instances.ipv6.vip",
     "VRRPv3 needs a link-local"),
    ("vrrp.instances.ipv4.vid", 74, "vrrp.instances.ipv4.vid", "unknown key"),
    ("vrrp.emulated.track.interval", 0, "vrrp.emulated.track.interval", "greater than or equal to 1"),
    ("vrrp.emulated.track.ping_wait", 10, "vrrp.emulated.track.ping_wait", "shorter than the script"),
    ("vrrp.track.ping_wait", 5, "vrrp.track.ping_wait", "shorter than the script's timeout"),
    ("vrrp.emulated.advert", 2, "vrrp.emulated.advert", "unknown key"),
    ("vrrp.instances.ipv4.vrid", 256, "vrrp.instances.ipv4.vrid", "less than or equal to 255"),
    ("vrrp.fast.advert_ms", 105, "vrrp.fast.advert_ms", "centiseconds: 105 ms is not a multiple of 10"),
    ("vrrp.fast.advert_ms", 0.1, "vrrp.fast.advert_ms", "integer"),
    ("vrrp.fast.probe_ms", 1, "vrrp.fast.probe_ms", "greater than or equal to 2"),
    ("vrrp.fast.misses", 0, "vrrp.fast.misses", "greater than or equal to 1"),
    ("vrrp.fast.advert", 100, "vrrp.fast.advert", "unknown key"),
    ("dhcp.range.first", "192.0.3.10", "dhcp.range.first", "outside 192.0.2.0/24"),
    ("dhcp.range.last", "192.0.2.230", "dhcp.range", "covers 192.0.2.220"),
    ("dhcp.range.last", "192.0.2.251", "dhcp.range", "covers 192.0.2.250"),
    ("dhcp.range.first", "192.0.2.95", "dhcp.range", "is after last"),
    ("tenants.green.dhcp_server.ipv4", "192.0.2.50/24", "dhcp.range", "covers 192.0.2.50"),
    ("tenants.green.dhcp_server.ipv4", "192.0.3.251/24", "tenants.green.dhcp_server.ipv4", "outside"),
    ("tenants.green.clients.1", "blueC0", "tenants.green.clients.1", "already used"),
    ("tenants.green.clients.1", "BLUEc0", "tenants.green.clients.1", "already used"),
    ("tenants.green.dhcp_server.name", "routerVM", "tenants.green.dhcp_server.name", "already used"),
    ("tenants.green.clients.0", "green_C0", "tenants.green.clients.0", "should be a container name"),
    ("tenants.green.clients.0", "-greenC0", "tenants.green.clients.0", "should be a container name"),
    ("tenants.green.svi.ipv4", "192.0.2.220/24", "tenants.green.svi.ipv4", "already used"),
    ("tenants.green.underlay.tenant.ipv6", "2001:db8:dc::2/64", "tenants.green.underlay.tenant.ipv6",
     "outside"),
    ("shared_vlan.vxlan.vni", 0, "shared_vlan.vxlan.vni", "greater than or equal to 1"),
    ("shared_vlan.vxlan.vni", 16777216, "shared_vlan.vxlan.vni", "less than or equal to 16777215"),
    ("shared_vlan.vxlan.vni", "WhereIsMyTCAM", "shared_vlan.vxlan.vni", "integer"),
    ("shared_vlan.vxlan.underlay_mtu", 9050, "shared_vlan.vxlan.underlay_mtu", "need >= 9054"),
    ("tenants.green.vlan", 220, "tenants.green.vlan", "already used"),
    ("tenants.green.table", 220, "tenants.green.table", "already used"),
    ("tenants.green.table", 254, "tenants.green.table", "less than or equal to 252"),
    ("tenants.green.fwmark", 220, "tenants.green.fwmark", "already used"),
    ("tenants.green.vxlan_port", "vxlanGreenBlueTooLong", "tenants.green.vxlan_port",
     "should be an interface name: 1-15 letters"),
    ("tenants.green.dhcp_server.role", "primary", "tenants", "one primary and one secondary"),
    ("tenants.green.dhcp_server.role", "tertiary", "tenants.green.dhcp_server.role", "primary"),
    ("tenants.green.dhcp_server.port", 519, "tenants.green.dhcp_server.port", "one port"),
    ("router.uplink.ipv4", "172.16.97.200/24", "router.uplink.ipv4", "outside 172.16.96.0/24"),
    ("internet.gateway.link_local", "2001:db8::1/64", "internet.gateway.link_local", "link-local"),
    ("router.nat", "yes", "router.nat", "boolean"),
    ("internet.resolver.ipv6", "::1", "internet.resolver.ipv6", "not loopback ::1"),
    ("internet.resolver.ipv4", "0.0.0.0", "internet.resolver.ipv4", "not unspecified 0.0.0.0"),
    ("internet.resolver.ipv4", "224.0.0.18", "internet.resolver.ipv4", "not multicast"),
    ("internet.resolver.ipv6", "fe80::53", "internet.resolver.ipv6", "not link-local"),
    ("containers.driver", "docker", "containers.driver", "'lxd' or 'netns'"),
    ("name", "Vx Lab", "name", "should be a lab name: 1-12 lowercase letters"),
    ("radvd.min_interval", 9, "radvd.min_interval", "0.75"),
    ("router.uplink", DELETE, "router.uplink", "missing"),
]


@pytest.mark.parametrize(("path", "value", "where", "why"), BAD, ids=[b[0] + "=" + str(b[1]) for b in BAD])
def test_bad_input_is_refused_with_file_field_and_reason(lab_data, path, value, where, why):
    set_at(lab_data, path, value)
    with pytest.raises(model.LabError) as e:
        dump_and_parse(lab_data, "mylab.yaml")
    msg = str(e.value)
    assert any(p.path == where and why in p.message for p in e.value.problems), msg
    assert msg.startswith("mylab.yaml:")
    assert f": {where}: " in msg


# What a careless user or an attacker may write, and the words that refuse it (issue 14): a
# value that reaches a rendered file, a shell or the kernel carries no text of its own.
HOSTILE = [
    # 1. IPv6 addresses with a zone: Python's ipaddress keeps whatever follows '%'
    ("tenants.blue.svi.link_local", "fe80:7::dc%x;reboot/64", "tenants.blue.svi.link_local",
     "without a zone"),
    ("tenants.blue.svi.link_local", "fe80:7::dc%x\n\tup reboot/64", "tenants.blue.svi.link_local",
     "without a zone"),
    ("tenants.blue.svi.link_local", "fe80:7::dc%sw-vlan7/64", "tenants.blue.svi.link_local",
     "without a zone"),
    ("tenants.blue.svi.ipv6", "2001:db8:7::dc%x/64", "tenants.blue.svi.ipv6", "without a zone"),
    ("tenants.green.underlay.router.link_local", "fe80:dd::1%eth0/64",
     "tenants.green.underlay.router.link_local", "without a zone"),
    ("tenants.green.underlay.tenant.ipv6", "2001:db8:dd::2%x/64", "tenants.green.underlay.tenant.ipv6",
     "without a zone"),
    ("internet.gateway.link_local", "fe80:d6::1%x/64", "internet.gateway.link_local", "without a zone"),
    ("internet.resolver.ipv6", "2620:fe::fe%x;reboot", "internet.resolver.ipv6", "without a zone"),
    ("router.uplink.ipv6", "2001:678:3fc:d6::c8%x/64", "router.uplink.ipv6", "without a zone"),
    ("vrrp.instances.ipv6.vip", "fe80:7::de%x\n}\nvrrp_script x {/64", "vrrp.instances.ipv6.vip",
     "without a zone"),
    ("shared_vlan.ipv6", "2001:db8:7::%x/64", "shared_vlan.ipv6", "without a zone"),
    # 2. sysctl: the host's keys, and values that are not integers
    ("sysctl[kernel.core_pattern]", "|/bin/sh -c reboot", "sysctl.kernel.core_pattern", "only network keys"),
    ("sysctl[kernel.core_pattern]", 1, "sysctl.kernel.core_pattern", "host kernel's"),
    ("sysctl[vm.overcommit_memory]", 1, "sysctl.vm.overcommit_memory", "only network keys"),
    ("sysctl[fs.protected_symlinks]", 0, "sysctl.fs.protected_symlinks", "only network keys"),
    ("sysctl[net.core.rmem_max]", 1, "sysctl.net.core.rmem_max", "not per network namespace"),
    ("sysctl[net.core.bpf_jit_enable]", 1, "sysctl.net.core.bpf_jit_enable", "not per network namespace"),
    ("sysctl[net.ipv4.tcp_mem]", 1, "sysctl.net.ipv4.tcp_mem", "not per network namespace"),
    ("sysctl[net.ipv4.route.max_size]", 1, "sysctl.net.ipv4.route.max_size", "not per network namespace"),
    ("sysctl[net.ipv4.neigh.default.gc_thresh3]", 1, "sysctl.net.ipv4.neigh.default.gc_thresh3",
     "per interface"),
    ("sysctl[net.netfilter.nf_conntrack_max]", 1, "sysctl.net.netfilter.nf_conntrack_max",
     "not per network namespace"),
    ("sysctl[net.x25.restart_request_timeout]", 1, "sysctl.net.x25.restart_request_timeout",
     "net.x25 is not one of bridge, core"),
    ("sysctl[net.ipv4.ip_forward]", "1\nkernel.core_pattern=|/bin/sh", "sysctl.net.ipv4.ip_forward",
     "valid integer"),
    ("sysctl[net.ipv4.ip_forward]", "1", "sysctl.net.ipv4.ip_forward", "valid integer"),
    ("sysctl[net.ipv4.ip_forward]", True, "sysctl.net.ipv4.ip_forward", "valid integer"),
    ("sysctl[net.ipv4.ip_forward]", 2**64, "sysctl.net.ipv4.ip_forward", "less than or equal to"),
    ("sysctl[net.ipv4.ip_forward]", Rename("net.ipv4.ip_forward\nkernel.core_pattern"),
     "sysctl.'net.ipv4.ip_forward\\nkernel.core_pattern'", "should be a network key"),
    ("sysctl[net.ipv4.ip_forward]", Rename("net.ipv4..ip_forward"), "sysctl.net.ipv4..ip_forward",
     "should be a network key"),
    ("sysctl[net.ipv4.ip_forward]", Rename("net.ipv4.conf/../../../kernel/core_pattern"),
     "sysctl.'net.ipv4.conf/../../../kernel/core_pattern'", "should be a network key"),
    # 8. reasons in words, not a regular expression
    ("tenants.blue.switch", "C-3PO BLUE", "tenants.blue.switch", "should be an interface name: 1-15 letters"),
    ("vrrp.script_user", "root\nvrrp_script", "vrrp.script_user", "should be a user name"),
    ("dhcp.failover_peer", 'x"; reboot; "', "dhcp.failover_peer", "should be a failover peer name"),
    ("vrrp.sync_group", "g {", "vrrp.sync_group", "should be a keepalived name"),
    ("switch.mac_prefix", "BA:AD:CA:FE", "switch.mac_prefix", "lowercase hex"),
    # 9. accepted but wrong
    ("shared_vlan.ipv6", "2001:db8:7::/56", "shared_vlan.ipv6", "must be a /64"),
    ("dhcp.range.last", "192.0.2.12", "dhcp.range", "holds 3 addresses, fewer than the 4 clients"),
    ("tenants.blue.clients", [f"blueC{i}" for i in range(100)], "dhcp.range", "fewer than the 102 clients"),
    ("tenants.blue.clients", [f"blueC{i}" for i in range(1001)], "tenants.blue.clients", "at most 1000"),
    ("router.nic", "--all", "router.nic", "should be an interface name"),
    ("router.nic", "-x", "router.nic", "not starting with '.' or '-'"),
    ("dhcp.interface", "..", "dhcp.interface", "should be an interface name"),
    ("containers.nic", ".", "containers.nic", "should be an interface name"),
    ("shared_vlan.bridge", "all", "shared_vlan.bridge", "reserved: the kernel keeps the name"),
    ("tenants.green.vxlan_port", "default", "tenants.green.vxlan_port", "reserved"),
    ("tenants.green.nic", "lo", "tenants.green.nic", "own loopback"),
    ("tenants.green.nic", "eth0:1", "tenants.green.nic", "should be an interface name"),
    ("router.nic", "enp0s6abcdefghi", "router.nic", "subinterface enp0s6abcdefghi.214"),
    ("tenants.blue", Rename("main"), "tenants.main", "reserved: the name of one of iproute2's own"),
    ("tenants.blue", Rename("default"), "tenants.default", "routing tables"),
    ("tenants.blue", Rename("local"), "tenants.local", "routing tables"),
    ("tenants.blue", Rename("unspec"), "tenants.unspec", "routing tables"),
    ("tenants.blue", Rename("all"), "tenants.all", "table all"),
    ("tenants.blue", Rename("blue-team"), "tenants.blue-team", "should be a tenant name"),
    ("tenants.green.clients.0", "g" * 60, "tenants.green.clients.0", "66 characters long; LXD allows 63"),
    ("tenants.green.dhcp_server.name", "d" * 63, "tenants.green.dhcp_server.name", "LXD allows 63"),
    ("tenants.green.clients.0", "0green", "tenants.green.clients.0", "starting with a letter"),
    ("tenants.green.clients.0", "g" * 64, "tenants.green.clients.0", "should be a container name: 1-63"),
    ("router.vm", "routerVM\nup reboot", "router.vm", "should be a host name"),
    ("router.vm", "router.vm", "router.vm", "should be a host name"),
    ("router.resources.memory", 10**30, "router.resources.memory", "less than or equal to 1048576"),
    ("tenants.blue.resources.cpus", 10**6, "tenants.blue.resources.cpus", "less than or equal to 64"),
    ("vrrp.advert_int", 10**9, "vrrp.advert_int", "less than or equal to 40"),
    ("dhcp.max_lease_time", 10**12, "dhcp.max_lease_time", "less than or equal to"),
    ("vrrp.track.interval", 10**9, "vrrp.track.interval", "less than or equal to 4294"),
    ("vrrp.track.timeout", 4295, "vrrp.track.timeout", "less than or equal to 4294"),  # keepalived's
    ("internet.resolver.ipv4", True, "internet.resolver.ipv4", "written as text"),  # was 0.0.0.1
    ("internet.resolver.ipv4", 151587081, "internet.resolver.ipv4", "written as text"),
    ("vrrp.instances.ipv4.vip", 3221226206, "vrrp.instances.ipv4.vip", "written as text"),
]


@pytest.mark.parametrize(("path", "value", "where", "why"), HOSTILE,
                         ids=[f"{h[0]}={h[1]!r:.40}" for h in HOSTILE])
def test_hostile_input_is_refused_in_words_on_one_line(lab_data, path, value, where, why):
    set_at(lab_data, path, value)
    with pytest.raises(model.LabError) as e:
        dump_and_parse(lab_data, "mylab.yaml")
    msg = str(e.value)
    assert any(p.path == where and why in p.message for p in e.value.problems), msg
    assert all(line.startswith("mylab.yaml:") for line in msg.splitlines()), msg
    assert len(msg.splitlines()) == len(e.value.problems), msg  # one line each, whatever the input
    assert "should match pattern" not in msg and "'^" not in msg, msg  # words, not a regular expression


def test_every_name_kind_refuses_in_words(lab_data):
    """No field is left with a raw pattern for its reason: each name field, given a space."""
    paths = ["name", "switch.name", "switch.mac_prefix", "router.vm", "router.nic", "tenants.blue.vm",
             "tenants.blue.nic", "tenants.blue.switch", "tenants.blue.vxlan_port", "tenants.blue.clients.0",
             "tenants.blue.dhcp_server.name", "shared_vlan.bridge", "vrrp.sync_group", "vrrp.script_user",
             "vrrp.instances.ipv4.name", "dhcp.failover_peer", "dhcp.interface", "containers.nic"]
    for path in paths:
        set_at(lab_data, path, "a b")
    with pytest.raises(model.LabError) as e:
        dump_and_parse(lab_data)
    said = {p.path: p.message for p in e.value.problems}
    assert set(paths) <= set(said), str(e.value)
    for path in paths:
        assert said[path].startswith("should be ") and "pattern" not in said[path], said[path]


# 8. Files that crashed the loader or ate the machine's memory: (file content, line, words).
BOMB = "\n".join(["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                 + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
                 + ["name: *a9"]) + "\n"
LOADER = [
    ("alias bomb", BOMB, 5, "its aliases expand it to more than 20000 values"),
    ("recursive alias", "name: &x [*x]\n", 1, "recursive aliases"),
    ("recursive mapping", "a: &x {b: *x}\n", 1, "recursive aliases"),
    ("deep nesting", "name: " + "[" * 5000 + "]" * 5000 + "\n", 1, "nested deeper than 32 levels"),
    ("deep nesting through aliases", "a: &a [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]\n"
     "b: [[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]\n", 2, "nest it deeper than 32 levels"),
    ("invalid UTF-8", b"name: vx\xfflab\n", 1, "not UTF-8 text: byte 0xff"),
    ("UTF-8 cut short", b"name: vxlab\nrouter: \xc3", 2, "not UTF-8 text: byte 0xc3"),
    ("NUL character", "name: vxlab\nrouter: \x00\n", 2, "character U+0000 is not allowed"),
    ("a list as a key", "? [a, b]\n: 1\n", 1, "a key must be a plain value"),
    ("a day that does not exist", "name: 2001-02-30\n", 1, "cannot read this value: day is out of range"),
    ("an integer of 5000 digits", "name: " + "9" * 5000 + "\n", 1, "cannot read this value"),
    ("two documents", "name: a\n---\nname: b\n", 2, "but found another document"),
    ("a Python object", "name: !!python/object/apply:os.system [reboot]\n", 1,
     "could not determine a constructor"),
    ("a list", "- name\n", None, "must be a mapping"),
    ("nothing", "", None, "must be a mapping"),
    ("too large", "# " + "x" * (1 << 20) + "\n", None, "larger than 1024 KiB"),
]


@pytest.mark.parametrize(("content", "line", "why"), [x[1:] for x in LOADER], ids=[x[0] for x in LOADER])
def test_malformed_files_are_refused_quickly_on_one_line(tmp_path, content, line, why):
    f = tmp_path / "evil.yaml"
    f.write_bytes(content if isinstance(content, bytes) else content.encode())
    started = time.monotonic()
    with pytest.raises(model.LabError) as e:
        model.load(f)
    assert time.monotonic() - started < 2
    (msg,) = str(e.value).splitlines()
    assert msg.startswith(f"{f}:{line}: (top): " if line else f"{f}: (top): "), msg
    assert why in msg, msg


def test_the_size_limit_holds_for_unending_files():
    with pytest.raises(model.LabError, match="larger than 1024 KiB"):
        model.load("/dev/zero")


def test_a_third_tenant_is_refused(lab_data):
    lab_data["tenants"]["red"] = lab_data["tenants"]["blue"]
    with pytest.raises(model.LabError, match="exactly two tenants"):
        dump_and_parse(lab_data)


def test_malformed_yaml_names_line():
    with pytest.raises(model.LabError, match=r"lab.yaml:2: \(top\): malformed YAML, column 6: "):
        model.parse("name: vxlab\n  bad: [indent\n", "lab.yaml")


def test_key_given_twice_is_refused():
    # a mapping keyed by family means a second IPv4 VRRP instance can only be a repeated key:
    # PyYAML would silently keep the last one
    text = model.DEFAULT_LAB.read_text().replace(
        "    ipv6: {name: VXLAN_7_IPv6",
        "    ipv4: {name: VXLAN_7_IPv4b, vrid: 75, vip: 192.0.2.223/24}\n    ipv6: {name: VXLAN_7_IPv6")
    with pytest.raises(model.LabError, match="'ipv4' is given twice"):
        model.parse(text, "lab.yaml")


def test_error_names_the_line_of_the_field():
    text = model.DEFAULT_LAB.read_text().replace("vrrp_priority: 221", "vrrp_priority: 220")
    line = next(i for i, s in enumerate(text.splitlines(), 1) if "vrrp_priority: 220" in s
                and i > text[: text.index("green:")].count("\n"))
    with pytest.raises(model.LabError) as e:
        model.parse(text, "lab.yaml")
    assert f"lab.yaml:{line}: tenants.green.vrrp_priority: must differ" in str(e.value)


def test_every_problem_is_reported_at_once(lab_data):
    set_at(lab_data, "tenants.green.vrrp_priority", 300)
    set_at(lab_data, "shared_vlan.vxlan.vni", -1)
    with pytest.raises(model.LabError) as e:
        dump_and_parse(lab_data)
    assert {p.path for p in e.value.problems} >= {"tenants.green.vrrp_priority",
                                                  "shared_vlan.vxlan.vni"}


def test_missing_file():
    with pytest.raises(model.LabError, match="nothere.yaml: .*cannot read"):
        model.load("nothere.yaml")


SETS_OK = [  # --set as typed -> the field it changed
    (["name=alice"], lambda lab: lab.name == "alice"),
    (["tenants.blue.clients=[blueC0, blueC1, blueC2]"], lambda lab: len(lab.tenants["blue"].clients) == 3),
    (["tenants.blue.clients.1=blueX"], lambda lab: lab.tenants["blue"].clients[1] == "blueX"),
    (["sysctl.net.ipv4.conf.all.log_martians=0"],
     lambda lab: lab.sysctl["net.ipv4.conf.all.log_martians"] == 0),
    (["radvd.min_interval=5", "radvd.min_interval=6"], lambda lab: lab.radvd.min_interval == 6),  # in order
]

SETS_BAD = [  # --set as typed -> the one line that refuses it
    ("name", "--set name: give KEY=VALUE"),
    ("=3", "--set =3: give KEY=VALUE"),
    ("tenants..vlan=3", "a dotted path without empty parts"),
    ("tenants.blu.vlan=3",
     "--set tenants.blu.vlan: tenants.blu is not in the lab description (there: blue, green)"),
    ("tenants.blue.clients.7=x", "--set tenants.blue.clients.7: '7' is not an index of a list of 2"),
    ("name.first=a", "--set name.first: name holds a value, not keys"),
    ("name=[a", "--set name: not a YAML value"),
    ("tenants.blue.vlan=x", "--set tenants.blue.vlan: Input should be a valid integer"),
    ("tenants.blue.colour=red", "--set tenants.blue.colour: unknown key"),
]


@pytest.mark.parametrize(("sets", "holds"), SETS_OK, ids=[" ".join(s[0]) for s in SETS_OK])
def test_set_changes_the_description_before_validation(sets, holds):
    assert holds(model.load(model.DEFAULT_LAB, sets))


@pytest.mark.parametrize(("text", "said"), SETS_BAD, ids=[s[0] for s in SETS_BAD])
def test_a_bad_set_is_refused_naming_the_key(text, said):
    with pytest.raises(model.LabError) as e:
        model.load(model.DEFAULT_LAB, [text])
    assert said in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("--set ")


def test_clients_by_count_are_named_as_the_seed_names_them():
    lab = model.load(model.DEFAULT_LAB, ["tenants.blue.clients=3", "tenants.green.clients=0"])
    assert lab.tenants["blue"].clients == ("blueC0", "blueC1", "blueC2")
    assert lab.tenants["green"].clients == ()
    with pytest.raises(model.LabError, match=r"tenants.blue.clients: a list of names or a count from 0"):
        model.load(model.DEFAULT_LAB, ["tenants.blue.clients=1001"])


# -- placement: `hosts:` and each VM's `host:` (issue 19) ------------------------------------

TWO_HOSTS = {"here": {"endpoint": "127.0.0.2", "underlay_mtu": 9108, "nic": "eth1"},
             "far": {"ssh": "root@127.0.0.1", "endpoint": "127.0.0.3", "underlay_mtu": 9108, "nic": "eth1"}}


@pytest.fixture
def split_data(lab_data) -> dict:
    """The default lab with greenVM on a second host, reached over SSH."""
    lab_data["hosts"] = copy.deepcopy(TWO_HOSTS)
    lab_data["tenants"]["green"]["host"] = "far"
    return lab_data


def test_a_lab_without_hosts_runs_on_this_machine():
    lab = model.load()
    assert lab.hosts is None
    assert lab.placement() == {"routerVM": None, "blueVM": None, "greenVM": None}
    # what the embedded lab records of its description says nothing of placement either
    said = lab.model_dump(mode="json", exclude_none=True)
    assert "hosts" not in said and "host" not in said["router"] and "host" not in said["tenants"]["blue"]


def test_placement_defaults_to_this_machine(split_data):
    lab = dump_and_parse(split_data)
    assert lab.placement() == {"routerVM": "here", "blueVM": "here", "greenVM": "far"}
    assert lab.local_host() == "here"
    far = lab.hosts["far"].ssh
    assert (far.user, far.address, far.port) == ("root", "127.0.0.1", 22)


# (what to change in the split lab, new value, a field of the model, what it holds)
PLACEMENT_GOOD = [
    ("hosts.far.ssh", {"user": "vxlab", "address": "lab2.example.org", "port": 2222}, "hosts.far.ssh.port",
     2222),
    ("hosts.far.ssh", "root@2001:db8::2", "hosts.far.ssh.address", "2001:db8::2"),
    ("hosts.far.ssh", "root@LAB2", "hosts.far.ssh.address", "LAB2"),
    ("tenants.blue.host", "here", "tenants.blue.host", "here"),
]


@pytest.mark.parametrize(("path", "value", "field", "holds"), PLACEMENT_GOOD,
                         ids=[f"{g[0]}={g[1]!r:.40}" for g in PLACEMENT_GOOD])
def test_placement_accepts(split_data, path, value, field, holds):
    set_at(split_data, path, value)
    obj = dump_and_parse(split_data)
    for part in field.split("."):
        obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
    assert obj == holds


def test_ipv6_endpoints_need_20_bytes_more(split_data):
    split_data["hosts"]["here"]["endpoint"] = "2001:db8:ff::2"
    split_data["hosts"]["far"]["endpoint"] = "2001:db8:ff::3"
    with pytest.raises(model.LabError, match=r"hosts.here.underlay_mtu: 9108 is too small.*need >= 9128"):
        dump_and_parse(split_data)
    split_data["hosts"]["here"]["underlay_mtu"] = split_data["hosts"]["far"]["underlay_mtu"] = 9128
    assert dump_and_parse(split_data).hosts["far"].endpoint.version == 6


def test_one_remote_host_needs_no_tunnel(lab_data):
    """The whole lab on one server reached over SSH: every VM names it, no endpoint, no MTU."""
    lab_data["hosts"] = {"server": {"ssh": "root@192.0.2.10"}}
    for part in (lab_data["router"], *lab_data["tenants"].values()):
        part["host"] = "server"
    assert set(dump_and_parse(lab_data).placement().values()) == {"server"}


# (what to change in the split lab, new value, field path named in the error, words of the reason)
PLACEMENT_BAD = [
    # every VM on a declared host
    ("tenants.green.host", "fra", "tenants.green.host", "'fra' is not in hosts: (declared: here, far)"),
    ("hosts.here.ssh", "root@192.0.2.1", "router.host", "missing: every host in hosts: is reached over SSH"),
    ("hosts.far", DELETE, "tenants.green.host", "'far' is not in hosts"),
    ("hosts.spare", {"ssh": "root@192.0.2.9", "endpoint": "192.0.2.9", "underlay_mtu": 9108, "nic": "eth1"},
     "hosts.spare", "runs no VM of the lab"),
    ("hosts.far.ssh", DELETE, "hosts.far", "is this machine, as hosts.here is already"),
    ("hosts", {}, "hosts", "declares no host"),
    # tunnel endpoints: stated, distinct, of one family, outside the lab
    ("hosts.far.endpoint", DELETE, "hosts.far.endpoint", "missing: with more than one host"),
    ("hosts.far.endpoint", "127.0.0.2", "hosts.far.endpoint", "already hosts.here's endpoint"),
    ("hosts.far.endpoint", "2001:db8:ff::3", "hosts", "mix IPv4 and IPv6"),
    ("hosts.far.endpoint", "172.16.220.1", "hosts.far.endpoint", "a lab address (tenants.blue.underlay"),
    ("hosts.far.endpoint", "0.0.0.0", "hosts.far.endpoint", "not unspecified"),
    ("hosts.far.endpoint", "239.1.1.1", "hosts.far.endpoint", "not multicast"),
    ("hosts.far.endpoint", "fe80::3", "hosts.far.endpoint", "not link-local"),
    ("hosts.far.endpoint", "127.0.0.3/8", "hosts.far.endpoint", "should be an IPv4 or IPv6 address"),
    ("hosts.far.endpoint", 2130706435, "hosts.far.endpoint", "written as text"),
    # the underlay MTU: stated and large enough
    ("hosts.far.underlay_mtu", DELETE, "hosts.far.underlay_mtu", "missing: with more than one host"),
    ("hosts.far.nic", DELETE, "hosts.far.nic", "missing: with more than one host, name the NIC"),
    ("hosts.far.nic", "eth1 up", "hosts.far.nic", "should be an interface name"),
    ("hosts.far.underlay_mtu", 9107, "hosts.far.underlay_mtu",
     "9107 is too small: dsw-host's frames carry 9054 bytes"),
    ("hosts.far.underlay_mtu", 1500, "hosts.far.underlay_mtu", "need >= 9108"),
    ("hosts.far.underlay_mtu", 100, "hosts.far.underlay_mtu", "greater than or equal to 1280"),
    ("hosts.far.undrlay_mtu", 9108, "hosts.far.undrlay_mtu", "did you mean 'underlay_mtu'"),
]
HOSTILE_PLACEMENT = [
    ("hosts.far.ssh", "root@-oProxyCommand=reboot", "hosts.far.ssh", "should be an IP address or a DNS name"),
    ("hosts.far.ssh", "-oProxyCommand=reboot@x", "hosts.far.ssh", "should be a user name"),
    ("hosts.far.ssh", "root@127.0.0.1 -p 2", "hosts.far.ssh", "should be an IP address or a DNS name"),
    ("hosts.far.ssh", "root@lab2\nProxyCommand x", "hosts.far.ssh", "should be an IP address or a DNS name"),
    ("hosts.far.ssh", "root@10.0.0.256", "hosts.far.ssh", "its last part is a number"),
    ("hosts.far.ssh", "root@fe80::1%eth0", "hosts.far.ssh", "without a zone"),
    ("hosts.far.ssh", "root", "hosts.far.ssh", "should be user@address"),
    ("hosts.far.ssh", {"user": "root", "address": "x..y"}, "hosts.far.ssh.address", "a DNS name"),
    ("hosts.far.ssh", {"user": "root", "address": "a" * 64}, "hosts.far.ssh.address", "a DNS name"),
    ("hosts.far.ssh", {"user": "root", "address": "h", "port": 0}, "hosts.far.ssh.port",
     "greater than or equal to 1"),
    ("hosts.far.ssh", {"user": "root", "address": "h", "port": "22"}, "hosts.far.ssh.port", "integer"),
    ("hosts.far.ssh", {"user": "root", "addr": "h"}, "hosts.far.ssh.addr", "did you mean 'address'"),
    ("hosts.far.endpoint", "127.0.0.3\nup reboot", "hosts.far.endpoint", "should be an IPv4 or IPv6"),
    ("hosts.far.endpoint", "fe80::3%eth0", "hosts.far.endpoint", "without a zone"),
    ("hosts.far", Rename("Far"), "hosts.Far", "should be a host's name in the lab"),
    ("hosts.far", Rename("far-away"), "hosts.far-away", "1-11 lowercase letters or digits"),
    ("hosts.far", Rename("farfarawayhost"), "hosts.farfarawayhost", "1-11 lowercase"),
    ("tenants.green.host", "far;reboot", "tenants.green.host", "should be a host's name in the lab"),
    ("router.host", 1, "router.host", "string"),
]


@pytest.mark.parametrize(("path", "value", "where", "why"), PLACEMENT_BAD + HOSTILE_PLACEMENT,
                         ids=[f"{b[0]}={b[1]!r:.40}" for b in PLACEMENT_BAD + HOSTILE_PLACEMENT])
def test_bad_placement_is_refused_in_words_on_its_line(split_data, path, value, where, why):
    set_at(split_data, path, value)
    text = yaml.safe_dump(split_data, sort_keys=False)
    with pytest.raises(model.LabError) as e:
        model.parse(text, "mylab.yaml")
    msg = str(e.value)
    assert any(p.path == where and why in p.message for p in e.value.problems), msg
    assert len(msg.splitlines()) == len(e.value.problems), msg  # one line each, whatever the input
    assert "pattern" not in msg, msg
    line = next(ln for ln in msg.splitlines() if f": {where}: " in ln)
    number = int(line.split(":")[1])
    *parent, key = where.split(".")  # a missing key: the line of the mapping that lacks it
    said = key if "missing" not in line else parent[-1]
    assert f"{said}:" in text.splitlines()[number - 1], (line, text.splitlines()[number - 1])


def test_host_without_hosts_is_refused(lab_data):
    lab_data["router"]["host"] = "far"
    with pytest.raises(model.LabError, match=r"router.host: names host 'far', but the lab declares no hosts"):
        dump_and_parse(lab_data)
