"""The embedded lab end to end, for each container driver: up from nothing, the converged
state asserted with direct commands, a second up that duplicates nothing, and a down that
leaves nothing. Runs as root (CI); the lab is named `vxtest` so a user's own `vxlab` stays."""

from __future__ import annotations

import difflib
import io
import ipaddress
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import needs_root

from lab import lifecycle, model
from lab.containers.daemon import POOLS
from lab.embedded import EmbeddedLab
from lab.host.cgroups import container_cgroups
from lab.host.wait import until

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq", "lxd"), pytest.mark.e2e]

NAME = "vxtest"


def lab_named_vxtest(driver: str) -> model.Lab:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = NAME
    data["containers"]["driver"] = driver
    return model.parse(yaml.safe_dump(data))


def sh(*argv: str, check: bool = True) -> str:
    p = subprocess.run(argv, capture_output=True, text=True)
    assert not check or p.returncode == 0, f"{argv}: {p.stderr}"
    return p.stdout


def footprint() -> dict:
    """What a lab can leave on the host: namespaces, processes in them, mounts, loop devices,
    files, cgroups."""
    netns = sorted(n.split()[0] for n in sh("ip", "netns", "list").splitlines() if n.startswith(NAME))
    mounts = sorted(line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                    if f"/{NAME}" in line.split()[1])
    names = [f"{NAME}-{n.name}" for n in model.load().nodes() if n.is_container]
    cgroups = sorted(str(p) for p in container_cgroups(names))  # any hierarchy, v1 or v2
    loops = sorted(line for line in sh("losetup", "--list", "--noheadings").splitlines()
                   if f"/{NAME}/" in line)  # a pool file's path names its lab
    files = sorted(str(p) for p in (Path("/run/vxlab") / NAME, Path("/etc/netns") / f"{NAME}-routerVM",
                                    POOLS / NAME) if p.exists())
    return {"netns": netns, "mounts": mounts, "loops": loops, "cgroups": cgroups, "files": files}


@pytest.fixture(scope="module", params=["netns", "lxd"])
def elab(request):
    lab = EmbeddedLab(lab_named_vxtest(request.param))
    lab.down()
    before = footprint()
    assert before == {"netns": [], "mounts": [], "loops": [], "cgroups": [], "files": []}
    lab.up(timeout=120)
    yield lab
    lab.down()


def ns(elab: EmbeddedLab, node: str, *argv: str) -> str:
    p = subprocess.run(elab.node(node).interactive(list(argv)), capture_output=True, text=True)
    assert p.returncode == 0, f"{node}: {argv}: {p.stdout}{p.stderr}"
    return p.stdout


def test_router_policy_routing(elab):
    rules = ns(elab, "routerVM", "ip", "rule")
    assert re.search(r"^220:\s+from all fwmark 0xdc lookup blue", rules, re.M), rules
    assert re.search(r"^221:\s+from all fwmark 0xdd lookup green", rules, re.M), rules
    assert "fwmark 0xdd lookup green" in ns(elab, "routerVM", "ip", "-6", "rule")
    green = ns(elab, "routerVM", "ip", "route", "show", "table", "green")
    assert "default via 172.16.96.1 dev enp0s6.214" in green
    assert "192.0.2.0/24 via 172.16.221.2 dev enp0s6.221" in green
    blue6 = ns(elab, "routerVM", "ip", "-6", "route", "show", "table", "blue")
    assert "2001:db8:7::/64 via 2001:db8:dc::2 dev enp0s6.220" in blue6
    assert "default via fe80:d6::1 dev enp0s6.214" in blue6


def test_vrrp_master_holds_both_vips(elab):
    green = ns(elab, "greenVM", "ip", "addr", "show", "dev", "sw-vlan7")
    blue = ns(elab, "blueVM", "ip", "addr", "show", "dev", "sw-vlan7")
    assert "192.0.2.222/24" in green and "fe80:7::de/64" in green
    assert "192.0.2.222" not in blue and "fe80:7::de" not in blue


