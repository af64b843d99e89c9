"""Kea beside ISC DHCP (dhcp.server): the model's choice and its refusals, the Kea lab's files
(golden, checked by kea-dhcp4 and kea-ctrl-agent in tests/test_validators.py), the role's
services and facts."""

import json
from pathlib import Path

import pytest
import yaml
from test_facts import PathNode, result

from lab import checks, model, render
from lab.deployment import Deployment
from lab.roles import dhcp
from lab.roles.target import Target

GOLDEN = Path(__file__).parent / "golden" / "kea"
KEA = ["dhcp.server=kea", "containers.driver=netns"]


def test_isc_stays_the_default_and_kea_changes_the_dhcp_servers_files_only():
    isc, kea = model.load(), model.load(sets=["dhcp.server=kea"])
    assert isc.dhcp.server == "isc"
    before, after = render.render(isc, "vagrant"), render.render(kea, "vagrant")
    for node, files in before.items():
        if node in ("blueDHCP", "greenDHCP"):
            assert set(files) == {"/etc/network/interfaces", "/etc/dhcp/dhcpd.conf",
                                  "/etc/default/isc-dhcp-server",
                                  "/etc/systemd/system/isc-dhcp-server.service"}
            assert set(after[node]) == {"/etc/network/interfaces", "/etc/kea/kea-dhcp4.conf",
                                        "/etc/kea/kea-ctrl-agent.conf"}
            assert after[node]["/etc/network/interfaces"] == files["/etc/network/interfaces"]
        else:
            assert after[node] == files, node


@pytest.mark.parametrize(("form", "substrate"), [("vagrant", "vagrant"), ("light", "netns")])
def test_a_kea_lab_renders_the_golden_files(form, substrate):
    """golden/kea/vagrant: Debian's paths (VMs, LXD containers); golden/kea/light: each light
    container's own."""
    lab = model.load(sets=KEA)
    files = render.render(lab, Deployment.of(lab, substrate))
    golden = sorted(f for f in (GOLDEN / form).rglob("*") if f.is_file())
    assert golden
    for f in golden:
        node, *rest = f.relative_to(GOLDEN / form).parts
        assert files[node]["/" + "/".join(rest)].text == f.read_text(), f"{node}: {f}"


def kea_conf(lab: model.Lab, server: str) -> dict:
    text = render.render(lab, "vagrant")[server]["/etc/kea/kea-dhcp4.conf"].text
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


def test_load_balancing_splits_the_range_and_hot_standby_shares_it():
    lab = model.load(sets=KEA)
    ha = kea_conf(lab, "greenDHCP")["Dhcp4"]["hooks-libraries"][1]["parameters"]["high-availability"][0]
    assert ha["this-server-name"] == "greenDHCP" and ha["mode"] == "load-balancing"
    assert [(p["name"], p["role"], p["url"]) for p in ha["peers"]] == [
        ("blueDHCP", "primary", "http://192.0.2.250:8000/"),
        ("greenDHCP", "secondary", "http://192.0.2.251:8000/")]
    subnet = kea_conf(lab, "greenDHCP")["Dhcp4"]["subnet4"][0]
    assert subnet["pools"] == [{"pool": "192.0.2.10 - 192.0.2.50", "client-class": "HA_blueDHCP"},
                               {"pool": "192.0.2.51 - 192.0.2.90", "client-class": "HA_greenDHCP"}]
    assert subnet["option-data"] == [{"name": "routers", "data": "192.0.2.222"}]
    d4 = kea_conf(lab, "greenDHCP")["Dhcp4"]
    assert (d4["valid-lifetime"], d4["max-valid-lifetime"]) == (600, 7200)
    assert d4["option-data"] == [{"name": "domain-name-servers", "data": "9.9.9.9"}]

    hs = model.load(sets=[*KEA, "dhcp.kea.mode=hot-standby"])
    conf = kea_conf(hs, "greenDHCP")["Dhcp4"]
    ha = conf["hooks-libraries"][1]["parameters"]["high-availability"][0]
    assert [p["role"] for p in ha["peers"]] == ["primary", "standby"]
    assert "delayed-updates-limit" not in ha  # load balancing's only
    assert conf["subnet4"][0]["pools"] == [{"pool": "192.0.2.10 - 192.0.2.90"}]


