"""Host preparation for the Vagrant lab (lab/vagrant/host.py), for real: OVS (userspace
datapath), libvirtd, the libvirt networks and the simulated upstream; then its undo, which
must leave the host exactly as it was. A lab of its own name and switch, so it cannot meet
a Vagrant lab someone has up; it refuses to run beside one (they would share OVS's socket)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import needs_root

from lab import model
from lab.vagrant import host as hostmod

pytestmark = [needs_root("ovs-vsctl", "ovsdb-server", "libvirtd", "virsh", "nft", "ethtool", "tc"),
              pytest.mark.root]
PROBE_NS = "vagtest-probe"  # not vxlab-*/vxtest-*: those belong to the embedded lab's tests


def _sh(*argv: str, check: bool = True) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


def _host_state() -> dict[str, object]:
    """What the preparation may change on the host, and must put back."""
    def tree(root: str) -> list[tuple[str, str]]:
        out = []
        for dirpath, dirnames, filenames in os.walk(root):
            for n in sorted(dirnames + filenames):
                p = Path(dirpath, n)
                digest = hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "dir"
                out.append((str(p), f"{p.stat().st_mode:o} {digest}"))
        return sorted(out)

    netns = [n for n in _sh("ip", "netns", "list").split() if n.startswith("vag")]
    return {
        "links": sorted(line.split(": ")[1].split("@")[0] for line in _sh("ip", "-o", "link").splitlines()),
        "addrs": sorted(" ".join(line.split()[1:4]) for line in _sh("ip", "-o", "addr").splitlines()),
        "iptables": [_sh(t, "-t", tb, "-S") for t in ("iptables", "ip6tables")
                     for tb in ("filter", "nat", "mangle")],
        "nft": [line for line in _sh("nft", "list", "tables").splitlines() if "netdev" in line],
        "sysctl": [Path(f"/proc/sys/net/{p}").read_text() for p in
                   ("ipv4/ip_forward", "ipv6/conf/all/forwarding", "ipv4/conf/all/rp_filter")],
        "etc_libvirt": tree("/etc/libvirt"),
        "var": [p for d in ("/var/lib/libvirt", "/var/log/libvirt", "/run/libvirt", "/var/run/openvswitch")
                for p, _ in tree(d)],
        "netns": netns,
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> model.Lab:
    if hostmod.RUN.exists() and any(hostmod.RUN.iterdir()) and not os.environ.get("CI"):
        pytest.skip(f"a Vagrant lab's host side is up ({hostmod.RUN}): not beside it")
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = "vagtest"
    data["switch"]["name"] = "dsw-vagtest"
    f = tmp_path_factory.mktemp("lab") / "lab.yaml"
    f.write_text(yaml.safe_dump(data))
    return model.load(f)


def test_prepare_is_idempotent_sealed_and_undone_exactly(lab):
    before = _host_state()
    h = hostmod.Host(lab)
    try:
        h.prepare("qemu")
        h.prepare("qemu")  # again: nothing new, nothing broken
        st = h.status()
        assert all(st["daemons"].values()) and st["bridge"] and st["upstream"]
        assert set(st["networks"]) >= {"vagtest-dsw-vagtest", "vagtest-mgmt"}
        assert _sh("ovs-vsctl", "get", "bridge", "dsw-vagtest", "datapath_type").strip() == "netdev"
        xml = _sh("virsh", "-c", "qemu:///system", "net-dumpxml", "vagtest-dsw-vagtest")
        assert "<virtualport type='openvswitch'/>" in xml and "<portgroup name='trunk'>" in xml
        assert "<tag id='214'/>" in xml and "<tag id='221'/>" in xml
        mgmt = _sh("virsh", "-c", "qemu:///system", "net-dumpxml", "vagtest-mgmt")
        assert "<forward" not in mgmt and "<port isolated='yes'/>" in mgmt  # no NAT, no forwarding
        # The lab's side of the host holds no address.
        for dev in ("dsw-vagtest", h.upstream_port):
            assert "inet" not in _sh("ip", "addr", "show", "dev", dev)
        assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == before["sysctl"][0]
        _probe_upstream(h, lab)
    finally:
        subprocess.run(["ip", "netns", "del", PROBE_NS], capture_output=True)
        subprocess.run(["ip", "link", "del", "vagtestprobe"], capture_output=True)
        removed = h.cleanup()
    assert any("libvirtd" in r for r in removed)
    assert _host_state() == before
    assert h.cleanup() == []  # twice: nothing left to do


def _probe_upstream(h: hostmod.Host, lab: model.Lab) -> None:
    """A port on VLAN 214 (where routerVM's uplink goes) reaches the lab's Internet through
    OVS's userspace datapath, while the host's own stack is sealed off the port."""
    up = lab.router.uplink
    _sh("ip", "netns", "add", PROBE_NS)
    _sh("ip", "link", "add", "vagtestprobe", "mtu", "9054", "type", "veth", "peer", "name", "eth0",
        "mtu", "9054", "netns", PROBE_NS)
    _sh("ip", "link", "set", "vagtestprobe", "up")
    _sh("ovs-vsctl", "add-port", "dsw-vagtest", "vagtestprobe", f"tag={up.vlan}")
    assert "vagtestprobe" in h.seal()
    ns = ("ip", "netns", "exec", PROBE_NS)
    _sh(*ns, "ethtool", "-K", "eth0", "tx", "off")
    _sh(*ns, "ip", "addr", "add", str(up.ipv4), "dev", "eth0")
    _sh(*ns, "ip", "link", "set", "eth0", "up")
    _sh(*ns, "ip", "route", "add", "default", "via", str(lab.internet.gateway.ipv4.ip))
    assert "0% packet loss" in _sh(*ns, "ping", "-c", "2", "-W", "3", str(lab.internet.resolver.ipv4))
    assert "0% packet loss" in _sh(*ns, "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "9000",
                                   str(lab.internet.gateway.ipv4.ip))  # the lab's MTU end to end
    code = _sh(*ns, "curl", "-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}",
               f"http://{lab.internet.resolver.ipv4}/", check=False)
    assert code == "200"
    # sealed: no IPv6 link-local on the port; the host learned no neighbour there
    assert "inet6" not in _sh("ip", "addr", "show", "dev", "vagtestprobe")
    assert _sh("ip", "neigh", "show", "dev", "vagtestprobe").strip() == ""
