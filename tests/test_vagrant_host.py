"""Host preparation for the Vagrant lab (lab/vagrant/host/), for real: OVS (userspace
datapath), libvirtd, the libvirt networks and the simulated upstream; then its undo, which
must leave the host exactly as it was. A lab of its own name and switch, so it cannot meet
a Vagrant lab someone has up; it refuses to run beside one (they would share OVS's socket).

The `nat` upstream is tested with every command stubbed, never for real: it would make this
machine route and NAT to its network."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import needs_root

from lab import model
from lab.vagrant import host as hostmod
from lab.vagrant import state

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
    if state.RUN.exists() and any(state.RUN.iterdir()) and not os.environ.get("CI"):
        pytest.skip(f"a Vagrant lab's host side is up ({state.RUN}): not beside it")
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


VIRSH = ("virsh", "-q", "-c", "qemu:///system")
IMAGES = Path("/var/lib/libvirt/images")


def _define(name: str, disk: str | None, d: Path) -> None:
    """A libvirt domain, defined (not started)."""
    disk_xml = (f"<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>"
                "<target dev='vda' bus='virtio'/></disk>") if disk else ""
    xml = d / f"{name}.xml"
    xml.write_text(f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
                   f"<os><type arch='x86_64'>hvm</type></os><devices>{disk_xml}</devices></domain>")
    _sh(*VIRSH, "define", str(xml))


def _qcow2(name: str, backing: str | None = None) -> None:
    _sh(*VIRSH, "vol-create-as", "default", name, "8M", "--format", "qcow2",
        *(("--backing-vol", backing, "--backing-vol-format", "qcow2") if backing else ()))


@needs_host
@pytest.mark.root
def test_host_down_removes_what_vagrant_made_for_the_lab_and_nothing_else(lab, tmp_path):
    """Between host.up and host.down: what `vagrant up` makes for the lab (the box's volume, a
    VM's disk on it, the VM's domain), and what someone else makes: a domain, one with the
    lab's prefix, a volume on another version of the lab's box volume, a file among the images.
    host.down removes the first, and the others are found intact."""
    before = _host_state()
    h = hostmod.Host(lab)
    foreign_file = IMAGES / "vagtest-foreign-file.img"
    foreign_domains = ("vagtest-foreign", "vagtest_other")
    foreign_volumes = [IMAGES / "vagtest-foreign.qcow2"]
    cleaned = False
    try:
        h.prepare("qemu")
        prefix = h.ledger.entries("box-volumes")[0]["name"]
        box, used_box = f"{prefix}0_1_box.img", f"{prefix}0_2_box.img"
        foreign_volumes.append(IMAGES / used_box)
        _qcow2(box)
        _qcow2("vagtest_routerVM.img", box)
        _define("vagtest_routerVM", str(IMAGES / "vagtest_routerVM.img"), tmp_path)
        for name in foreign_domains:
            _define(name, None, tmp_path)
        _qcow2(used_box)
        _qcow2("vagtest-foreign.qcow2", used_box)
        foreign_file.write_text("not the lab's\n")
        removed = h.cleanup()
        cleaned = True
        assert {"domain vagtest_routerVM", "volume vagtest_routerVM.img", f"volume {box}",
                f"volume {used_box}: used by volume vagtest-foreign.qcow2, left as it is"} <= set(removed)
        assert "storage pool default: holds volumes that are not the lab's" in " ".join(removed)
        assert not (IMAGES / box).exists() and not (IMAGES / "vagtest_routerVM.img").exists()
        assert not Path("/etc/libvirt/qemu/vagtest_routerVM.xml").exists()
        # libvirtd (ours) has stopped: the foreign things are found as files
        for name in foreign_domains:
            assert Path(f"/etc/libvirt/qemu/{name}.xml").exists(), name
        assert (IMAGES / "vagtest-foreign.qcow2").exists() and (IMAGES / used_box).exists()
        assert foreign_file.read_text() == "not the lab's\n"
    finally:
        if not cleaned:
            with contextlib.suppress(Exception):
                h.cleanup()
        if subprocess.run([*VIRSH, "uri"], capture_output=True).returncode == 0:  # someone's libvirtd
            for name in foreign_domains:
                subprocess.run([*VIRSH, "undefine", name], capture_output=True)
        for name in foreign_domains:
            Path(f"/etc/libvirt/qemu/{name}.xml").unlink(missing_ok=True)
        for f in (foreign_file, *foreign_volumes):
            f.unlink(missing_ok=True)
    assert _host_state() == before


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
        self.pools: set[str] = set()
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
        elif "pool-list" in argv:
            out = "\n".join(self.pools)
        elif "pool-create-as" in argv:
            self.pools.add(argv[argv.index("pool-create-as") + 1])
        elif "pool-destroy" in argv:
            self.pools.discard(argv[-1])
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
    lv = hostmod.libvirt
    for module, name, value in (  # no path of the host's: the records would name them
            (state, "RUN", tmp_path / "run"), (state, "KEEP", tmp_path / "keep"),
            (hostmod, "OVS_RUN", tmp_path / "ovs"),
            (lv, "NET_AUTOSTART", tmp_path / "autostart"), (lv, "QEMU_LOGS", tmp_path / "logs"),
            (lv, "NET_RUN", tmp_path / "netrun"), (lv, "DNSMASQ", tmp_path / "dnsmasq"),
            (lv, "CAPS_CACHE", tmp_path / "caps"), (lv, "IMAGES", tmp_path / "images"),
            (hostmod.upstream, "FORWARDING", forwarding)):
        monkeypatch.setattr(module, name, value)
    h = hostmod.Host(model.load(model.DEFAULT_LAB))
    fake = FakeHost(forwarding, h.facts.path)
    monkeypatch.setattr(subprocess, "run", fake)  # every command of the host, lab.host.run's included
    # the simulated Internet's daemons are started with Popen, in the namespace of the lab's
    # name: not here (a real lab of that name may be up)
    monkeypatch.setattr(hostmod.upstream.internet, "provision",
                        lambda node, lab: fake.calls.append(["provision"]))
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
    h.ledger.add("netns", h.upstreams.ns)
    h.ledger.add("link", h.upstreams.port)
    h.ledger.add("nft", f"netdev {h.seal_table.name}")
    h.ledger.add("daemon", "libvirtd")  # started by host.up: its chains and tables are ours


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
    h.ledger.add("daemon", "libvirtd")  # as Libvirt.start records the libvirtd it starts
    assert json.loads(h.facts.path.read_text())["nft_tables"] == ["ip filter"]
    fake.tables |= {"ip nat": [accept], "ip6 nat": [accept], "ip mangle": [],  # libvirt's, emptied
                    "ip6 filter": [accept, {"rule": {}}],  # someone's rule: stays
                    "ip6 mangle": [{"chain": {"hook": "input", "policy": "drop"}}]}  # a policy: stays
    removed = h.cleanup()
    assert sorted(fake.tables) == ["ip filter", "ip6 filter", "ip6 mangle"]
    assert {r for r in removed if r.startswith("nft table ip")} == {
        "nft table ip nat (empty)", "nft table ip6 nat (empty)", "nft table ip mangle (empty)"}


def test_chains_and_tables_of_a_libvirtd_not_ours_stay(stubbed):
    """A libvirtd that ran before host.up keeps its chains and tables (other networks of its
    may use them)."""
    h, fake = stubbed
    h.prepare("kvm", upstream="nat")  # Libvirt.start stubbed: libvirtd "already running"
    fake.tables |= {"ip nat": [], "ip6 nat": []}
    h.cleanup()
    assert sorted(fake.tables) == ["ip nat", "ip6 nat"]
    assert not any(c[0] in ("iptables", "ip6tables") and "-X" in c for c in fake.calls)


# -- what host.down may remove: only what the records name ----------------------------------

def _named(name: str, switch: str | None = None) -> model.Lab:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = name
    if switch:
        data["switch"]["name"] = switch
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "lab.yaml"
        f.write_text(yaml.safe_dump(data))
        return model.load(f)


def test_long_lab_names_get_distinct_host_names():
    one, two = (hostmod.Host(_named(n)) for n in ("labnumberone", "labnumbertwo"))
    for a, b in ((one.upstreams.port, two.upstreams.port), (one.upstreams.nat_port, two.upstreams.nat_port),
                 (one.upstreams.nat_bridge, two.upstreams.nat_bridge),
                 (one.libvirt.mgmt.bridge, two.libvirt.mgmt.bridge)):
        assert a != b and len(a) <= 15 and len(b) <= 15
    assert one.upstreams.port.startswith("up214-labn")
    assert hostmod.Host(_named("vxlab")).upstreams.port == "up214-vxlab"  # short: as it was


def test_host_down_of_another_lab_touches_nothing_of_this_one(stubbed):
    h, fake = stubbed
    h.prepare("kvm")
    ours = set(fake.links)
    other = hostmod.Host(_named("labnumbertwo", "dsw-two"))
    with pytest.raises(RuntimeError, match="host side of lab vxlab is up here"):
        other.prepare("kvm")
    n = len(fake.calls)
    assert other.cleanup() == []
    deletes = [c for c in fake.calls[n:] if "del" in c or "delete" in c or "destroy" in c
               or "undefine" in c or "vol-delete" in c]
    assert deletes == [] and fake.links >= ours and ours and h.facts.path.exists()
    h.cleanup()


def test_a_name_of_the_lab_held_by_something_else_is_refused_and_left(stubbed):
    h, fake = stubbed
    fake.links.add(h.upstreams.port)  # made by someone else, before host.up
    with pytest.raises(RuntimeError, match=f"link {h.upstreams.port} exists and is not lab vxlab's"):
        h.prepare("kvm")
    h.cleanup()
    assert h.upstreams.port in fake.links
    assert ["ip", "link", "del", h.upstreams.port] not in fake.calls


def test_prepare_records_what_vagrant_up_will_make(stubbed):
    h, fake = stubbed
    h.prepare("kvm")
    assert h.ledger.names("domain") == ["vxlab_routerVM", "vxlab_blueVM", "vxlab_greenVM"]
    assert h.ledger.names("volume") == ["vxlab_routerVM.img", "vxlab_blueVM.img", "vxlab_greenVM.img"]
    box = hostmod.libvirt.boxes.current()
    prefix = f"vxlab-VAGRANTSLASH-bookworm-{box.key}_vagrant_box_image_" if box else "vxlab-VAGRANTSLASH-"
    assert h.ledger.entries("box-volumes") == [{"kind": "box-volumes", "name": prefix, "before": []}]
    assert h.ledger.names("pool") == ["default"] and "default" in fake.pools  # transient
    assert any(c[-6:] == ["pool-create-as", "default", "dir", "--target",
                          str(hostmod.libvirt.IMAGES), "--build"] for c in fake.calls)
    assert {h.upstreams.port, h.upstreams.ns} <= {e["name"] for e in h.ledger.entries()}
    h.cleanup()
    assert "default" not in fake.pools and not h.ledger.path.exists()


def test_the_state_dirs_are_private(stubbed, tmp_path):
    h, fake = stubbed
    h.prepare("kvm")
    for d in (state.RUN, h.run, h.run / "serial", state.KEEP, h.keep):
        assert d.stat().st_mode & 0o777 == 0o700, d
    h.cleanup()
    (tmp_path / "elsewhere").mkdir()
    state.RUN.mkdir(mode=0o700)
    h.run.symlink_to(tmp_path / "elsewhere")  # planted
    with pytest.raises(RuntimeError, match="is a symlink"):
        h.prepare("kvm")
    h.run.unlink()
    h.run.mkdir(mode=0o755)
    with pytest.raises(RuntimeError, match="mode 0755"):
        h.prepare("kvm")