@pytest.mark.parametrize(("sets", "where", "why"), [
    (["dhcp.server=kea", "dhcp.split=200"], "dhcp.split", "half and half"),
    (["dhcp.server=kea", "dhcp.kea.max_response_delay_ms=500"], "dhcp.kea.max_response_delay_ms",
     "longer than heartbeat_delay_ms"),
    (["dhcp.server=kea", "dhcp.kea.mode=active"], "dhcp.kea.mode", "'load-balancing' or 'hot-standby'"),
    (["dhcp.server=kea", "dhcp.kea.heartbeat_delay_ms=10"], "dhcp.kea.heartbeat_delay_ms", "greater than"),
    (["dhcp.server=dhcpd"], "dhcp.server", "'isc' or 'kea'"),
])
def test_kea_settings_are_refused_in_words(sets, where, why):
    with pytest.raises(model.LabError) as e:
        model.load(sets=sets)
    assert any(p.path == where and why in p.message for p in e.value.problems), str(e.value)


def test_a_refusal_names_the_line_of_the_lab_file(tmp_path):
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["dhcp"]["server"] = "kea"
    data["dhcp"]["kea"]["mode"] = "hot-standby"
    data["dhcp"]["kea"]["heartbeat_delay_ms"] = 5000  # now longer than max_response_delay_ms
    f = tmp_path / "lab.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(model.LabError) as e:
        model.load(f)
    line = next(i for i, text in enumerate(f.read_text().splitlines(), 1) if "max_response_delay_ms" in text)
    assert f"{f}:{line}: dhcp.kea.max_response_delay_ms: must be longer" in str(e.value)
    data["dhcp"]["split"] = 255  # hot standby does not split: fine
    data["dhcp"]["kea"]["heartbeat_delay_ms"] = 500
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    assert model.load(f).dhcp.kea.mode == "hot-standby"


class Light(PathNode):
    kind = "namespace"


def test_kea_daemons_run_with_the_nodes_own_paths():
    lab = model.load(sets=KEA)
    spec = lab.node("blueDHCP")
    deployment = Deployment.of(lab, "netns")
    root = deployment.root(lab, spec)
    t = Target(lab, spec, Light("blueDHCP", root), render.render_node(lab, spec, deployment), light=True)
    d4, agent = dhcp.services(t)
    assert d4.argv == ("kea-dhcp4", "-c", f"{root}/etc/kea/kea-dhcp4.conf")
    assert agent.argv == ("kea-ctrl-agent", "-c", f"{root}/etc/kea/kea-ctrl-agent.conf")
    assert dict(d4.env) == {"KEA_PIDFILE_DIR": f"{root}/run/kea", "KEA_LOCKFILE_DIR": f"{root}/run/lock/kea"}
    assert d4.pidfiles == (f"{root}/run/kea/kea-dhcp4.kea-dhcp4.pid",)
    assert (d4.unit, agent.unit) == ("kea-dhcp4-server", "kea-ctrl-agent")
    assert dhcp.server(t) == d4
    isc = model.load(sets=["containers.driver=netns"])
    assert dhcp.server(Target(isc, spec, Light("blueDHCP", root),
                              render.render_node(isc, spec, deployment))).name == "dhcpd"


STATUS = [{"result": 0, "text": "", "arguments": {"pid": 7, "high-availability": [{
    "ha-mode": "load-balancing", "ha-servers": {
        "local": {"role": "primary", "scopes": ["blueDHCP"], "state": "partner-down"},
        "remote": {"role": "secondary", "last-state": "", "in-touch": False}}}]}}]


def test_kea_ha_state_from_status_get_and_a_stopped_server():
    lab = model.load(sets=KEA)
    fact = dhcp.failover(lab, PathNode("blueDHCP", "/r/blueDHCP"))
    assert "/r/blueDHCP/run/kea/kea-dhcp4.kea-dhcp4.pid" in fact.argv[2]
    assert "http://192.0.2.250:8000/" in fact.argv[2] and '"command": "status-get"' in fact.argv[2]
    assert fact.parse(result(json.dumps(STATUS))) == "partner-down"
    assert fact.parse(result(dhcp.KEA_NOT_RUNNING + "\n")) == dhcp.KEA_NOT_RUNNING
    assert fact.parse(result("curl: (7) Failed to connect", rc=7)) is None
    assert dhcp.normal(lab) == "load-balancing" and dhcp.normal(model.load()) == "normal"


