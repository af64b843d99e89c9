"""Kea beside ISC DHCP (dhcp.server): the model's choice and its refusals, the Kea lab's files
(golden, checked by kea-dhcp4 and kea-ctrl-agent in tests/test_validators.py)."""

import json
from pathlib import Path

import pytest
import yaml

from lab import model, render
from lab.deployment import Deployment

GOLDEN = Path(__file__).parent / "golden" / "kea"
KEA = ["dhcp.server=kea", "containers.driver=netns"]


def test_isc_stays_the_default_and_kea_changes_the_dhcp_servers_files_only():
    isc, kea = model.load(), model.load(sets=["dhcp.server=kea"])
    assert isc.dhcp.server == "isc"
    before, after = render.render(isc, "vagrant"), render.render(kea, "vagrant")
    for node, files in before.items():
        if node in ("blueDHCP", "greenDHCP"):
            assert set(files) == {"/etc/network/interfaces", "/etc/dhcp/dhcpd.conf",
                                  "/etc/default/isc-dhcp-server"}
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
