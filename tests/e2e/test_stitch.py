"""The stitch between hosts (lab/vagrant/host/stitch.py), in seconds: two hosts, each a network
namespace with its own ovs-vswitchd (userspace datapath) and its own dsw-host, joined by a veth
"fabric", stitched by the product's own plan() and apply() from a lab with `hosts:`. Small
namespaces on access ports stand for the VMs' NICs. It proves VLAN isolation across the stitch,
the MTU rule (a fabric one byte short of lab MTU + 54 loses a full-size frame; the stated minimum
carries it), and measures the latency the stitch adds. Everything it makes is named mh*, and
removed; the host is compared before and after."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import mh_footprint, needs_root

from lab import model
from lab.host.wait import until
from lab.vagrant.host import stitch
from lab.vagrant.host.ovs import Ovs

pytestmark = [needs_root("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-appctl", "ping"), pytest.mark.e2e]

FRAME = 1500  # dsw-host's MTU in this lab (shared_vlan.vxlan.underlay_mtu)
NEED = FRAME + 54  # over IPv4 endpoints (lab/model/rules.py)
HOSTS = {"mha": "10.255.0.1", "mhb": "10.255.0.2"}
FABRIC = {"mha": "mhfaba", "mhb": "mhfabb"}  # the veth between the hosts: its two ends
# (namespace, host, VLAN, address): the "VMs"; one subnet for both VLANs, so that a leak would answer
CLIENTS = [("mhc-a220", "mha", 220, "10.0.0.1"), ("mhc-a221", "mha", 221, "10.0.0.3"),
           ("mhc-a220b", "mha", 220, "10.0.0.5"),  # beside mhc-a220 on one switch: no stitch between
           ("mhc-b220", "mhb", 220, "10.0.0.2"), ("mhc-b221", "mhb", 221, "10.0.0.4")]
PINGS = 30


def sh(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60, input=input)
    assert not check or p.returncode == 0, f"{argv}: {p.stderr}"
    return p


def split_lab() -> model.Lab:
    hosts = ", ".join(f"{h}: {{{'' if h == 'mha' else 'ssh: root@127.0.0.1, '}endpoint: {a}, "
                      f"underlay_mtu: {NEED}, nic: {FABRIC[h]}}}" for h, a in HOSTS.items())
    return model.load(model.DEFAULT_LAB, [
        "name=mhlab", "switch.name=mhdsw", "shared_vlan.mtu=1400", f"shared_vlan.vxlan.underlay_mtu={FRAME}",
        f"hosts={{{hosts}}}", "tenants.green.host=mhb"])


def ping(ns: str, to: str, count: int = 1, size: int = 56, wait: float = 1, interval: float = 0.2):
    return sh("ip", "netns", "exec", ns, "ping", "-n", "-M", "do", "-c", str(count), "-s", str(size),
              "-W", str(wait), "-i", str(interval), to, check=False)


def rtts(ns: str, to: str) -> list[float]:
    p = sh("ip", "netns", "exec", ns, "ping", "-n", "-c", str(PINGS), "-i", "0.05", to)
    return [float(t) for t in re.findall(r"time=([\d.]+) ms", p.stdout)]


def mac(ns: str) -> str:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", "eth0").stdout)[0]["address"]


def count_frames_from_each_other_client() -> None:
    """In each client, a counter per other client: the frames its eth0 receives from that one's
    MAC (a count of all would take in the neighbours' own ARP probes on their VLAN)."""
    macs = {c[0]: mac(c[0]) for c in CLIENTS}
    for ns in macs:
        rules = "".join(f"ether saddr {m} counter comment \"{other}\"\n"
                        for other, m in macs.items() if other != ns)
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", input=(
            "table netdev mhcount {\n chain rx {\n  type filter hook ingress device \"eth0\" priority 0; "
            f"policy accept;\n{rules} }}\n}}\n"))


def frames_from(ns: str, sender: str) -> int:
    listing = json.loads(sh("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "netdev",
                            "mhcount").stdout)
    (rule,) = (i["rule"] for i in listing["nftables"] if i.get("rule", {}).get("comment") == sender)
    return next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)


def set_fabric_mtu(mtu: int) -> None:
    for host, end in FABRIC.items():
        sh("ip", "-n", host, "link", "set", end, "mtu", str(mtu))


