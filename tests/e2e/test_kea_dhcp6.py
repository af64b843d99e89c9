"""dhcp.v6 stateful on the embedded lab, light containers: a kea-dhcp6 HA pair beside the
kea-dhcp4 pair leases each client an address of range6 (both halves used), radvd's adverts
carry the managed flag, SLAAC stays, every check of the seed passes, status shows both HA
states and the DHCPv6 leases, and the DHCPv4 drill still passes."""

from __future__ import annotations

import ipaddress
import json

import pytest
from conftest import light_lab_file, needs_root, running_lab

from lab import checks, commands, drills

pytestmark = [needs_root("keepalived", "kea-dhcp4", "kea-dhcp6", "kea-ctrl-agent", "radvd", "rdisc6"),
              pytest.mark.e2e]


@pytest.fixture(scope="module")
def elab(tmp_path_factory):
    yield from running_lab(light_lab_file(tmp_path_factory, "vxkea6", "dhcp.server=kea", "dhcp.v6=stateful"))


def test_status_shows_both_ha_pairs_and_the_dhcpv6_leases(elab):
    st = json.loads(commands.status_json(commands.status(elab)))
    assert st["converged"] is True, st["problems"]
    rows = {n["node"]: n for n in st["nodes"]}
    for server in ("blueDHCP", "greenDHCP"):
        assert rows[server]["failover"] == rows[server]["failover6"] == "load-balancing"
        assert rows[server]["services"]["kea-dhcp6"] == "running"
    r6 = elab.lab.dhcp.range6
    leased = {c: rows[c]["dhcp6"] for c in ("blueC0", "blueC1", "greenC0", "greenC1")}
    assert all(a and r6.first <= ipaddress.ip_address(a) <= r6.last for a in leased.values()), leased
    assert all(rows[c]["slaac"] and rows[c]["slaac"] not in leased.values() for c in leased)
    halves = elab.lab.dhcp.pools6()
    # load balancing: each server leased from its own half (four clients: both halves, as seen)
    assert {next(i for i, (a, b) in enumerate(halves) if a <= ipaddress.ip_address(x) <= b)
            for x in leased.values()} == {0, 1}, leased


def test_radvd_advertises_the_managed_flag(elab):
    out = elab.node("blueC0").run(["rdisc6", "-1", elab.lab.containers.nic]).out
    assert any(line.split(":")[0].strip() == "Stateful address conf." and line.split(":")[1].strip() == "Yes"
               for line in out.splitlines()), out


def test_every_check_passes_the_dhcpv6_ones_too(elab):
    report = checks.run(checks.build(elab.lab, elab.node), elab.node, wait=30)
    assert report.ok, report.table()
    names = {o.check.name for o in report.outcomes}
    assert {"addressing.lease6", "gateway.dhcp6-failover"} <= names


def test_the_dhcp_drill_still_passes(elab):
    report = drills.dhcp(elab)
    print(drills.dhcp_summary(report))
    assert report.ok, drills.dhcp_summary(report)