def test_clients_leases_slaac_and_default_routes(elab):
    lab = elab.lab
    for c in ("blueC0", "blueC1", "greenC0", "greenC1"):
        addrs = json.loads(ns(elab, c, "ip", "-j", "addr", "show", "dev", "eth0"))[0]["addr_info"]
        v4 = [ipaddress.ip_address(a["local"]) for a in addrs if a["family"] == "inet"]
        assert len(v4) == 1 and lab.dhcp.range.first <= v4[0] <= lab.dhcp.range.last, (c, v4)
        v6 = [ipaddress.ip_address(a["local"]) for a in addrs
              if a["family"] == "inet6" and a["scope"] == "global"]
        assert any(a in lab.shared_vlan.ipv6 for a in v6), (c, v6)
        assert "default via 192.0.2.222 dev eth0" in ns(elab, c, "ip", "route", "show", "default")
        assert "default via fe80:7::de dev eth0" in ns(elab, c, "ip", "-6", "route", "show", "default")
    for server, addr in (("blueDHCP", "192.0.2.250/24"), ("greenDHCP", "192.0.2.251/24")):
        assert addr in ns(elab, server, "ip", "addr", "show", "dev", "eth0")


def test_clients_reach_the_internet_marked_by_the_master(elab):
    for c in ("blueC0", "greenC1"):
        ns(elab, c, "ping", "-c", "1", "-W", "2", "9.9.9.9")
        ns(elab, c, "ping", "-c", "1", "-W", "2", "2620:fe::fe")
    counters = ns(elab, "routerVM", "iptables", "-t", "mangle", "-vnxL", "PREROUTING")
    marked = {m.group(2): int(m.group(1)) for m in
              re.finditer(r"^\s*(\d+)\s+\d+\s+MARK.*MARK set (0x\w+)", counters, re.M)}
    assert marked["0xdd"] > 0, counters  # green is the master: its flows carry its mark
    nat = ns(elab, "routerVM", "iptables", "-t", "nat", "-vnxL", "POSTROUTING")
    assert re.search(r"^\s*[1-9]\d*\s+\d+\s+MASQUERADE", nat, re.M), nat


def test_status_says_what_each_node_is_and_its_state(elab):
    from lab import commands

    st = json.loads(commands.status_json(commands.status(elab)))  # as `invoke status --json`
    lab, rows = elab.lab, {n["node"]: n for n in st["nodes"]}
    assert st["converged"] is True and st["problems"] == []
    container = "LXD container" if elab.driver == "lxd" else "namespace"
    for t in lab.tenants.values():
        assert rows[t.vm]["kind"] == "namespace"
        assert rows[t.vm]["vrrp"] == ("MASTER" if t.vm == "greenVM" else "BACKUP")
        assert rows[t.dhcp_server.name]["failover"] == "normal"
        for c in (t.dhcp_server.name, *t.clients):
            assert rows[c]["kind"] == container
        for c in t.clients:
            assert rows[c]["gateway4"] == "192.0.2.222" and rows[c]["gateway6"] == "fe80:7::de"
    assert all(s == "running" for n in st["nodes"] for s in n["services"].values())


def test_the_seeds_ifupdown_commands_work_through_exec(elab):
    from lab import commands

    # the namespace's ifupdown state is its own: the host's /run/network knows nothing of sw-vlan7
    assert commands.exec_(elab, "greenVM", ["ifquery", "--state", "sw-vlan7"]) == 0
    assert commands.exec_(elab, "greenVM", ["ifquery", "--state", "no-such-link"]) != 0


def test_every_check_of_the_seed_passes(elab):
    from lab import checks

    report = checks.run(checks.build(elab.lab, elab.node), elab.node, wait=30)
    assert report.ok, report.table()


def test_the_seeds_drill_and_the_dhcp_drill(elab):
    from lab import drills

    report = drills.run(elab, "green", "probe")
    assert report.ok, drills.summary(report)
    assert report.outages == [], drills.summary(report)
    dhcp = drills.dhcp(elab)
    assert dhcp.ok, drills.dhcp_summary(dhcp)


