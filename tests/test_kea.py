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
from lab.substrate.base import Service

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


def test_the_container_image_carries_kea_with_its_units_disabled():
    """The LXD image (and the Vagrant box, which bakes the image in) runs a Kea server; no
    container starts Kea on its own: the packages enable their units, the dhcp role does."""
    from lab.containers import image

    assert {"kea-dhcp4-server", "kea-ctrl-agent", "isc-dhcp-server"} <= set(image.IMAGE_PACKAGES)
    disable = [h for h in image._CUSTOMIZE_HOOKS if "systemctl disable" in h]
    assert disable and all(u in disable[0] for u in ("kea-dhcp4-server.service", "kea-ctrl-agent.service"))


def test_the_primarys_scope_by_address():
    lb, hs = model.load(sets=KEA), model.load(sets=[*KEA, "dhcp.kea.mode=hot-standby"])
    assert dhcp.primary_scope(lb, "192.0.2.50") and not dhcp.primary_scope(lb, "192.0.2.51")
    assert dhcp.primary_scope(hs, "192.0.2.90") and not dhcp.primary_scope(hs, None)
    assert not dhcp.primary_scope(model.load(), "192.0.2.10")  # dhcpd: never said


def test_the_secondary_takes_over_through_its_agent_or_says_why_not():
    lab = model.load(sets=KEA)
    fact = dhcp.take_over(lab, PathNode("greenDHCP"))
    assert fact.node == "greenDHCP" and fact.argv[-1] == "http://192.0.2.251:8000/"
    assert json.loads(fact.argv[fact.argv.index("-d") + 1]) == {"command": "ha-maintenance-start",
                                                                "service": ["dhcp4"]}
    done = [{"result": 0, "text": "Server is now in the partner-in-maintenance state."}]
    assert fact.parse(result(json.dumps(done))) is None
    refused = [{"result": 1, "text": "Unable to transition the server from the partner-down to "
                                     "partner-in-maintenance state."}]
    assert fact.parse(result(json.dumps(refused))) == refused[0]["text"]
    assert "Failed to connect" in fact.parse(result("curl: (7) Failed to connect", rc=7))


class DrillAccess:
    """What failover.dhcp reads and does, recorded: a Kea pair whose secondary answers
    ha-maintenance-start with `refusal` and then is `state` (its HA state)."""

    def __init__(self, lab, refusal=None, state="partner-down"):
        self.lab, self.refusal, self.state, self.done = lab, refusal, state, []
        self.addr: str | None = "192.0.2.10"

    def lease_server(self, name):
        return "192.0.2.250" if not self.done else "192.0.2.251"

    def in_primary_scope(self, name):
        return True

    def dhcpd(self, server):
        return Service("kea-dhcp4", ("kea-dhcp4",))

    def node(self, name):
        access = self

        class Node:
            def stop(self, svc):
                access.done.append(f"stop {svc.name} on {name}")
                access.addr = None

            def start(self, svc):
                access.done.append(f"start {svc.name} on {name}")

        return Node()

    def dhcp_take_over(self, server):
        self.done.append(f"tell {server}")
        return self.refusal

    def dhcp_partner_down(self, server):
        return self.state == "partner-down"

    def new_lease(self, name):
        self.done.append(f"new lease for {name}")
        self.addr = "192.0.2.11"

    def client_state(self, name):
        return type("Addressing", (), {"ipv4": self.addr})()

    def leases(self, server):
        return {}

    def dhcp_normal_state(self):
        return "load-balancing"

    def problems(self):
        return []