@pytest.fixture(scope="module")
def stitched():
    """Two hosts, stitched; yields their Ovs and plans; removes all it made (also after a failure)."""
    before = mh_footprint()
    assert not before["netns"] and not before["links"], f"left by someone: {before}"
    lab = split_lab()
    run = Path(tempfile.mkdtemp(prefix="mh-"))  # short: a unix socket's path has 107 bytes
    ovs = {h: Ovs(run / h, lab.switch.name, FRAME, sock=run / h / "sock", netns=h) for h in HOSTS}
    plans = {h: stitch.plan(lab, h) for h in HOSTS}
    try:
        for h in HOSTS:
            sh("ip", "netns", "add", h)
        sh("ip", "link", "add", FABRIC["mha"], "netns", "mha", "type", "veth",
           "peer", FABRIC["mhb"], "netns", "mhb")
        for ns, host, _, addr in CLIENTS:
            sh("ip", "netns", "add", ns)
            port = ns.replace("mhc-", "mhp")
            sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", port, "netns", host)
            sh("ip", "-n", ns, "link", "set", "eth0", "addrgenmode", "none")  # no IPv6 chatter to count
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", host, "link", "set", port, "addrgenmode", "none")
            sh("ip", "-n", host, "link", "set", port, "up")
        for h in HOSTS:
            sh("ip", "-n", h, "link", "set", FABRIC[h], "addrgenmode", "none")
            sh("ip", "-n", h, "link", "set", FABRIC[h], "up")
        set_fabric_mtu(NEED)
        count_frames_from_each_other_client()
        for h, o in ovs.items():
            o.start()
            for ns, host, vlan, _ in CLIENTS:
                if host == h:
                    o.add_access_port(ns.replace("mhc-", "mhp"), vlan)
            stitch.apply(o, plans[h])
        assert until(lambda: ping("mhc-a220", "10.0.0.2").returncode == 0, 20, pause=0.2), "no path across"
        yield ovs, plans
        for h, o in ovs.items():
            removed = stitch.remove(o, plans[h])
            assert removed == [f"tunnel port {plans[h].peers[0].port}", f"OVS bridge {plans[h].underlay}"]
            assert o.vsctl("list-ports", lab.switch.name).out.split() == sorted(
                ns.replace("mhc-", "mhp") for ns, host, _, _ in CLIENTS if host == h)
    finally:
        for o in ovs.values():
            o.stop()
        for ns in [*HOSTS, *(c[0] for c in CLIENTS)]:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(run, ignore_errors=True)
    assert mh_footprint() == before


def test_each_vlan_crosses_to_itself_and_never_to_the_other(stitched):
    assert ping("mhc-a220", "10.0.0.2", count=3).returncode == 0  # 220 to 220 across the stitch
    assert ping("mhc-a221", "10.0.0.4", count=3).returncode == 0  # 221 to 221
    for src in ("mhc-a220", "mhc-a221"):
        vlan = next(c[2] for c in CLIENTS if c[0] == src)
        own = [c[0] for c in CLIENTS if c[2] == vlan and c[0] != src]
        other = [c[0] for c in CLIENTS if c[2] != vlan]
        before = {ns: frames_from(ns, src) for ns in own + other}
        # ARP requests for a client of the other VLAN, and pings to the broadcast address
        for c in CLIENTS:
            if c[0] in other:
                assert ping(src, c[3], count=1, wait=1).returncode != 0
        sh("ip", "netns", "exec", src, "ping", "-n", "-b", "-c", "3", "-i", "0.2", "-W", "1", "10.0.0.255",
           check=False)
        after = {ns: frames_from(ns, src) for ns in own + other}
        assert all(after[ns] > before[ns] for ns in own), (src, before, after)  # heard on its VLAN
        assert all(after[ns] == before[ns] for ns in other), f"{src}'s frames leaked: {before} -> {after}"


def test_a_fabric_one_byte_short_loses_full_frames_silently_the_stated_minimum_carries_them(stitched):
    full = FRAME - 28  # ICMP payload of a full-size IPv4 packet
    assert ping("mhc-a220", "10.0.0.2", count=3, size=full).returncode == 0
    try:
        set_fabric_mtu(NEED - 1)
        lost = ping("mhc-a220", "10.0.0.2", count=3, size=full)
        assert "100% packet loss" in lost.stdout, lost.stdout
        assert "Frag needed" not in lost.stdout and "too long" not in lost.stderr  # nobody says why
        assert ping("mhc-a220", "10.0.0.2", count=3, size=full - 1).returncode == 0  # one byte less passes
    finally:
        set_fabric_mtu(NEED)
    assert ping("mhc-a220", "10.0.0.2", count=3, size=full).returncode == 0


def test_latency_the_stitch_adds(stitched):
    """RTT through the stitch (two vswitchd, VXLAN both ways) against one switch's (no stitch)."""
    ping("mhc-a220", "10.0.0.2", count=3, interval=0.05)  # warm: flows installed, neighbours known
    ping("mhc-a220", "10.0.0.5", count=3, interval=0.05)
    across, beside = rtts("mhc-a220", "10.0.0.2"), rtts("mhc-a220", "10.0.0.5")
    assert len(across) == len(beside) == PINGS
    for what, t in (("through the stitch", across), ("on one switch", beside)):
        print(f"\nRTT {what}: {PINGS} pings, min {min(t):.3f} median {statistics.median(t):.3f} "
              f"max {max(t):.3f} ms")
    added = statistics.median(across) - statistics.median(beside)
    print(f"the stitch adds {added:.3f} ms (median)")
    assert added < 1.0, "the issue's target: the stitch adds less than a millisecond"
