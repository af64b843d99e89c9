"""Facts: each role's reading of its daemons' state, parsed once, and the checks built on them."""

import json

from lab import checks, facts, model
from lab.roles import client, dhcp, tenant
from lab.substrate.base import Result


class PathNode:
    """A node for building facts and checks: a name and where its paths are."""

    def __init__(self, name: str, root: str = "") -> None:
        self.name, self.root = name, root

    def path(self, p: str) -> str:
        return self.root + p


def result(out: str, rc: int = 0) -> Result:
    return Result(("x",), rc, out, "")


def test_a_nic_and_its_addresses_from_ip_json():
    lab = model.load()
    shown = [{"ifname": "eth0", "address": "00:16:3e:2d:4f:16", "addr_info": [
        {"local": "192.0.2.20", "prefixlen": 24},
        {"local": "2001:db8:7:0:216:3eff:fe2d:4f16", "prefixlen": 64},
        {"local": "fe80::216:3eff:fe2d:4f16", "prefixlen": 64}]}]
    nic = client.nic(lab, PathNode("blueC0")).parse(result(json.dumps(shown)))
    assert nic.mac == "00:16:3e:2d:4f:16"
    assert nic.ips(lab.shared_vlan.ipv4) == ["192.0.2.20"]
    assert checks.seed.slaac(lab.shared_vlan.ipv6)(nic) is None
    assert checks.seed.lease_in(lab.dhcp.range.first, lab.dhcp.range.last, lab.shared_vlan.ipv4)(nic) is None
    gone = client.nic(lab, PathNode("blueC0")).parse(result("", rc=1))
    assert gone.mac is None and checks.seed.slaac(lab.shared_vlan.ipv6)(gone) == "no such interface"


def test_the_vrrp_state_the_seeds_notify_script_wrote():
    fact = tenant.vrrp(PathNode("greenVM", "/run/vxlab/x/greenVM"))
    assert fact.argv == ("cat", "/run/vxlab/x/greenVM/var/run/keepalived_status")
    status = "GROUP vrrp_group has transitioned to the FAULT state with a priority of 0"
    assert fact.parse(result(status)) == "FAULT"
    assert fact.parse(result("", rc=1)) is None


def test_a_stopped_dhcpd_is_not_taken_for_its_last_recorded_state():
    fact = dhcp.failover(model.load(), PathNode("blueDHCP"))
    assert fact.parse(result("my state startup\nmy state normal\n")) == "normal"
    assert fact.parse(result(dhcp.NOT_RUNNING + "\n")) == dhcp.NOT_RUNNING


def test_dead_daemons_and_an_unreachable_node():
    fact = facts.dead(PathNode("blueVM"), tenant.DAEMONS)
    assert fact.parse(result("radvd\n")) == ["radvd"]
    assert fact.parse(result("")) == []
    assert fact.parse(result("", rc=-1)) == list(tenant.DAEMONS)  # not read: not running either


def test_converged_is_a_named_subset_of_the_checks():
    lab = model.load()
    subset = checks.converged(lab, PathNode)
    every = {(c.name, c.node)
             for c in (*checks.seed.addressing(lab, PathNode), *checks.seed.gateway(lab, PathNode),
                       *checks.seed.router(lab, PathNode))}
    assert {(c.name, c.node) for c in subset} <= every
    clients = {c for t in lab.tenants.values() for c in t.clients}
    tenants = {t.vm for t in lab.tenants.values()}
    servers = {t.dhcp_server.name for t in lab.tenants.values()}
    names = {(c.name, c.node) for c in subset}
    for c in clients:
        assert {(f"addressing.{k}", c) for k in ("lease", "slaac", "route4", "route6")} <= names
    for vm in tenants:
        assert {("gateway.vips", vm), ("gateway.vrrp", vm), ("gateway.daemons", vm)} <= names
    for s in servers:
        assert {("gateway.daemons", s), ("gateway.dhcp-failover", s)} <= names
    assert {("router.rules4", lab.router.vm), ("router.table6", lab.router.vm)} <= names
    assert not any(c.name in ("addressing.static", "addressing.dns", "router.conntrack4") for c in subset)
    assert {c.node for c in checks.dhcp_pair(lab, PathNode)} == servers


def test_the_interfaces_files_intent_and_what_puts_each_piece_back():
    from lab import render
    from lab.roles import interfaces

    files = render.render(model.load(), "vagrant")
    router = interfaces.intent(files["routerVM"]["/etc/network/interfaces"].text)
    assert "enp0s6" in router.links and "enp0s6.220" in router.addresses
    green = [r for r in router.routes if r.table == "green" and r.dst == "default"]
    assert [" ".join(r.fix()) for r in green if r.family == 4] == [
        "ip -4 route replace default via 172.16.96.1 dev enp0s6.214 table green"]
    assert {(r.family, r.pref) for r in router.rules} == {(4, 220), (6, 220), (4, 221), (6, 221)}
    tenant_ = interfaces.intent(files["greenVM"]["/etc/network/interfaces"].text)
    assert "vxlanGreenBlue" not in tenant_.links  # an OVS tunnel port: no kernel link of its own
    assert "fe80:7::dd/64" in tenant_.addresses["sw-vlan7"]


def test_the_routers_tables_and_rules_are_compared_route_by_route_and_named_in_words():
    lab = model.load()
    router = {(c.name, c.argv[-1] if c.name.startswith("router.table") else ""): c
              for c in checks.seed.router(lab, PathNode)
              if c.name.startswith(("router.table4", "router.rules4"))}
    table = router[("router.table4", "green")]
    shown = [{"dst": "default", "gateway": "172.16.96.1", "dev": "enp0s6.214"},
             {"dst": "192.0.2.0/24", "gateway": "172.16.221.2", "dev": "enp0s6.221"},
             {"dst": "172.16.221.0/24", "dev": "enp0s6.221", "protocol": "kernel", "scope": "link"},
             {"dst": "172.16.96.0/24", "dev": "enp0s6.214", "protocol": "kernel", "scope": "link"}]
    assert table.holds(result(json.dumps(shown))) is None
    found = table.holds(result(json.dumps(shown[1:])))
    assert found == "no route default via 172.16.96.1 dev enp0s6.214"
    rules = router[("router.rules4", "")]
    shown = [{"priority": 0, "src": "all", "table": "local"},
             {"priority": 220, "src": "all", "fwmark": "0xdc", "table": "blue"}]
    assert rules.holds(result(json.dumps(shown))) == "no rule pref 221 fwmark 0xdd lookup green"


def test_failing_checks_say_what_they_found_in_words():
    assert checks.replies(Result(("ping",), 1, "2 packets transmitted, 0 received, 100% packet loss", "")) \
        == "no reply to 2 pings"
    assert checks.replies(Result(("ping",), 2, "", "ping: connect: Network is unreachable")) \
        == "cannot ping: ping: connect: Network is unreachable"
    dns = checks.seed.nameserver("9.9.9.9")
    assert dns(result("nameserver 9.9.9.9\n")) is None
    assert dns(result("nameserver 10.0.0.1\n")) == "nameservers 10.0.0.1"
    resolves = checks.seed.resolves_to("9.9.9.9", "2620:fe::fe")
    assert resolves(result("9.9.9.9 STREAM deb.debian.org\n9.9.9.9 DGRAM\n")) == "resolves to 9.9.9.9"
    assert resolves(Result(("getent",), 2, "", "")) == "does not resolve (exit 2)"