def test_the_kea_drill_tells_the_secondary_after_the_stop_and_before_the_client_asks():
    from lab.drills.dhcp import _trial

    access = DrillAccess(model.load(sets=KEA))
    report = _trial(access, deadline=2, progress=lambda m: None)
    assert access.done == ["stop kea-dhcp4 on blueDHCP", "tell greenDHCP", "new lease for blueC0",
                           "start kea-dhcp4 on blueDHCP"]
    assert report.ok and report.lease_s is not None, report.problems

    refused = DrillAccess(model.load(sets=KEA), refusal="Unable to transition",
                          state="partner-in-maintenance")
    report = _trial(refused, deadline=2, progress=lambda m: None)
    assert report.problems == ["greenDHCP did not take over: Unable to transition",
                               "greenDHCP did not take blueDHCP for down (partner-down)"]

    isc = DrillAccess(model.load(sets=["containers.driver=netns"]))
    assert _trial(isc, deadline=2, progress=lambda m: None).ok
    assert "tell greenDHCP" not in isc.done


@pytest.mark.parametrize("sets, where, why", [
    (["dhcp.v6=stateful", "containers.driver=netns"], "dhcp.v6", "set dhcp.server kea"),
    (["dhcp.server=kea", "dhcp.v6=stateful"], "dhcp.v6", "light containers only"),
    ([*KEA, "dhcp.v6=stateful", "dhcp.range6.first=2001:db8:8::1"], "dhcp.range6.first",
     "not in shared_vlan.ipv6"),
    ([*KEA, "dhcp.v6=stateful", "dhcp.range6.last=2001:db8:7::1000"], "dhcp.range6", "first must come"),
])
def test_stateful_dhcpv6_is_refused_in_words(sets, where, why):
    with pytest.raises(model.LabError) as e:
        model.load(sets=sets)
    assert f"{where}: " in str(e.value) and why in str(e.value)


def test_stateful_dhcpv6_runs_kea_dhcp6_and_dhclient_6():
    from lab.roles import client

    lab = model.load(sets=[*KEA, "dhcp.v6=stateful"])
    assert dhcp.daemon_pids(lab)["kea-dhcp6"] == "/run/kea/kea-dhcp6.kea-dhcp6.pid"
    assert "kea-dhcp6" not in dhcp.daemon_pids(model.load(sets=KEA))
    assert lab.dhcp.pools6()[0][0] == lab.dhcp.range6.first
    files = render.render(lab, "netns")
    assert "/etc/kea/kea-dhcp6.conf" in files["blueDHCP"]
    assert "/etc/kea/kea-dhcp6.conf" not in render.render(model.load(sets=KEA), "netns")["blueDHCP"]
    fact = dhcp.failover6(lab, PathNode("blueDHCP"))
    assert '"service": ["dhcp6"]' in fact.argv[2]
    assert fact.parse(result("kea-dhcp6 is not running\n")) == "kea-dhcp6 is not running"
    spec = lab.node("blueC0")
    deployment = Deployment.of(lab, "netns")
    t = Target(lab, spec, Light("blueC0", deployment.root(lab, spec)),
               render.render_node(lab, spec, deployment), light=True)
    assert [s.name for s in client.services(t)] == ["dhclient", "dhclient6"]
    assert client.dhclient6(t).argv[:2] == ("dhclient", "-6")


def test_a_clients_dhcpv6_lease_is_told_from_its_slaac_address():
    from lab import facts
    from lab.roles import client

    shown = [{"ifname": "eth0", "address": "22:7a:32:2a:cb:ba", "addr_info": [
        {"local": "2001:db8:7::1001", "prefixlen": 128},
        {"local": "2001:db8:7:0:207a:32ff:fe2a:cbba", "prefixlen": 64}]}]
    nic = client.nic(model.load(), PathNode("blueC0")).parse(result(json.dumps(shown)))
    route6 = facts.Route(gateway="fe80:7::de", dev="eth0")
    values = [nic, facts.Route(gateway=None, dev=None), route6]
    a = client.addressing_of(model.load(sets=[*KEA, "dhcp.v6=stateful"]), values)
    assert (a.slaac, a.dhcp6, a.gateway6) == ("2001:db8:7:0:207a:32ff:fe2a:cbba", "2001:db8:7::1001",
                                              "fe80:7::de")
    a = client.addressing_of(model.load(sets=KEA), values)  # slaac: no DHCPv6 lease is looked for
    assert a.dhcp6 is None and a.slaac == "2001:db8:7::1001"
