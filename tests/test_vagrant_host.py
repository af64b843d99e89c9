"""Host preparation for the Vagrant lab (lab/vagrant/host/), for real: OVS (userspace
datapath), libvirtd, the libvirt networks and the simulated upstream; then its undo, which
must leave the host exactly as it was. A lab of its own name and switch, so it cannot meet
a Vagrant lab someone has up; it refuses to run beside one (they would share OVS's socket).

The `nat` upstream is tested with every command stubbed, never for real: it would make this
machine route and NAT to its network."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import needs_root

from lab import model
from lab.vagrant import host as hostmod

needs_host = needs_root("ovs-vsctl", "ovsdb-server", "libvirtd", "virsh", "nft", "ethtool", "tc")
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
        "nft": sorted(_sh("nft", "list", "tables").splitlines()),  # iptables' too: libvirt makes them
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


@needs_host
@pytest.mark.root
def test_prepare_is_idempotent_sealed_and_undone_exactly(lab):
    before = _host_state()
    h = hostmod.Host(lab)
    try:
        h.prepare("qemu")
        h.prepare("qemu")  # again: nothing new, nothing broken
        st = h.status()
        assert all(st["daemons"].values()) and st["bridge"] and st["upstream"] == "simulated"
        assert set(st["networks"]) >= {"vagtest-dsw-vagtest", "vagtest-mgmt"}
        assert _sh("ovs-vsctl", "get", "bridge", "dsw-vagtest", "datapath_type").strip() == "netdev"
        xml = _sh("virsh", "-c", "qemu:///system", "net-dumpxml", "vagtest-dsw-vagtest")
        assert "<virtualport type='openvswitch'/>" in xml and "<portgroup name='trunk'>" in xml
        assert "<tag id='214'/>" in xml and "<tag id='221'/>" in xml
        mgmt = _sh("virsh", "-c", "qemu:///system", "net-dumpxml", "vagtest-mgmt")
        assert "<forward" not in mgmt and "<port isolated='yes'/>" in mgmt  # no NAT, no forwarding
        # The lab's side of the host holds no address.
        for dev in ("dsw-vagtest", h.upstreams.port):
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


# -- the nat upstream, every command stubbed ------------------------------------------------

class FakeHost:
    """Stands in for subprocess.run, through which every command of the host goes: records
    each argv, answers the queries, and turns forwarding on at net-create as libvirt does."""

    def __init__(self, forwarding: tuple[Path, Path], facts: Path) -> None:
        self.calls: list[list[str]] = []
        self.links: set[str] = set()
        self.networks: set[str] = set()
        self.namespaces: set[str] = set()
        self.tables: dict[str, list[dict]] = {}  # nftables: "family name" -> its objects
        self.vanishing: set[str] = set()  # links a namespace's deletion takes before our delete
        self.failing: list[list[str]] = []  # argv prefixes that fail
        self.forwarding, self.facts = forwarding, facts
        self.recorded_at_create: list[str] | None = None

    def __call__(self, argv, **_) -> subprocess.CompletedProcess:  # as subprocess.run
        argv = list(argv)
        self.calls.append(argv)
        out, rc = "", 0
        if any(argv[:len(f)] == f for f in self.failing):
            return subprocess.CompletedProcess(argv, 1, "", "stubbed failure")
        if argv[:3] == ["nft", "list", "tables"]:
            out = "".join(f"table {t}\n" for t in self.tables)
        elif argv[:4] == ["nft", "-j", "list", "table"]:
            name = " ".join(argv[4:6])
            rc = 0 if name in self.tables else 1
            out = json.dumps({"nftables": [{"metainfo": {}}, {"table": {}}, *self.tables.get(name, [])]})
        elif argv[:3] == ["nft", "delete", "table"]:
            rc = 0 if self.tables.pop(" ".join(argv[3:5]), None) is not None else 1
        elif argv[:3] == ["ip", "netns", "list"]:
            out = "\n".join(self.namespaces)
        elif argv[:3] == ["ip", "netns", "add"]:
            self.namespaces.add(argv[3])
        elif argv[:3] == ["ip", "netns", "del"]:
            self.namespaces.discard(argv[3])
        elif argv[:3] == ["ip", "link", "del"] and argv[3] in self.vanishing:
            self.links.discard(argv[3])
            return subprocess.CompletedProcess(argv, 1, "", f"Cannot find device \"{argv[3]}\"")
        elif argv[0] in ("iptables", "ip6tables"):
            rc = 0 if argv[-1] == "-S" else 1  # no LIBVIRT_* chain
        elif argv[:3] == ["ip", "link", "show"]:
            rc = 0 if argv[-1] in self.links else 1
        elif argv[:3] == ["ip", "link", "add"]:
            self.links |= {argv[3], argv[argv.index("name") + 1]}
        elif argv[:3] == ["ip", "link", "del"]:
            self.links -= {argv[3]}
        elif "net-list" in argv:
            out = "\n".join(self.networks)
        elif "net-create" in argv:
            xml = Path(argv[-1]).read_text()
            self.networks.add(xml.split("<name>")[1].split("</name>")[0])
            if "<forward mode='nat'>" in xml:
                self.recorded_at_create = json.loads(self.facts.read_text()).get("forwarding")
                self.links.add("vxnat-vxlab")
                for p in self.forwarding:
                    p.write_text("1\n")
        elif "net-destroy" in argv:
            self.networks.discard(argv[-1])
            self.links.discard("vxnat-vxlab")
        return subprocess.CompletedProcess(argv, rc, out, "")

    def index(self, *argv: str) -> int:
        return next(i for i, c in enumerate(self.calls) if c[:len(argv)] == list(argv))


@pytest.fixture
def stubbed(tmp_path, monkeypatch) -> tuple[hostmod.Host, FakeHost]:
    """A Host whose paths are under tmp_path and whose every command is FakeHost's; the
    daemons' steps are no-ops (they are the real test's)."""
    forwarding = (tmp_path / "ip_forward", tmp_path / "forwarding")
    for p in forwarding:
        p.write_text("0\n")
    for module, name, value in (
            (hostmod, "RUN", tmp_path / "run"), (hostmod, "KEEP", tmp_path / "keep"),
            (hostmod.ovs, "OVS_RUN", tmp_path / "ovs"),
            (hostmod.libvirt, "NET_AUTOSTART", tmp_path / "autostart"),
            (hostmod.libvirt, "QEMU_LOGS", tmp_path / "logs"),
            (hostmod.upstream, "FORWARDING", forwarding),
            (hostmod.specs, "RUN_DIR", tmp_path / "serial")):
        monkeypatch.setattr(module, name, value)
    h = hostmod.Host(model.load(model.DEFAULT_LAB))
    fake = FakeHost(forwarding, h.facts.path)
    monkeypatch.setattr(subprocess, "run", fake)  # every command of the host, lab.host.run's included
    for cls, step in ((hostmod.libvirt.Libvirt, "qemu_conf"), (hostmod.ovs.Ovs, "start"),
                      (hostmod.libvirt.Libvirt, "start"), (hostmod.Host, "seal")):
        monkeypatch.setattr(cls, step, lambda self, *a, step=step: fake.calls.append([step]))
    return h, fake


def test_nat_network_xml():
    h = hostmod.Host(model.load(model.DEFAULT_LAB))
    xml = h.upstreams.nat_network_xml()
    assert "<name>vxlab-nat</name>" in xml
    assert "<forward mode='nat'><nat ipv6='yes'/></forward>" in xml
    assert "<bridge name='vxnat-vxlab' stp='off' delay='0'/>" in xml
    assert "<ip address='172.16.96.1' prefix='24'/>" in xml  # lab.internet.gateway
    assert "<ip family='ipv6' address='2001:678:3fc:d6::1' prefix='64'/>" in xml
    assert "<dns enable='no'/>" in xml and "<dhcp" not in xml
    assert f"<mtu size='{h.switch.mtu}'/>" in xml


def test_prepare_nat_records_forwarding_then_bridges_vlan_214(stubbed):
    h, fake = stubbed
    said = []
    h.say = said.append
    h.prepare("kvm", upstream="nat")
    assert fake.recorded_at_create == ["0", "0"]  # recorded before libvirt turned them on
    assert json.loads(h.facts.path.read_text())["upstream"] == "nat" and h.upstream() == "nat"
    assert not any(c[:3] == ["ip", "netns", "add"] for c in fake.calls)  # no simulated Internet
    assert any("forwards and NATs" in m for m in said)
    bridge, port, peer = "vxnat-vxlab", "up214-vxlab", "nat214-vxlab"
    mtu = str(h.switch.mtu)
    order = [
        fake.index(*hostmod.VIRSH, "net-create", str(h.run / "net-vxlab-nat.xml")),
        fake.index("ip", "-6", "addr", "replace", "fe80:d6::1/64", "dev", bridge, "nodad"),
        fake.index("ip", "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", peer, "mtu", mtu),
        fake.index("ip", "link", "set", port, "addrgenmode", "none"),
        fake.index("ip", "link", "set", peer, "addrgenmode", "none"),
        fake.index("ip", "link", "set", peer, "master", bridge),
        fake.index("ethtool", "-K", peer, "tx", "off"),
        fake.index("ip", "link", "set", peer, "up"),
        fake.index("ip", "link", "set", port, "up"),
        next(i for i, c in enumerate(fake.calls) if c[0] == "ovs-vsctl" and "add-port" in c),
        fake.calls.index(["seal"]),
    ]
    assert order == sorted(order)
    add_port = fake.calls[order[-2]]
    assert add_port[-8:] == ["--may-exist", "add-port", "dsw-host", port, "--", "set", "port", port] \
        or add_port[-9:-1] == ["--may-exist", "add-port", "dsw-host", port, "--", "set", "port", port]
    assert add_port[-1] == "tag=214"  # an access port on the uplink's VLAN
    assert not any("addr" in c and (port in c or peer in c) for c in fake.calls)  # no address on either end
    with pytest.raises(RuntimeError, match="no lab Internet node"):
        h.internet_node()
    # again: idempotent, and the network is not made twice
    n = len(fake.calls)
    h.prepare("kvm", upstream="nat")
    assert not any("net-create" in c or c[:3] == ["ip", "link", "add"] for c in fake.calls[n:])


def test_cleanup_removes_nat_and_restores_forwarding(stubbed):
    h, fake = stubbed
    h.prepare("kvm", upstream="nat")
    fwd = [p.read_text() for p in hostmod.upstream.FORWARDING]
    assert fwd == ["1\n", "1\n"]  # as libvirt leaves them
    n = len(fake.calls)
    removed = h.cleanup()
    calls = fake.calls[n:]
    assert [*hostmod.VIRSH, "net-destroy", "vxlab-nat"] in calls
    assert ["ip", "link", "del", "up214-vxlab"] in calls
    assert "libvirt network vxlab-nat" in removed
    assert [p.read_text() for p in hostmod.upstream.FORWARDING] == ["0\n", "0\n"]
    assert sum("restored" in r and "forward" in r for r in removed) == 2
    assert not h.facts.path.exists() and h.upstream() is None


def test_simulated_cleanup_leaves_forwarding(stubbed):
    h, fake = stubbed
    h.facts.record({"upstream": "simulated"})
    for p in hostmod.upstream.FORWARDING:
        p.write_text("1\n")  # the host's own setting: not ours to touch
    h.cleanup()
    assert [p.read_text() for p in hostmod.upstream.FORWARDING] == ["1\n", "1\n"]


@pytest.mark.parametrize("upstream", ["NAT", "bridge", ""])
def test_unknown_upstream_refused_before_any_change(stubbed, upstream):
    h, fake = stubbed
    with pytest.raises(ValueError, match="simulated, nat"):
        h.prepare("kvm", upstream=upstream)
    assert fake.calls == [] and not h.run.exists() and not h.facts.path.exists()


def test_switching_upstream_needs_host_down(stubbed):
    h, fake = stubbed
    h.prepare("kvm", upstream="nat")
    n = len(fake.calls)
    with pytest.raises(RuntimeError, match="host.down"):
        h.prepare("kvm", upstream="simulated")
    assert fake.calls[n:] == []


def _simulated(h: hostmod.Host, fake: FakeHost) -> None:
    """The records and links of a simulated upstream, as host.up leaves them."""
    h.facts.record({"upstream": "simulated"})
    h.run.mkdir(parents=True)
    fake.namespaces.add(h.upstreams.ns)
    fake.links.add(h.upstreams.port)


def test_cleanup_removes_the_upstream_port_before_its_namespace(stubbed):
    """A deleted namespace takes its links asynchronously: deleting the host's end of the
    veth after it raced with the kernel (`Cannot find device`, once in CI after a destroy)."""
    h, fake = stubbed
    _simulated(h, fake)
    removed = h.cleanup()
    up = h.upstreams
    assert fake.index("ip", "link", "del", up.port) < fake.index("ip", "netns", "del", up.ns)
    assert f"link {up.port}" in removed and f"namespace {up.ns}" in removed
    assert not fake.namespaces and not fake.links and not h.run.exists()


def test_a_link_gone_between_check_and_delete_counts_as_removed(stubbed):
    h, fake = stubbed
    fake.links.add("vanish0")
    fake.vanishing.add("vanish0")
    assert hostmod.upstream.del_links("vanish0", "absent0") == ["link vanish0"]
    assert hostmod.upstream.del_links("vanish0") == []  # nothing there: nothing done
    fake.links.add("stuck0")
    fake.failing.append(["ip", "link", "del", "stuck0"])
    with pytest.raises(RuntimeError, match="ip link del stuck0"):
        hostmod.upstream.del_links("stuck0")


def test_a_failed_cleanup_step_does_not_stop_the_others(stubbed):
    h, fake = stubbed
    _simulated(h, fake)
    fake.failing.append(["ip", "netns", "del"])
    failure = r"incomplete.*host.down` again.*\n  upstream namespace: .*ip netns del"
    with pytest.raises(RuntimeError, match=failure) as e:
        h.cleanup()
    assert f"link {h.upstreams.port}" in str(e.value)  # what was done is said too
    # the later steps ran all the same: the seal and libvirt's chains
    assert any(c[:3] == ["nft", "delete", "table"] for c in fake.calls)
    assert any(c[0] == "iptables" for c in fake.calls)
    assert h.facts.path.exists() and h.run.exists()  # kept for the next host.down
    fake.failing.clear()
    h.cleanup()  # which finishes the job
    assert not fake.namespaces and not h.facts.path.exists() and not h.run.exists()


def test_cleanup_removes_the_empty_iptables_tables_libvirt_made(stubbed):
    """iptables-nft: libvirt's first chain in a table makes the table; emptied, it stays."""
    h, fake = stubbed
    accept = {"chain": {"hook": "postrouting", "policy": "accept"}}
    fake.tables["ip filter"] = []  # the host's own, before us: stays, empty or not
    h.prepare("kvm", upstream="nat")
    assert json.loads(h.facts.path.read_text())["nft_tables"] == ["ip filter"]
    fake.tables |= {"ip nat": [accept], "ip6 nat": [accept], "ip mangle": [],  # libvirt's, emptied
                    "ip6 filter": [accept, {"rule": {}}],  # someone's rule: stays
                    "ip6 mangle": [{"chain": {"hook": "input", "policy": "drop"}}]}  # a policy: stays
    removed = h.cleanup()
    assert sorted(fake.tables) == ["ip filter", "ip6 filter", "ip6 mangle"]
    assert {r for r in removed if r.startswith("nft table ip")} == {
        "nft table ip nat (empty)", "nft table ip6 nat (empty)", "nft table ip mangle (empty)"}