def processes(netns: str) -> list[str]:
    """The programs running in a namespace, but the short-lived ones: LXD's file helpers and
    keepalived's check scripts (run every second, so a snapshot may catch one)."""
    out = []
    for pid in sh("ip", "netns", "pids", netns).split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            continue
        if b"forkfile" not in argv and not any(b"keepalived_check_" in a for a in argv):
            out.append(Path(argv[0].decode()).name)
    return sorted(out)


def state_of_every_node(elab: EmbeddedLab) -> dict:
    out = {}
    for node in ("routerVM", "blueVM", "greenVM", "internet"):
        out[node] = {
            "rules": ns(elab, node, "ip", "rule") + ns(elab, node, "ip", "-6", "rule"),
            "routes": ns(elab, node, "ip", "route", "show", "table", "all"),
            "addrs": ns(elab, node, "ip", "-br", "addr"),
            "iptables": re.sub(r"\[\d+:\d+\]|^#.*$", "", ns(elab, node, "iptables-save"), flags=re.M),
            "processes": processes(elab.net.ns(node)),
        }
    return out


def test_second_up_duplicates_nothing_and_restarts_what_died(elab):
    before = state_of_every_node(elab)
    blue = elab.node("blueVM")
    pid = blue.read("/run/keepalived.pid")  # keepalived's own pid file
    assert pid
    subprocess.run(["kill", pid.strip()], check=True)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid.strip()}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    elab.up(timeout=120)
    after = state_of_every_node(elab)
    for node, kinds in before.items():
        for kind, was in kinds.items():
            now = after[node][kind]
            diff = "\n".join(difflib.unified_diff(str(was).splitlines(), str(now).splitlines(),
                                                  lineterm="")) if was != now else ""
            assert was == now, f"{node} {kind} changed after a second up:\n{diff}"
    assert blue.read("/run/keepalived.pid") not in (None, pid)


def test_status_says_fault_as_keepalived_reports_it(elab):
    """A tenant in FAULT is not shown as BACKUP, and the table shows no Python values."""
    from lab import commands

    rule = ["OUTPUT", "-d", f"{elab.lab.internet.resolver.ipv4}/32", "-j", "DROP"]
    blue = elab.node("blueVM")
    blue.run(["iptables", "-A", *rule])
    try:
        def vrrp() -> str:
            return next(n["vrrp"] for n in commands.status(elab)["nodes"] if n["node"] == "blueVM")

        assert until(lambda: vrrp() == "FAULT", 15, 0.5)
        title, header, rows, problems = commands.status_rows(commands.status(elab))
        assert "NOT converged" in title and any("blueVM" in p and "FAULT" in p for p in problems)
        assert not any("None" in cell or "[" in cell for row in rows for cell in row), rows
    finally:
        blue.run(["iptables", "-D", *rule])
    lifecycle.wait(elab)


def test_a_killed_dhcpd_is_seen_dead_and_up_restarts_it(elab):
    """On either driver (an LXD container's LSB unit stays "active" after its daemon died)."""
    from lab import commands

    server = elab.node("blueDHCP")
    pid = server.read("/run/dhcpd.pid").strip()
    server.run(["kill", pid])
    assert until(lambda: not server.run(["kill", "-0", pid], check=False).ok, 10)
    st = commands.status(elab)
    row = next(n for n in st["nodes"] if n["node"] == "blueDHCP")
    assert row["services"] == {"dhcpd": "DEAD"} and row["failover"] == "dhcpd is not running"
    assert any(p.startswith("blueDHCP: expected dhcpd runs") for p in st["problems"]), st["problems"]
    elab.up(timeout=120)
    st = commands.status(elab)
    assert st["converged"], st["problems"]
    assert next(n for n in st["nodes"] if n["node"] == "blueDHCP")["services"] == {"dhcpd": "running"}
    assert server.read("/run/dhcpd.pid").strip() != pid


