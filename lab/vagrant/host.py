"""The host's side of the Vagrant lab: L2 plumbing only, and its exact undo.

`prepare()` makes, idempotently: the host's Open vSwitch (userspace datapath: this kernel has
no openvswitch module) with the seed's switch `dsw-host`; libvirtd and its helpers (no systemd
here: started by hand, by pid file); the libvirt networks the Vagrantfile names (an isolated
management network for Vagrant's SSH, and `dsw-host` with a portgroup per VLAN set); and the
upstream on VLAN 214 of dsw-host, one of UPSTREAMS:
- `simulated` (the default): the lab's own Internet in a namespace;
- `nat` (for laptops, never in CI): the real Internet through a libvirt NAT network.
`cleanup()` removes all of it, restores every file it changed, and touches nothing else.

Sealed with `simulated`: no lab address on the host (its only address is the management
network's .1, which Vagrant's SSH needs; that network forwards nothing), no forwarding, no
sysctl changed. `nat` is the one exception, chosen by the user: the host holds the lab's
Internet gateway addresses on the NAT bridge, forwards and NATs; the forwarding sysctls are
recorded before and restored by `cleanup()`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lab import model
from lab.roles import internet
from lab.substrate.netns import NetnsNode
from lab.vagrant import spec as specs

RUN = Path("/run/vxlab-host")  # pid files, OVS database, logs: gone with the host's boot
KEEP = Path("/var/lib/vxlab-host")  # backups of the files we change: they outlive a reboot
OVS_RUN = Path("/var/run/openvswitch")  # libvirt runs ovs-vsctl on the default socket
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
NET_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart")
QEMU_LOGS = Path("/var/log/libvirt/qemu")
LIBVIRT_CHAINS = {  # (table, builtin chain) -> libvirt's chain hooked into it
    ("filter", "INPUT"): "LIBVIRT_INP", ("filter", "OUTPUT"): "LIBVIRT_OUT",
    ("filter", "FORWARD"): ("LIBVIRT_FWX", "LIBVIRT_FWI", "LIBVIRT_FWO"),
    ("nat", "POSTROUTING"): "LIBVIRT_PRT", ("mangle", "POSTROUTING"): "LIBVIRT_PRT",
}
TABLES = ("filter", "nat", "mangle")  # the iptables tables libvirt puts chains in
# iptables here is its nf_tables flavour: libvirt's first chain in a table makes the table.
IPTABLES_TABLES = tuple((family, table) for family in ("ip", "ip6") for table in TABLES)
VIRSH = ("virsh", "-q", "-c", "qemu:///system")
UPSTREAMS = ("simulated", "nat")
# libvirt turns these on for a NAT network and never off: recorded before, restored after.
FORWARDING = (Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/ipv6/conf/all/forwarding"))
Progress = Callable[[str], None]


def sh(argv: Sequence[str], check: bool = True, timeout: float = 60,
       input: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    if check and p.returncode:
        raise RuntimeError(f"`{' '.join(argv)}` failed ({p.returncode}): {(p.stderr or p.stdout).strip()}")
    return p


def _quiet(_: str) -> None:
    pass


# -- daemons, by pid file -----------------------------------------------------------------

@dataclass(frozen=True)
class Daemon:
    """A daemon we start ourselves; it writes `pidfile`, and only that pid is ever signalled."""

    name: str  # its process name (/proc/PID/comm)
    argv: tuple[str, ...]  # detaches, writing pidfile
    pidfile: Path

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            return None
        return pid if comm == self.name[:15] else None

    def start(self, timeout: float = 20) -> bool:
        """Start unless running; True if we started it."""
        if self.pid() is not None:
            return False
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        sh(self.argv, timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.pid() is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start (no live pid in {self.pidfile})")
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = 10) -> bool:
        pid = self.pid()
        if pid is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                deadline = time.monotonic() + timeout
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if not _alive(pid):
                    break
        self.pidfile.unlink(missing_ok=True)
        return pid is not None


# -- files we change: recorded, restored ----------------------------------------------------

class Backups:
    """Copies of host files before we change them, restored byte for byte (mode too)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.index = where / "index.json"

    def _load(self) -> dict[str, str | None]:
        try:
            return json.loads(self.index.read_text())
        except (OSError, ValueError):
            return {}

    def save(self, path: Path) -> None:
        """Remember `path` as it is now, unless remembered already (the first state wins)."""
        index = self._load()
        if str(path) in index:
            return
        self.where.mkdir(parents=True, exist_ok=True)
        copy = None
        if path.exists() or path.is_symlink():
            copy = str(self.where / f"{len(index)}-{path.name}")
            if path.is_symlink():
                os.symlink(os.readlink(path), copy)
            else:
                shutil.copy2(path, copy)
        index[str(path)] = copy
        self.index.write_text(json.dumps(index, indent=1))

    def restore_all(self) -> list[str]:
        restored = []
        for path, copy in self._load().items():
            p = Path(path)
            if p.exists() or p.is_symlink():
                p.unlink()
            if copy is not None:
                if Path(copy).is_symlink():
                    os.symlink(os.readlink(copy), p)
                else:
                    shutil.copy2(copy, p)
            restored.append(path)
        shutil.rmtree(self.where, ignore_errors=True)
        return restored


