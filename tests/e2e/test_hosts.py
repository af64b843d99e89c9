"""host.up and host.down on every host of a lab with `hosts:` (lab/vagrant/hosts.py), for real,
on one machine: this machine is host `here` (the whole host side: OVS, libvirt, upstream, and
its side of the stitch); host `far` is this machine again, reached as root@127.0.0.1 over SSH
through an sshd of the test's own (its port, its host key, its client key, stopped by pid), whose
sessions run in a network namespace `mhfar` with /run and /var/lib of their own: there far has
its own Open vSwitch, dsw-host and records, like a second machine. A veth between the two
namespaces is the fabric (each end the host's `nic`). A frame crosses from a client on here's
dsw-host to one on far's, on the VLAN of both; host.down leaves both hosts as they were."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from conftest import mh_footprint, needs_root
from test_vagrant_host import _host_state

from lab import model
from lab.host import process
from lab.host.wait import until
from lab.vagrant import hosts, state
from lab.vagrant.host import Host

pytestmark = [needs_root("sshd", "ovs-vswitchd", "libvirtd", "nsenter", "unshare", "nft"), pytest.mark.e2e]

PORT = 2219  # the stand-in's sshd, on 127.0.0.1 only
NEED = 9054 + 54  # the default lab's dsw-host frames over IPv4 endpoints
FAR = "mhfar"  # its network namespace
CLIENTS = {"mhc-h220": ("10.0.0.1", None), "mhc-f220": ("10.0.0.2", FAR)}  # ns: (address, host's ns)


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert not check or p.returncode == 0, f"{argv}: {p.stderr}"
    return p


def split_lab(tmp: Path) -> model.Lab:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"], data["switch"]["name"] = "mhlab", "mhdsw"
    data["hosts"] = {"here": {"endpoint": "10.255.0.1", "underlay_mtu": NEED, "nic": "mhfab0"},
                     "far": {"ssh": {"user": "root", "address": "127.0.0.1", "port": PORT},
                             "endpoint": "10.255.0.2", "underlay_mtu": NEED, "nic": "mhfab1"}}
    data["tenants"]["green"]["host"] = "far"
    f = tmp / "lab.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return model.load(f)


class StandIn:
    """Host `far`: an sshd of ours whose sessions live in namespace mhfar, /run and /var/lib private."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.pidfile = tmp / "sshd.pid"
        self.key = tmp / "client_ed25519"
        self.known_hosts = tmp / "known_hosts"

    def start(self) -> None:
        t = self.tmp
        for key in ("host_ed25519", "client_ed25519"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"mh-{key}", "-f", str(t / key))
        (t / "authorized_keys").write_text((t / "client_ed25519.pub").read_text())
        kind, b64, *_ = (t / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{PORT} {kind} {b64}\n")
        (t / "session.sh").write_text(
            "#!/bin/sh\n# a session of host far: in its network namespace, with that namespace's sysfs\n"
            f"exec nsenter --net={t}/netns -- unshare --mount -- "
            "sh -c 'mount -t sysfs mhsys /sys && exec sh -c \"$SSH_ORIGINAL_COMMAND\"'\n")
        (t / "session.sh").chmod(0o700)
        (t / "sshd_config").write_text(
            f"Port {PORT}\nListenAddress 127.0.0.1\nHostKey {t}/host_ed25519\nPidFile {self.pidfile}\n"
            f"AuthorizedKeysFile {t}/authorized_keys\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            f"StrictModes no\nForceCommand {t}/session.sh\n")
        (t / "netns").touch()
        # A mount namespace of its own, kept by sshd: far's /run and /var/lib, and its netns file.
        sh("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
           f"mount --bind /run/netns/{FAR} {t}/netns && mount -t tmpfs -o mode=0755 mhrun /run && "
           "mkdir -m 0755 /run/sshd && mount -t tmpfs -o mode=0755 mhlib /var/lib && "
           f"/usr/sbin/sshd -t -f {t}/sshd_config && exec /usr/sbin/sshd -f {t}/sshd_config")
        assert until(lambda: self.pid() is not None, 10), "the stand-in's sshd did not start"

    def pid(self) -> int | None:
        """Its live pid (sshd rewrites its argv: its name is checked by /proc's comm)."""
        pid = process.pid_in(self.pidfile)
        try:
            named = pid is not None and Path(f"/proc/{pid}/comm").read_text() == "sshd\n"
        except OSError:
            return None
        return pid if named and process.alive(pid) else None

    def stop(self) -> None:
        """Its sshd, by pid; then whatever still runs in mhfar (only ours can: the test made it)."""
        pid = self.pid()
        if pid is not None:
            process.terminate([pid])
        left = [int(p) for p in sh("ip", "netns", "pids", FAR, check=False).stdout.split()]
        if left:
            process.terminate(left)


def udp_no_ports() -> int:
    """UDP datagrams this host's stack took for itself and found no socket for: a tunnel packet
    it did not leave to Open vSwitch would count (not ICMP's unreachables: on this shared
    machine other tests' probes count there)."""
    names, values = (ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
                     if ln.startswith("Udp:"))
    return int(values[names.index("NoPorts")])


def reach(far: StandIn) -> hosts.Reach:
    return hosts.Reach(identity=far.key, known_hosts=far.known_hosts, timeout=120)


def far_run(lab: model.Lab, far: StandIn, command: str) -> str:
    with hosts.connect(lab, "far", reach(far)) as c:
        return c.run(command, hide=True, in_stream=False).stdout  # not the test runner's stdin


@pytest.fixture(scope="module")
def split():
    if state.RUN.exists() and any(state.RUN.iterdir()) and not os.environ.get("CI"):
        pytest.skip(f"a Vagrant lab's host side is up ({state.RUN}): not beside it")
    assert mh_footprint() == {"netns": [], "links": []}, f"left by someone: {mh_footprint()}"
    before = _host_state()
    tmp = Path(tempfile.mkdtemp(prefix="mh-"))
    lab = split_lab(tmp)
    far = StandIn(tmp)
    up = False
    try:
        sh("ip", "netns", "add", FAR)
        sh("ip", "link", "add", "mhfab0", "type", "veth", "peer", "mhfab1", "netns", FAR)
        for ns, end in ((None, "mhfab0"), (FAR, "mhfab1")):
            ip = ("ip", *(("-n", ns) if ns else ()))
            sh(*ip, "link", "set", end, "mtu", str(NEED), "addrgenmode", "none", "up")
        far.start()
        far_before = sh("ip", "-n", FAR, "-o", "link").stdout
        no_ports = udp_no_ports()
        up = True
        hosts.up(lab, print, "qemu", "simulated", reach(far))
        yield lab, far
        removed = hosts.down(lab, print, reach(far))
        up = False
        print("\n".join(removed))
        assert {"tunnel port vxh-far", "OVS bridge mhdsw-ul", "far: tunnel port vxh-here",
                "far: OVS bridge mhdsw-ul"} <= set(removed)
        left = far_run(lab, far, "ls -A /run/vxlab-host /var/lib/vxlab-host 2>&1 || true")
        assert left.count("No such") == 2, left  # far's records gone with what they named
        assert sh("ip", "-n", FAR, "-o", "link").stdout == far_before  # far as it was
        assert udp_no_ports() == no_ports  # the host's stack took no tunnel packet
    finally:
        if up:
            try:
                hosts.down(lab, print, reach(far))
            except Exception as e:  # still stop and remove what the test made
                print(f"teardown: host.down: {e}")
        for ns in CLIENTS:
            sh("ip", "netns", "del", ns, check=False)
        far.stop()
        sh("ip", "netns", "del", FAR, check=False)
        sh("ip", "link", "del", "mhfab0", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    assert until(lambda: mh_footprint() == {"netns": [], "links": []}, 10), mh_footprint()
    assert _host_state() == before


def test_each_host_has_its_dsw_host_with_a_trunk_to_the_other(split):
    lab, far = split
    here = Host(lab)
    assert here.ovs.vsctl("get", "port", "vxh-far", "trunks").out.strip() == "[214, 220, 221]"
    assert here.ovs.vsctl("get", "interface", "vxh-far", "options:remote_ip").out.strip() == '"10.255.0.2"'
    assert "vxh-here" in far_run(lab, far, "ovs-vsctl list-ports mhdsw").split()
    assert far_run(lab, far, "ovs-vsctl get port vxh-here trunks").strip() == "[214, 220, 221]"
    assert "mhfab1" in far_run(lab, far, "ovs-vsctl list-ports mhdsw-ul").split()
    # each NIC sealed off its host's stack: only Open vSwitch speaks between the hosts
    assert "chain in_mhfab0" in sh("nft", "list", "table", "netdev", "vxlab_host_mhlab").stdout
    assert "chain in_mhfab1" in far_run(lab, far, "nft list table netdev vxlab_host_mhlab")


def test_a_frame_crosses_from_here_to_far_on_its_vlan(split):
    lab, far = split
    here = Host(lab)
    for ns, (addr, host_ns) in CLIENTS.items():
        port = ns.replace("mhc-", "mhp")
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", port,
           *(("netns", host_ns) if host_ns else ()))
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "addrgenmode", "none", "up")
        sh("ip", *(("-n", host_ns) if host_ns else ()), "link", "set", port, "addrgenmode", "none", "up")
        if host_ns is None:
            here.ovs.add_access_port(port, 220)
        else:
            far_run(lab, far, f"ovs-vsctl add-port mhdsw {port} tag=220")

    def crosses() -> bool:
        return sh("ip", "netns", "exec", "mhc-h220", "ping", "-n", "-c", "1", "-W", "1", "10.0.0.2",
                  check=False).returncode == 0

    assert until(crosses, 20, pause=0.2), "no frame across the stitch between here and far"
    p = sh("ip", "netns", "exec", "mhc-h220", "ping", "-n", "-c", "20", "-i", "0.05", "10.0.0.2")
    t = [float(x) for x in re.findall(r"time=([\d.]+) ms", p.stdout)]
    print(f"\nRTT here -> far: {len(t)} pings, min {min(t):.3f} median {statistics.median(t):.3f} "
          f"max {max(t):.3f} ms")
    here.ovs.vsctl("del-port", "mhdsw", "mhph220")  # the test's, not the lab's: gone before host.down
    far_run(lab, far, "ovs-vsctl del-port mhdsw mhpf220")
    for ns in CLIENTS:
        sh("ip", "netns", "del", ns)  # and their veths with them