BREAKS = {  # the cases: what a student or a drill does to a running lab
    "a link set down and up": ("greenVM", "ip link set sw-vlan7 down && ip link set sw-vlan7 up"),
    "a route deleted": ("routerVM", "ip route del default table green"),
    "a NIC set down and up": ("greenVM", "ip link set enp0s6 down && ip link set enp0s6 up"),
}


@pytest.mark.parametrize("case", list(BREAKS))
def test_up_repairs_what_the_kernel_lost_and_says_what(elab, case, capsys):
    from lab import checks, commands
    from lab.ui import Plain

    node, script = BREAKS[case]
    elab.node(node).run(["sh", "-c", script])
    broken = time.monotonic()
    assert until(lambda: commands.status(elab)["problems"], 10), "status still says converged"
    said = io.StringIO()
    elab.up(Plain(said), timeout=120)
    repaired = time.monotonic() - broken
    line = next(ln for ln in said.getvalue().splitlines() if f"] {node}: " in ln)
    assert "repaired: " in line and "still:" not in line, said.getvalue()
    report = checks.run(checks.build(elab.lab, elab.node), elab.node, wait=30)
    assert report.ok, report.table()
    with capsys.disabled():
        print(f"\n{elab.driver}, {case}: repaired {repaired:.1f} s, checks green "
              f"{time.monotonic() - broken:.1f} s after the break ({line.split('] ', 1)[1]})")


def test_a_changed_radvd_conf_is_reloaded_and_no_client_loses_its_route(elab):
    """radvd's stop sends a last RA with router lifetime 0: a restart would take every
    client's IPv6 default route away until the next RA."""
    from lab.ui import Plain

    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"], data["containers"]["driver"] = NAME, elab.driver
    data["radvd"]["max_interval"] += 1
    changed = EmbeddedLab(model.parse(yaml.safe_dump(data)), elab.driver)
    pids = {t: elab.node(t).read("/run/radvd.pid") for t in ("blueVM", "greenVM")}
    client = elab.node("greenC0")
    monitor = subprocess.Popen(client.interactive(["ip", "-6", "monitor", "route"]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1)  # the monitor listens
        said = io.StringIO()
        for lab in (changed, elab):  # changed, then back as it was
            lab.up(Plain(said), timeout=120)
        time.sleep(2)  # a last RA with lifetime 0 would have reached the client by now
    finally:
        monitor.terminate()
        seen = monitor.communicate(timeout=10)[0]
    assert not [ln for ln in seen.splitlines() if ln.startswith("Deleted") and "default" in ln], seen
    assert "default via" in client.run(["ip", "-6", "route", "show", "default"]).out
    assert said.getvalue().count("reloaded radvd") == 4, said.getvalue()  # 2 tenants, 2 ups
    assert {t: elab.node(t).read("/run/radvd.pid") for t in pids} == pids  # not restarted


def test_a_client_taken_out_of_the_description_is_removed(elab):
    from lab.ui import Plain

    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"], data["containers"]["driver"] = NAME, elab.driver
    data["tenants"]["blue"]["clients"].append("blueC2")
    bigger = EmbeddedLab(model.parse(yaml.safe_dump(data)), elab.driver)
    bigger.up(timeout=120)
    assert bigger.node("blueC2").run(["true"]).ok
    said = io.StringIO()
    elab.up(Plain(said), timeout=120)
    assert "blueC2: removed (no longer in the lab description)" in said.getvalue(), said.getvalue()
    if elab.driver == "lxd":
        assert f"{NAME}-blueC2" not in [i.name for i in elab.lxd("blue").daemon.client().instances.all()]
    assert f"{NAME}-blueC2" not in sh("ip", "netns", "list")
    assert not (Path("/run/vxlab") / NAME / "blueC2").exists()


def test_down_leaves_nothing(elab):
    elab.down()
    assert footprint() == {"netns": [], "mounts": [], "loops": [], "cgroups": [], "files": []}
    assert not elab.exists()
    elab.down()  # idempotent