class Footprint:
    """What libvirtd writes by itself when we start it (its first start fills /etc/libvirt
    with nwfilters, UUIDs and secrets/; then runtime dirs, logs, dnsmasq and QEMU state):
    /etc/libvirt is saved whole and put back; elsewhere, whatever is new is removed."""

    ETC = Path("/etc/libvirt")
    DIRS = (Path("/var/lib/libvirt"), Path("/var/log/libvirt"), Path("/var/cache/libvirt"),
            Path("/run/libvirt"))

    def __init__(self, where: Path) -> None:
        self.where = where
        self.tar = where / "etc-libvirt.tar"
        self.listing = where / "paths.json"

    def record(self) -> None:
        if self.listing.exists():
            return
        self.where.mkdir(parents=True, exist_ok=True)
        if self.ETC.exists():
            sh(["tar", "-C", str(self.ETC.parent), "--numeric-owner", "--xattrs", "-cpf", str(self.tar),
                self.ETC.name])
        self.listing.write_text(json.dumps(sorted(self._paths())))

    def _paths(self) -> set[str]:
        out = set()
        for d in self.DIRS:
            if d.exists():
                out.add(str(d))
                for dirpath, dirnames, filenames in os.walk(d):
                    out |= {os.path.join(dirpath, n) for n in dirnames + filenames}
        return out

    def undo(self) -> list[str]:
        if not self.listing.exists():
            return []
        before = set(json.loads(self.listing.read_text()))
        new = sorted(self._paths() - before, key=lambda p: -p.count("/"))  # deepest first
        for p in new:
            path = Path(p)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        done = [f"{len(new)} paths libvirt made"] if new else []
        if self.tar.exists():
            shutil.rmtree(self.ETC)
            sh(["tar", "-C", str(self.ETC.parent), "--numeric-owner", "--xattrs", "-xpf", str(self.tar)])
            done.append(f"{self.ETC} as it was")
        shutil.rmtree(self.where, ignore_errors=True)
        return done


# -- the host ------------------------------------------------------------------------------

