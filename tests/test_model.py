"""Every validation rule of the lab model: each bad input is refused, naming file, field, reason."""

import pytest
import yaml

from lab import model


def dump_and_parse(data, file="lab.yaml"):
    return model.parse(yaml.safe_dump(data, sort_keys=False), file)


def set_at(data, path, value):
    *parents, last = path.split(".")
    for p in parents:
        data = data[int(p)] if isinstance(data, list) else data[p]
    if value is DELETE:
        del data[last]
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
    ("dhcp.range.first", "192.0.3.10", "dhcp.range.first", "outside 192.0.2.0/24"),
    ("dhcp.range.last", "192.0.2.230", "dhcp.range", "covers 192.0.2.220"),
    ("dhcp.range.last", "192.0.2.251", "dhcp.range", "covers 192.0.2.250"),
    ("dhcp.range.first", "192.0.2.95", "dhcp.range", "is after last"),
    ("tenants.green.dhcp_server.ipv4", "192.0.2.50/24", "dhcp.range", "covers 192.0.2.50"),
    ("tenants.green.dhcp_server.ipv4", "192.0.3.251/24", "tenants.green.dhcp_server.ipv4", "outside"),
    ("tenants.green.clients.1", "blueC0", "tenants.green.clients.1", "already used"),
    ("tenants.green.clients.1", "BLUEc0", "tenants.green.clients.1", "already used"),
    ("tenants.green.dhcp_server.name", "routerVM", "tenants.green.dhcp_server.name", "already used"),
    ("tenants.green.clients.0", "green_C0", "tenants.green.clients.0", "should match pattern"),
    ("tenants.green.clients.0", "-greenC0", "tenants.green.clients.0", "should match pattern"),
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
    ("tenants.green.vxlan_port", "vxlanGreenBlueTooLong", "tenants.green.vxlan_port", "pattern"),
    ("tenants.green.dhcp_server.role", "primary", "tenants", "one primary and one secondary"),
    ("tenants.green.dhcp_server.role", "tertiary", "tenants.green.dhcp_server.role", "primary"),
    ("tenants.green.dhcp_server.port", 519, "tenants.green.dhcp_server.port", "one port"),
    ("router.uplink.ipv4", "172.16.97.200/24", "router.uplink.ipv4", "outside 172.16.96.0/24"),
    ("internet.gateway.link_local", "2001:db8::1/64", "internet.gateway.link_local", "link-local"),
    ("router.nat", "yes", "router.nat", "boolean"),
    ("containers.driver", "docker", "containers.driver", "'lxd' or 'netns'"),
    ("name", "Vx Lab", "name", "pattern"),
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


def test_a_third_tenant_is_refused(lab_data):
    lab_data["tenants"]["red"] = lab_data["tenants"]["blue"]
    with pytest.raises(model.LabError, match="exactly two tenants"):
        dump_and_parse(lab_data)


def test_malformed_yaml_names_line():
    with pytest.raises(model.LabError, match=r"lab.yaml: \(top\): malformed YAML: line 2"):
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