DHCPD_LEASES = """\
lease 192.0.2.10 {
  starts 0 2026/11/29 16:00:00;
  binding state active;
  hardware ethernet 8e:4d:69:27:52:69;
}
failover peer "failover-partner" state {
  my state normal at 0 2026/11/29 16:00:00;
}
lease 192.0.2.11 {
  binding state active;
  hardware ethernet 62:c3:6a:3e:77:86;
}
lease 192.0.2.11 {
  binding state free;
  hardware ethernet 62:c3:6a:3e:77:86;
}
lease 192.0.2.12 {
  binding state backup;
}
"""


def test_dhcpd_leases_the_last_entry_of_each_address_if_active():
    fact = dhcp.leases(model.load(), PathNode("blueDHCP", "/r/blueDHCP"))
    assert fact.argv == ("cat", "/r/blueDHCP/var/lib/dhcp/dhcpd.leases")
    assert fact.parse(result(DHCPD_LEASES)) == {"192.0.2.10": "8e:4d:69:27:52:69"}
    assert fact.parse(result("", rc=1)) is None


def test_kea_leases_by_address():
    lab = model.load(sets=KEA)
    fact = dhcp.leases(lab, PathNode("greenDHCP"))
    leases = [{"result": 0, "arguments": {"leases": [
        {"ip-address": "192.0.2.60", "hw-address": "00:16:3e:00:00:01", "state": 0},
        {"ip-address": "192.0.2.61", "hw-address": "00:16:3e:00:00:02", "state": 2}]}}]
    assert fact.parse(result(json.dumps(leases))) == {"192.0.2.60": "00:16:3e:00:00:01"}
    assert fact.parse(result(json.dumps([{"result": 3, "text": "0 IPv4 lease(s) found."}]))) == {}
    assert fact.parse(result("", rc=7)) is None


def test_the_checks_want_both_kea_daemons_in_the_modes_normal_state():
    lab = model.load(sets=[*KEA, "dhcp.kea.mode=hot-standby"])
    pair = checks.dhcp_pair(lab, PathNode)
    said = {c.name: c.expect for c in pair if c.node == "greenDHCP"}
    assert said["gateway.daemons"] == "kea-dhcp4 and kea-ctrl-agent run"
    assert said["gateway.dhcp-failover"] == "kea-dhcp4 (secondary) in failover state hot-standby"


def test_the_drill_finds_an_address_bound_to_two_macs_and_unread_leases():
    from lab.drills.dhcp import double_bound

    same = {"blueDHCP": {"192.0.2.10": "8E:4D:69:27:52:69"}, "greenDHCP": {"192.0.2.10": "8e:4d:69:27:52:69"}}
    assert double_bound(same) == []
    two = {"greenDHCP (primary stopped)": {"192.0.2.10": "02:00:00:00:00:01"},
           "blueDHCP": {"192.0.2.10": "02:00:00:00:00:02", "192.0.2.11": "02:00:00:00:00:03"},
           "greenDHCP": None}
    assert double_bound(two) == [
        "the leases of greenDHCP could not be read",
        "192.0.2.10 is bound to 2 MACs: 02:00:00:00:00:01 (greenDHCP (primary stopped)); "
        "02:00:00:00:00:02 (blueDHCP)"]


class WithoutKea(PathNode):
    """An LXD container or VM of today's image and box: no kea-dhcp4; nothing may be placed."""

    kind = "LXD container"

    def run(self, argv, **kw):
        assert argv == ["sh", "-c", "command -v kea-dhcp4"], argv
        return result("", rc=1)


def test_a_node_without_kea_is_refused_before_anything_is_placed():
    from lab.substrate.base import CommandError

    lab = model.load(sets=["dhcp.server=kea"])
    spec = lab.node("blueDHCP")
    t = Target(lab, spec, WithoutKea("blueDHCP"), render.render_node(lab, spec, Deployment.of(lab, "netns")))
    with pytest.raises(CommandError, match="containers.driver netns"):
        dhcp.apply(t)


def test_the_primarys_scope_by_address():
    lb, hs = model.load(sets=KEA), model.load(sets=[*KEA, "dhcp.kea.mode=hot-standby"])
    assert dhcp.primary_scope(lb, "192.0.2.50") and not dhcp.primary_scope(lb, "192.0.2.51")
    assert dhcp.primary_scope(hs, "192.0.2.90") and not dhcp.primary_scope(hs, None)
    assert not dhcp.primary_scope(model.load(), "192.0.2.10")  # dhcpd: never said