class Host:
    """The host plumbing of one lab's VMs (names from lab.vagrant.spec)."""

    def __init__(self, lab: model.Lab, progress: Progress = _quiet) -> None:
        self.lab = lab
        self.say = progress
        self.run = RUN / lab.name
        self.backups = Backups(KEEP / lab.name / "backup")
        self.facts = KEEP / lab.name / "facts.json"  # what the host was like before us
        self.footprint = Footprint(KEEP / lab.name / "libvirt")
        self.switch = specs.switch_network(lab)
        self.mgmt = specs.management(lab)
        self.upstream_ns = f"vag-{lab.name}-internet"  # not vxlab-*: the embedded lab's names
        self.upstream_port = f"up{lab.router.uplink.vlan}-{lab.name}"[:15]  # on dsw-host
        self.nat_net = f"{lab.name}-nat"  # the `nat` upstream: a libvirt network,
        self.nat_bridge = f"vxnat-{lab.name}"[:15]  # its Linux bridge,
        self.nat_port = f"nat{lab.router.uplink.vlan}-{lab.name}"[:15]  # upstream_port's peer there
        self.seal_table = f"vxlab_host_{lab.name}"
        d = self.run
        self.ovsdb = Daemon("ovsdb-server", (
            "ovsdb-server", str(d / "ovs/conf.db"), f"--remote=punix:{OVS_RUN}/db.sock",
            f"--pidfile={d / 'ovsdb-server.pid'}", f"--log-file={d / 'ovs/ovsdb-server.log'}",
            f"--unixctl={d / 'ovs/ovsdb-server.ctl'}", "--detach"), d / "ovsdb-server.pid")
        self.vswitchd = Daemon("ovs-vswitchd", (
            "ovs-vswitchd", f"unix:{OVS_RUN}/db.sock", f"--pidfile={d / 'ovs-vswitchd.pid'}",
            f"--log-file={d / 'ovs/ovs-vswitchd.log'}", f"--unixctl={d / 'ovs/ovs-vswitchd.ctl'}",
            "--detach"), d / "ovs-vswitchd.pid")
        self.libvirt = [Daemon(n, (n, "-d", "-p", str(d / f"{n}.pid")), d / f"{n}.pid")
                        for n in ("virtlogd", "virtlockd", "libvirtd")]

    # -- facts ----------------------------------------------------------------------------

    def _facts(self) -> dict:
        try:
            return json.loads(self.facts.read_text())
        except (OSError, ValueError):
            return {}

    def _record_facts(self, upstream: str) -> None:
        """Once, before we change anything: what exists already and must stay."""
        if self.facts.exists():
            return
        self.facts.parent.mkdir(parents=True, exist_ok=True)
        facts = {"chains": self._libvirt_chains(), "nft_tables": _nft_tables(),
                 "ovs_run_existed": OVS_RUN.exists(),
                 "storage_pools": self._virsh_names("pool-list", "--all", "--name")
                 if self._libvirt_up() else None, "upstream": upstream}
        if upstream == "nat":  # before libvirt turns them on
            facts["forwarding"] = [p.read_text().strip() for p in FORWARDING]
        self.facts.write_text(json.dumps(facts, indent=1))

    def upstream(self) -> str | None:
        """The upstream prepare() made (None before it ran)."""
        return self._facts().get("upstream", "simulated") if self.facts.exists() else None

    @staticmethod
    def _libvirt_chains() -> list[str]:
        out = []
        for tool in ("iptables", "ip6tables"):
            for table in TABLES:
                r = sh([tool, "-t", table, "-S"], check=False)
                out += [f"{tool} {table} {line.split()[1]}" for line in r.stdout.splitlines()
                        if line.startswith("-N LIBVIRT_")]
        return out

    # -- prepare --------------------------------------------------------------------------

    def prepare(self, driver: str = "qemu", upstream: str = "simulated") -> None:
        """Make everything the Vagrantfile expects on the host; safe to run again."""
        if upstream not in UPSTREAMS:
            raise ValueError(f"upstream must be one of {', '.join(UPSTREAMS)}, not {upstream!r}")
        made = self.upstream()
        if made not in (None, upstream):
            raise RuntimeError(f"this host has the {made} upstream: `invoke host.down` before "
                               f"switching to {upstream}")
        self.run.mkdir(parents=True, exist_ok=True)
        self._record_facts(upstream)
        if not self._libvirt_up():  # we shall start libvirtd: everything it writes is ours
            self.footprint.record()
        self._qemu_conf(driver)
        self._no_autostart()
        self._ovs()
        self._libvirtd()
        self._networks(self.network_xml())
        if upstream == "nat":
            self._nat_upstream()
        else:
            self._upstream()
        self.seal()
        where = self.nat_net if upstream == "nat" else self.upstream_ns
        self.say(f"host ready: OVS bridge {self.switch.bridge}, libvirt networks "
                 f"{self.mgmt.name} and {self.switch.name}, {upstream} upstream {where}")

    def _qemu_conf(self, driver: str) -> None:
        """Where /dev/kvm exists but cannot run the VMs, libvirt re-probes QEMU on every call
        (virsh define: 44 s) unless QEMU runs as root: say so in qemu.conf."""
        if driver != "qemu" or not Path("/dev/kvm").exists():
            return
        text = QEMU_CONF.read_text()
        if '\nuser = "root"' in text:
            return
        self.backups.save(QEMU_CONF)
        QEMU_CONF.write_text(text + '\n# vxlab: TCG on a host with an unusable /dev/kvm\n'
                                    'user = "root"\ngroup = "root"\n')
        self.say("qemu.conf: QEMU runs as root (recorded; cleanup restores it)")

    def _no_autostart(self) -> None:
        """libvirtd would start autostart networks, and a NAT one turns on forwarding."""
        if not NET_AUTOSTART.is_dir():
            return
        for link in NET_AUTOSTART.iterdir():
            self.backups.save(link)
            link.unlink()
            self.say(f"libvirt network autostart {link.name}: off while the lab's libvirtd runs")

    def _ovs(self) -> None:
        if not self.ovsdb.pid() and (OVS_RUN / "db.sock").exists() and self._vsctl("show", check=False).ok:
            raise RuntimeError(f"another Open vSwitch serves {OVS_RUN}/db.sock: not ours, not touched")
        (self.run / "ovs").mkdir(parents=True, exist_ok=True)
        OVS_RUN.mkdir(parents=True, exist_ok=True)
        db = self.run / "ovs/conf.db"
        if not db.exists():
            sh(["ovsdb-tool", "create", str(db), OVS_SCHEMA])
        self.ovsdb.start()
        self._vsctl("--no-wait", "init")
        self.vswitchd.start()
        br = self.switch.bridge
        # netdev: the userspace datapath. The bridge's own port stays down, no address.
        self._vsctl("--may-exist", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        self._vsctl("set", "interface", br, f"mtu_request={self.switch.mtu}")

    def _vsctl(self, *args: str, check: bool = True) -> _Done:
        r = sh(["ovs-vsctl", f"--db=unix:{OVS_RUN}/db.sock", "--timeout=10", *args], check=check)
        return _Done(r.returncode == 0, r.stdout)

    def _libvirt_up(self) -> bool:
        return sh([*VIRSH, "uri"], check=False, timeout=20).returncode == 0

    def _libvirtd(self) -> None:
        if self._libvirt_up() and self.libvirt[-1].pid() is None:
            self.say("libvirtd: using the one already running (not ours: cleanup leaves it)")
            return
        for d in self.libvirt:
            if d.start():
                self.say(f"{d.name} started (pid {d.pid()})")
        deadline = time.monotonic() + 30
        while not self._libvirt_up():
            if time.monotonic() > deadline:
                raise RuntimeError("libvirtd does not answer on qemu:///system")
            time.sleep(0.2)
        facts = self._facts()
        if facts.get("storage_pools") is None:  # libvirt was not up when facts were taken
            facts["storage_pools"] = self._virsh_names("pool-list", "--all", "--name")
            self.facts.write_text(json.dumps(facts, indent=1))

    def _virsh(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh([*VIRSH, *args], check=check, timeout=120)

    def _virsh_names(self, *args: str) -> list[str]:
        return [n.strip() for n in self._virsh(*args).stdout.splitlines() if n.strip()]

    def network_xml(self) -> dict[str, str]:
        """The two networks, as libvirt XML. Transient (net-create): nothing under /etc."""
        sw, mg = self.switch, self.mgmt
        groups = []
        for name, vlans in sw.portgroups.items():
            tags = "".join(f"<tag id='{v}'/>" for v in vlans)
            trunk = " trunk='yes'" if len(vlans) > 1 else ""
            groups.append(f"  <portgroup name={quoteattr(name)}><vlan{trunk}>{tags}</vlan></portgroup>")
        switch = "\n".join([
            "<network>", f"  <name>{sw.name}</name>", "  <forward mode='bridge'/>",
            f"  <bridge name={quoteattr(sw.bridge)}/>", "  <virtualport type='openvswitch'/>",
            *groups, "</network>", ""])
        host = specs.mgmt_host_address(self.lab)
        first, last = list(host.network.hosts())[1], list(host.network.hosts())[-1]
        # No <forward>: isolated. Ports isolated: VMs reach the host's SSH client, not each
        # other (the lab's traffic goes through routerVM only). No DNS: nothing to resolve.
        mgmt = "\n".join([
            "<network>", f"  <name>{mg.name}</name>", "  <bridge stp='off' delay='0'/>",
            "  <port isolated='yes'/>", "  <dns enable='no'/>",
            f"  <ip address='{host.ip}' netmask='{host.netmask}'>",
            f"    <dhcp><range start='{first}' end='{last}'/></dhcp>", "  </ip>", "</network>", ""])
        return {sw.name: switch, mg.name: mgmt}

    def nat_network_xml(self) -> str:
        """The `nat` upstream's network: the lab's Internet gateway addresses on a bridge of
        its own, NAT for IPv4 and IPv6. No DHCP, no DNS (so no dnsmasq): routerVM's uplink is
        static, and the lab uses the resolver of lab.yaml, reached through the NAT."""
        gw = self.lab.internet.gateway
        return "\n".join([
            "<network>", f"  <name>{self.nat_net}</name>",
            "  <forward mode='nat'><nat ipv6='yes'/></forward>",
            f"  <bridge name='{self.nat_bridge}' stp='off' delay='0'/>",
            f"  <mtu size='{self.switch.mtu}'/>", "  <dns enable='no'/>",
            f"  <ip address='{gw.ipv4.ip}' prefix='{gw.ipv4.network.prefixlen}'/>",
            f"  <ip family='ipv6' address='{gw.ipv6.ip}' prefix='{gw.ipv6.network.prefixlen}'/>",
            "</network>", ""])

    def _networks(self, xmls: dict[str, str]) -> None:
        active = set(self._virsh_names("net-list", "--name"))
        for name, xml in xmls.items():
            if name in active:
                continue
            path = self.run / f"net-{name}.xml"
            path.write_text(xml)
            self._virsh("net-create", str(path))
            self.say(f"libvirt network {name} created")

    def _upstream(self) -> None:
        """`simulated`: the lab's Internet (lab/roles/internet.py) in a namespace, on VLAN 214."""
        ns, port = self.upstream_ns, self.upstream_port
        mtu = str(self.switch.mtu)
        if ns not in _namespaces():
            sh(["ip", "netns", "add", ns])
        sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0"])  # the namespace's own sysctls, not the host's
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        if not _link_exists(port):
            with contextlib.suppress(RuntimeError):
                sh(["ip", "-n", ns, "link", "del", "eth0"])  # half a pair left by an interruption
            sh(["ip", "link", "add", port, "mtu", mtu, "type", "veth",
                "peer", "name", "eth0", "mtu", mtu, "netns", ns])
        sh(["ip", "link", "set", port, "addrgenmode", "none"])  # before up: no fe80:: address
        sh(["ip", "link", "set", port, "up"])
        # TCP through OVS's userspace datapath needs real checksums from the sender (ping
        # works either way): no checksum offload on the upstream's side.
        sh(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"])
        self._vsctl("--may-exist", "add-port", self.switch.bridge, port, "--", "set", "port", port,
                    f"tag={self.lab.router.uplink.vlan}")
        internet.provision(self.internet_node(), self.lab)

    def _nat_upstream(self) -> None:
        """`nat`: VLAN 214 bridged, by a veth, to a libvirt NAT network whose bridge holds the
        lab's Internet gateway addresses; the host routes and NATs to its own uplink.
        (libvirt refuses IPv6 forwarding where the host's RA routes would be lost: there
        accept_ra=2 is the user's to set, not ours.)"""
        self.say("nat upstream: the host forwards and NATs for the lab "
                 "(forwarding sysctls recorded; restored by host.down)")
        self._networks({self.nat_net: self.nat_network_xml()})
        # routerVM's IPv6 default route: the link-local gateway, which libvirt's XML cannot hold
        sh(["ip", "-6", "addr", "replace", str(self.lab.internet.gateway.link_local),
            "dev", self.nat_bridge, "nodad"])
        port, peer, mtu = self.upstream_port, self.nat_port, str(self.switch.mtu)
        if not _link_exists(port):
            with contextlib.suppress(RuntimeError):
                sh(["ip", "link", "del", peer])  # half a pair left by an interruption
            sh(["ip", "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", peer, "mtu", mtu])
        for end in (port, peer):
            sh(["ip", "link", "set", end, "addrgenmode", "none"])  # before up: no fe80:: address
        sh(["ip", "link", "set", peer, "master", self.nat_bridge])
        # As for `simulated`: what enters OVS's userspace datapath carries real checksums.
        sh(["ethtool", "-K", peer, "tx", "off"])
        for end in (peer, port):
            sh(["ip", "link", "set", end, "up"])
        self._vsctl("--may-exist", "add-port", self.switch.bridge, port, "--", "set", "port", port,
                    f"tag={self.lab.router.uplink.vlan}")

    def internet_node(self) -> NetnsNode:
        if self.upstream() == "nat":
            raise RuntimeError("the nat upstream has no lab Internet node: drills need the "
                               "simulated upstream (`invoke host.down`, then `invoke host.up`)")
        return self._internet_ns()

    def _internet_ns(self) -> NetnsNode:
        return NetnsNode("internet", self.upstream_ns, str(self.run / "internet"))

    def seal(self) -> list[str]:
        """Keep the host's own stack off the switch's ports (the upstream's veth, the VMs'
        taps): no IPv6 link-local address on them, and every frame they receive dropped at
        netfilter's ingress hook (an nft table of our own). OVS's userspace datapath reads
        the ports through packet sockets, which get their copy before that hook: the lab's
        frames are switched, and the host neither answers nor learns anything from them.
        Also the lab's MTU on each port: libvirt takes no <mtu> for a bridge-mode network,
        and a tap left at 1500 drops the underlay's jumbo frames.
        Idempotent; run it again after `vagrant up` has made the VMs' taps."""
        sealed = []
        sh(["nft", "add", "table", "netdev", self.seal_table])
        listing = json.loads(sh(["nft", "-j", "list", "table", "netdev", self.seal_table]).stdout)
        chains = {i["chain"]["name"] for i in listing["nftables"] if "chain" in i}
        ports = [p for p in self._vsctl("list-ports", self.switch.bridge).out.split() if _link_exists(p)]
        for chain in chains - {f"in_{p}" for p in ports}:  # of taps gone with their VMs
            sh(["nft", "delete", "chain", "netdev", self.seal_table, chain], check=False)
        for port in ports:
            self._vsctl("set", "interface", port, f"mtu_request={self.switch.mtu}")
            sh(["ip", "link", "set", port, "addrgenmode", "none"], check=False)
            sh(["ip", "-6", "addr", "flush", "dev", port, "scope", "link"], check=False)
            # Anew each time: a tap of a destroyed VM may come back under the same name.
            chain = f"in_{port}"
            sh(["nft", "delete", "chain", "netdev", self.seal_table, chain], check=False)
            sh(["nft", f"add chain netdev {self.seal_table} {chain} {{ type filter hook ingress "
                       f'device "{port}" priority 0 ; policy drop ; }}'])
            sealed.append(port)
        return sealed

    # -- cleanup --------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Undo prepare() (and what `vagrant up` left in libvirt): everything, also after an
        interrupted prepare or up. Returns what was removed. A step that fails does not stop
        the later ones (each is independent of the others' success); the failures are raised
        together at the end, so one never leaves the rest of the host prepared."""
        done: list[str] = []
        failed: list[str] = []
        facts = self._facts()
        libvirt_ours = any(d.pid() for d in self.libvirt)

        def step(what: str, fn: Callable[[], list[str] | None]) -> None:
            try:
                done.extend(fn() or [])
            except Exception as e:  # whatever it was, the later steps still run; said at the end
                failed.append(f"{what}: {e}")

        step("libvirt objects", lambda: self._libvirt_objects(libvirt_ours) if self._libvirt_up() else [])
        step("libvirt daemons", lambda: [f"{d.name} stopped" for d in reversed(self.libvirt) if d.stop()])
        # The upstream's host ends first: deleting a veth takes its peer at once, whereas a
        # deleted namespace's links go later, asynchronously (the host's end can vanish
        # between a check and a delete: 2 in 30 on an idle host).
        step("upstream ports", lambda: _del_links(self.upstream_port, self.nat_port))
        step("upstream namespace", self._remove_upstream_ns)
        step("nat bridge", lambda: _del_links(self.nat_bridge))  # if libvirtd died before net-destroy
        step("forwarding", lambda: self._restore_forwarding(facts.get("forwarding")))
        step("OVS bridge", self._remove_bridge)
        step("OVS daemons", lambda: self._stop_ovs(facts))
        step("seal", self._remove_seal)
        step("libvirt chains", lambda: self._remove_chains(facts.get("chains", [])))
        step("iptables tables", lambda: self._remove_tables(facts.get("nft_tables")))
        step("backups", lambda: [f"restored {p}" for p in self.backups.restore_all()])
        if not any(d.pid() for d in self.libvirt):
            step("libvirt files", self.footprint.undo)
        if failed:  # keep the records: a later host.down needs them to finish the job
            raise RuntimeError("host clean-up incomplete (run `invoke host.down` again):\n  "
                               + "\n  ".join(failed) + "\nremoved: " + ", ".join(done))
        with contextlib.suppress(OSError):
            shutil.rmtree(specs.RUN_DIR)  # the VMs' serial logs
        shutil.rmtree(self.run, ignore_errors=True)
        shutil.rmtree(KEEP / self.lab.name, ignore_errors=True)
        for d in (RUN, KEEP):
            with contextlib.suppress(OSError):
                d.rmdir()
        return done

    def _remove_bridge(self) -> list[str]:
        if not self.ovsdb.pid():
            return []
        self._vsctl("--if-exists", "del-br", self.switch.bridge)
        return [f"OVS bridge {self.switch.bridge}"]

    def _stop_ovs(self, facts: dict) -> list[str]:
        """(Even if the bridge could not be deleted: its device goes with ovs-vswitchd, its
        record with the database, which lives in self.run.)"""
        done = [f"{d.name} stopped" for d in (self.vswitchd, self.ovsdb) if d.stop()]
        if not facts.get("ovs_run_existed", True) and OVS_RUN.exists():
            shutil.rmtree(OVS_RUN)
        return done

    def _remove_seal(self) -> list[str]:
        if sh(["nft", "delete", "table", "netdev", self.seal_table], check=False).returncode == 0:
            return [f"nft table netdev {self.seal_table}"]
        return []

    def _libvirt_objects(self, ours: bool) -> list[str]:
        done = []
        prefix = specs.domain_prefix(self.lab)
        for dom in self._virsh_names("list", "--all", "--name"):
            if dom.startswith(prefix):  # left by an interrupted up or a missing destroy
                self._virsh("destroy", dom, check=False)
                self._virsh("undefine", dom, "--nvram", "--remove-all-storage", check=False)
                done.append(f"domain {dom}")
        active = set(self._virsh_names("net-list", "--all", "--name"))
        for name in (self.switch.name, self.mgmt.name, self.nat_net):
            if name in active:
                self._virsh("net-destroy", name, check=False)
                self._virsh("net-undefine", name, check=False)  # if someone made it persistent
                done.append(f"libvirt network {name}")
        # vagrant-libvirt uploads each box into the pool `default` (and makes the pool):
        # our boxes' volumes go, and the pool if it was not there before us.
        pools_before = self._facts().get("storage_pools") or []
        if "default" in self._virsh_names("pool-list", "--all", "--name"):
            for vol in self._virsh_names("vol-list", "default"):
                name = vol.split()[0]
                if name.startswith(("vxlab-VAGRANTSLASH-", prefix)):
                    self._virsh("vol-delete", "--pool", "default", name, check=False)
                    done.append(f"volume {name}")
            if ours and "default" not in pools_before:
                self._virsh("pool-destroy", "default", check=False)
                self._virsh("pool-undefine", "default", check=False)
                done.append("storage pool default")
        for log in QEMU_LOGS.glob(f"{prefix}*.log"):
            log.unlink()
        return done

    def _remove_upstream_ns(self) -> list[str]:
        if self.upstream_ns not in _namespaces():
            return []
        node = self._internet_ns()
        for s in internet.services(internet.target(self.lab, node)):
            node.stop(s)
        pids = sh(["ip", "netns", "pids", self.upstream_ns], check=False).stdout.split()
        for pid in pids:  # anything else still in our namespace is ours
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        sh(["ip", "netns", "del", self.upstream_ns])
        return [f"namespace {self.upstream_ns}"]

    @staticmethod
    def _restore_forwarding(before: list[str] | None) -> list[str]:
        """The `nat` upstream only: the forwarding sysctls as they were before libvirt's NAT
        network (the one place the project writes them). Only those that changed: writing
        one also resets every interface's own setting."""
        done = []
        for path, value in zip(FORWARDING, before or (), strict=False):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                done.append(f"restored {path} = {value}")
        return done

    def _remove_chains(self, before: list[str]) -> list[str]:
        """libvirt leaves its (emptied) LIBVIRT_* chains behind: remove those it made for us."""
        done = []
        for tool in ("iptables", "ip6tables"):
            for (table, builtin), chains in LIBVIRT_CHAINS.items():
                for chain in (chains,) if isinstance(chains, str) else chains:
                    if f"{tool} {table} {chain}" in before:
                        continue
                    if sh([tool, "-t", table, "-n", "-L", chain], check=False).returncode:
                        continue
                    while sh([tool, "-t", table, "-D", builtin, "-j", chain], check=False).returncode == 0:
                        pass
                    sh([tool, "-t", table, "-F", chain], check=False)
                    sh([tool, "-t", table, "-X", chain], check=False)
                    done.append(f"{tool} -t {table} {chain}")
        return done

    @staticmethod
    def _remove_tables(before: list[str] | None) -> list[str]:
        """The iptables tables libvirt's chains made: those that were not there before us
        and are empty now (no rule, no chain of their own, every hook accepting)."""
        if before is None:  # prepare() never recorded them: nothing is known to be ours
            return []
        done = []
        for family, table in IPTABLES_TABLES:
            name = f"{family} {table}"
            if name in before:
                continue
            r = sh(["nft", "-j", "list", "table", family, table], check=False)
            if r.returncode:
                continue
            objects = [next(iter(o.items())) for o in json.loads(r.stdout)["nftables"]]
            if all(kind in ("metainfo", "table") or (kind == "chain" and "hook" in o
                                                      and o.get("policy") == "accept")
                   for kind, o in objects):
                sh(["nft", "delete", "table", family, table])
                done.append(f"nft table {name} (empty)")
        return done

    # -- status ---------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {
            "daemons": {d.name: d.pid() for d in (self.ovsdb, self.vswitchd, *self.libvirt)},
            "bridge": self.ovsdb.pid() is not None and self._vsctl("br-exists", self.switch.bridge,
                                                                   check=False).ok,
            "networks": self._virsh_names("net-list", "--name") if self._libvirt_up() else [],
            "upstream": self.upstream() if _link_exists(self.upstream_port) else None,
        }


@dataclass(frozen=True)
class _Done:
    ok: bool
    out: str


def _alive(pid: int) -> bool:
    """Running, not a zombie: our daemons detach, and their reaper (PID 1) may be slow."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _nft_tables() -> list[str]:
    """The host's nftables tables, as "family name"."""
    return [" ".join(line.split()[1:3]) for line in sh(["nft", "list", "tables"]).stdout.splitlines()
            if line.startswith("table ")]


def _namespaces() -> set[str]:
    return {line.split()[0] for line in sh(["ip", "netns", "list"]).stdout.splitlines() if line.strip()}


def _del_links(*names: str) -> list[str]:
    """Delete these links of the host's namespace where they are; say which were. A link
    that vanished meanwhile (its namespace's deletion took it) counts as deleted."""
    done = []
    for name in names:
        if not _link_exists(name):
            continue
        p = sh(["ip", "link", "del", name], check=False)
        if p.returncode and _link_exists(name):
            raise RuntimeError(f"`ip link del {name}` failed: {(p.stderr or p.stdout).strip()}")
        done.append(f"link {name}")
    return done


def _link_exists(name: str) -> bool:
    return sh(["ip", "link", "show", "dev", name], check=False).returncode == 0


def prepare(lab: model.Lab, progress: Progress = print, driver: str | None = None,
            upstream: str = "simulated") -> Host:
    host = Host(lab, progress)
    host.prepare(driver or specs.spec(lab).driver, upstream)
    return host


def cleanup(lab: model.Lab, progress: Progress = print) -> list[str]:
    return Host(lab, progress).cleanup()
