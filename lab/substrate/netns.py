"""Substrate "netns": the lab on one Linux host, each machine a network namespace.

Every namespace is named `<lab>-<node>`; the seed's Host switch (`<lab>-dsw-host`, one
bridge per VLAN: this kernel has no 802.1q) and the lab's Internet (`<lab>-internet`) are
namespaces too. Nothing links to the machine's own namespace, and no sysctl of it changes.
A node's files live under its root, `/run/vxlab/<lab>/<node>`: namespaces share /etc, /run
and /usr/local/bin with the host, so every path a node uses is its own.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from lab.deployment import Deployment
from lab.host import process
from lab.host.lock import exclusive
from lab.host.run import sh
from lab.host.wait import until
from lab.model import Lab
from lab.substrate.base import CommandError, Result, Service
from lab.topology import INTERNET, SWITCH, Topology

STATE = Path("/run/vxlab")
ETC_NETNS = Path("/etc/netns")
# Files that tools read at a fixed path: `ip netns exec` shows /etc/netns/<ns>/<entry> over
# /etc/<entry>, so these go there too (iproute2 must be a whole copy: it replaces the dir).
ETC_OVERLAY = ("/etc/iproute2/", "/etc/resolv.conf")


def namespaces() -> set[str]:
    return {line.split()[0] for line in sh(["ip", "netns", "list"]).out.splitlines() if line}


@dataclass
class NetnsNode:
    """A lab machine as a namespace; daemons are supervised by pid files under its root."""

    name: str
    netns: str
    root: str
    kind: ClassVar[str] = "namespace"
    _exec: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self._exec = ("ip", "netns", "exec", self.netns)

    # -- commands and files -------------------------------------------------------------

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60) -> Result:
        return sh([*self._exec, *argv], input=input, check=check, timeout=timeout, node=self.name)

    def interactive(self, argv: Sequence[str]) -> list[str]:
        return [*self._exec, *argv]

    def path(self, p: str) -> str:
        return self.root + p

    def local(self, path: str) -> Path:
        """Where a path of the node lives on the host."""
        return Path(self.root + path)

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> bool:
        data = data.encode() if isinstance(data, str) else data
        changed = _write(self.local(path), data, mode)
        if path.startswith(ETC_OVERLAY):
            _ensure_etc_netns()
            overlay = ETC_NETNS / self.netns / path.removeprefix("/etc/")
            if path.startswith("/etc/iproute2/") and not overlay.parent.exists():
                shutil.copytree("/etc/iproute2", overlay.parent)
            _write(overlay, data, mode)
        return changed

    def read(self, path: str) -> str | None:
        try:
            return self.local(path).read_text()
        except FileNotFoundError:
            return None

    # -- services ----------------------------------------------------------------------

    def _pidfile(self, service: Service) -> Path:
        return self.local(f"/run/vxlab/{service.name}.pid")

    def log_file(self, service: Service) -> Path:
        return self.local(f"/var/log/{service.name}.log")

    def log(self, service: Service, lines: int = 50) -> str:
        f = self.log_file(service)
        text = f.read_text(errors="replace") if f.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pid(self, service: Service) -> int | None:
        try:
            pid = int(self._pidfile(service).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if process.runs(pid, service.argv[0], self.netns) else None

    def running(self, service: Service) -> bool:
        return self.pid(service) is not None

    def start(self, service: Service, restart: bool = False) -> None:
        if self.running(service):
            if not restart:
                return
            self.stop(service)
        self._reaped(service)
        self._after_exit_done(service)
        for f in service.pidfiles:
            self._leftover(Path(f), service)
        log = self.log_file(service)
        log.parent.mkdir(parents=True, exist_ok=True)
        pidfile = self._pidfile(service)
        pidfile.unlink(missing_ok=True)
        argv = list(service.argv)
        if service.after_exit:
            # A shell that is the daemon's parent, so that it sees the daemon end however it
            # ends (killed too), at once: it reaps it (PID 1 here may reap late, and a zombie
            # still answers kill -0). It writes the daemon's pid; its own is the after-exit's.
            argv = ["sh", "-c", f'"$@" & echo $! > {shlex.quote(str(pidfile))}; wait $!; rc=$?; '
                    f'{shlex.join(service.after_exit)}; exit $rc', "supervise", *argv]
        with open(log, "ab") as out:
            # `ip netns exec` execs the daemon (or its shell) in place: the pid we get is its own.
            p = subprocess.Popen([*self._exec, *argv], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                 env={**os.environ, **dict(service.env)} if service.env else None)
        if service.after_exit:
            _write(self._after_exit_pidfile(service), f"{p.pid}\n".encode(), 0o644)
            until(lambda: process.pid_in(pidfile) is not None or p.poll() is not None, 5, 0.01)
        else:
            _write(pidfile, f"{p.pid}\n".encode(), 0o644)
        time.sleep(0.05)
        if p.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise CommandError(self.name, Result(service.argv, p.returncode, "", "\n".join(tail)))

    def units_changed(self) -> None:
        pass  # no init in a namespace: the substrate runs each service's argv itself

    def stop(self, service: Service) -> None:
        pid = self.pid(service)
        if pid:
            process.terminate([pid])
            self._reaped(service)
        self._pidfile(service).unlink(missing_ok=True)

    def _after_exit_pidfile(self, service: Service) -> Path:
        return self.local(f"/run/vxlab/{service.name}.after-exit.pid")

    def _after_exit_done(self, service: Service, timeout: float = 5) -> None:
        """Wait until the last instance's supervising shell has run its after-exit command and
        ended: run late, that command would undo what the new instance sets up (keepalived's
        VIPs)."""
        pid = process.pid_in(self._after_exit_pidfile(service))
        if pid is None:
            return
        def done() -> bool:
            with contextlib.suppress(ChildProcessError):  # ours if started by this process
                os.waitpid(pid, os.WNOHANG)
            return not process.runs(pid, "sh", self.netns)

        if not until(done, timeout):
            process.terminate([pid])
        self._after_exit_pidfile(service).unlink(missing_ok=True)

    def _leftover(self, pidfile: Path, service: Service) -> None:
        """Clear what a dead instance left in one of the daemon's own pid files: a child that
        outlived it (ours: this program, in this namespace) is stopped by its pid; a pid file
        naming a gone or zombie process is removed. Either would make the daemon refuse to
        start again ("daemon is already running")."""
        try:
            pid = int(pidfile.read_text())
        except (FileNotFoundError, ValueError):
            return
        if process.runs(pid, service.argv[0], self.netns):
            process.terminate([pid])
        if not process.alive(pid):
            pidfile.unlink(missing_ok=True)

    def _reaped(self, service: Service, timeout: float = 5) -> None:
        """Wait until the daemon's last process is gone for good. One whose starter has exited
        is reaped by PID 1, sometimes late; until then its zombie looks alive to the daemon's
        own pid-file check (dhcpd: "There's already a DHCP server running"; keepalived too)."""
        try:
            pid = int(self._pidfile(service).read_text())
        except (FileNotFoundError, ValueError):
            return
        def gone() -> bool:
            with contextlib.suppress(ChildProcessError):  # our own child: reap it ourselves
                os.waitpid(pid, os.WNOHANG)
            return not process.zombie(pid, service.argv[0])

        until(gone, timeout)


def _write(path: Path, data: bytes, mode: int) -> bool:
    """Write a file if its content or mode differs; atomic (temp file + rename)."""
    try:
        if path.read_bytes() == data and path.stat().st_mode & 0o7777 == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


IFUPDOWN_HOOKS = ("if-pre-up.d", "if-up.d", "if-down.d", "if-post-down.d")


def _own_ifupdown_hooks(ns: str) -> None:
    """Empty ifupdown hook folders for the namespace (`ip netns exec` shows them as
    /etc/network): the lab's interfaces files say every command they need, and the host's
    hooks (ethtool, resolved, openvswitch, ...) are the host's business. They cost ~40% of
    the router's ifup."""
    _ensure_etc_netns()
    for d in IFUPDOWN_HOOKS:
        (ETC_NETNS / ns / "network" / d).mkdir(parents=True, exist_ok=True)


def _ensure_etc_netns() -> None:
    """Make /etc/netns if missing, and remember that we did, so teardown removes it again."""
    if not ETC_NETNS.exists():
        ETC_NETNS.mkdir()
        STATE.mkdir(parents=True, exist_ok=True)
        (STATE / "etc-netns.created").touch()


# -- the lab's namespaces and wires --------------------------------------------------------

@dataclass(frozen=True)
class Wire:
    """A veth pair: (namespace, interface name) at each end, on one VLAN of dsw-host."""

    a: tuple[str, str]
    b: tuple[str, str]
    mtu: int
    vlan: int


class NetnsLab:
    """Makes and removes the namespaces and wires of one lab; hands out its nodes."""

    def __init__(self, lab: Lab, deployment: Deployment | None = None):
        self.lab = lab
        self.deployment = deployment or Deployment.of(lab, "netns")
        self.topology = Topology(lab)
        self.state = STATE / lab.name
        self.switch = self.ns(SWITCH)
        self.internet = self.ns(INTERNET)

    def ns(self, node: str) -> str:
        return f"{self.lab.name}-{node}"

    def node(self, name: str) -> NetnsNode:
        if name in (INTERNET, SWITCH):
            return NetnsNode(name, self.ns(name), str(self.state / name))
        n = self.lab.node(name)
        return NetnsNode(name, self.ns(name), self.deployment.root(self.lab, n))

    def vm_namespaces(self) -> list[str]:
        return [self.switch, self.internet] + [self.ns(n.name) for n in self.lab.nodes()
                                                if not n.is_container]

    def light_namespaces(self) -> list[str]:
        return [self.ns(n.name) for n in self.lab.nodes() if n.is_container]

    def wires(self) -> list[Wire]:
        """dsw-host's links as veths: no 802.1q here, so a trunk is one veth per VLAN, its
        machine end the subinterface's name (`enp0s6.220`), and each VLAN a bridge."""
        out = []
        for lk in self.topology.switch_links:
            for vlan in lk.vlans:
                nic, port = (f"{lk.nic}.{vlan}", f"{lk.port}.{vlan}") if lk.trunk else (lk.nic, lk.port)
                out.append(Wire((self.ns(lk.node), nic), (self.switch, port), lk.mtu, vlan))
        return out

    def bridges(self) -> dict[str, list[str]]:
        """dsw-host: VLAN bridge -> its ports."""
        out: dict[str, list[str]] = {}
        for w in self.wires():
            out.setdefault(f"br{w.vlan}", []).append(w.b[1])
        return out

    # -- build and remove ---------------------------------------------------------------

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """One `up` or `down` of a lab at a time."""
        return exclusive(STATE / f"{self.lab.name}.lock", f"`up` or `down` of lab {self.lab.name!r}")

    def create(self, light_containers: bool, made: Callable[[], object] = lambda: None) -> None:
        """Make whatever is missing: namespaces, sysctls, wires, dsw-host's bridges; made() is
        called once the namespaces exist (what needs only them starts meanwhile)."""
        self.state.mkdir(parents=True, exist_ok=True)
        wanted = self.vm_namespaces() + (self.light_namespaces() if light_containers else [])
        existing = namespaces()
        for ns in wanted:
            if ns not in existing:
                sh(["ip", "netns", "add", ns])
                self._record(ns)
            _own_ifupdown_hooks(ns)
            # Per-namespace settings (never the host's): no DAD wait on the lab's links.
            sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        made()
        sw = ["ip", "netns", "exec", self.switch, "sysctl", "-q", "-w"]
        sh([*sw, *(f"net.bridge.bridge-nf-call-{t}=0" for t in ("iptables", "ip6tables", "arptables"))])
        for w in self.wires():
            self._wire(w)
        for br, ports in self.bridges().items():
            if not link_exists(self.switch, br):
                sh(["ip", "-n", self.switch, "link", "add", br, "mtu",
                    str(self.lab.shared_vlan.vxlan.underlay_mtu), "type", "bridge", "stp_state", "0"])
            for port in ports:
                sh(["ip", "-n", self.switch, "link", "set", port, "master", br, "up"])
            sh(["ip", "-n", self.switch, "link", "set", br, "up"])
        for name in [INTERNET, *(n.name for n in self.lab.nodes())]:
            node = self.node(name)
            if node.root:
                _debian_root(Path(node.root))
        # ifupdown brings a trunk's dotted subinterfaces up after their parent: give it one
        # (an empty bridge: there is no dummy or 802.1q here).
        for lk in self.topology.switch_links:
            if lk.trunk and not link_exists(self.ns(lk.node), lk.nic):
                sh(["ip", "-n", self.ns(lk.node), "link", "add", "name", lk.nic, "type", "bridge"])

    def rewire(self, ns: str) -> None:
        """Remake the wires of one namespace that ifdown deleted (its dotted VLAN names)."""
        for w in self.wires():
            if ns in (w.a[0], w.b[0]):
                self._wire(w)
                sh(["ip", "-n", self.switch, "link", "set", w.b[1], "master", f"br{w.vlan}", "up"])

    def _wire(self, w: Wire) -> None:
        """Create a veth pair unless both ends exist; ifdown deletes dotted names, so an
        end may be missing: remove the other and make the pair anew."""
        (ns_a, a), (ns_b, b) = w.a, w.b
        has_a, has_b = link_exists(ns_a, a), link_exists(ns_b, b)
        if has_a and has_b:
            return
        if has_a:
            sh(["ip", "-n", ns_a, "link", "del", "dev", a])
        if has_b:
            sh(["ip", "-n", ns_b, "link", "del", "dev", b])
        # `name` and `dev` before the lab's names: ip reads a bare `d` as its option `dynamic`
        sh(["ip", "-n", ns_a, "link", "add", "name", a, "mtu", str(w.mtu), "type", "veth",
            "peer", "name", b, "mtu", str(w.mtu), "netns", ns_b])
        sh(["ip", "-n", ns_b, "link", "set", "dev", b, "up"])

    def _record(self, ns: str) -> None:
        with open(self.state.parent / f"{self.lab.name}.namespaces", "a") as f:
            f.write(ns + "\n")

    def recorded(self) -> list[str]:
        try:
            return (self.state.parent / f"{self.lab.name}.namespaces").read_text().split()
        except FileNotFoundError:
            return []

    def _remove(self, nss: list[str]) -> list[str]:
        """Namespaces of this lab, and every process in them (the lab's: stopped by pid)."""
        removed = []
        stopped = 0
        for _ in range(5):  # again: a process left by an interrupted `up` may start another meanwhile
            pids = [int(p) for ns in nss for p in sh(["ip", "netns", "pids", ns], check=False).out.split()]
            if not pids:
                break
            process.terminate(pids)
            stopped += len(pids)
        if stopped:
            removed.append(f"{stopped} processes")
        for ns in nss:
            sh(["ip", "netns", "del", ns])
            removed.append(f"namespace {ns}")
            overlay = ETC_NETNS / ns
            if overlay.exists():
                shutil.rmtree(overlay)
        return removed

    def prune(self, light_containers: bool) -> list[str]:
        """Remove the light containers the lab no longer has (taken out of its description):
        their processes, namespace and files; returns their names."""
        wanted = set(self.vm_namespaces() + (self.light_namespaces() if light_containers else []))
        present, recorded = namespaces(), self.recorded()
        stale = [ns for ns in dict.fromkeys(recorded) if ns not in wanted and ns in present]
        if not stale:
            return []
        self._remove(stale)
        names = [ns.removeprefix(f"{self.lab.name}-") for ns in stale]
        for name in names:
            shutil.rmtree(self.state / name, ignore_errors=True)
        kept = "".join(f"{ns}\n" for ns in recorded if ns not in stale)
        (self.state.parent / f"{self.lab.name}.namespaces").write_text(kept)
        return names

    def destroy(self) -> list[str]:
        """Remove everything this lab made on the host; return what was removed."""
        removed = []
        present = namespaces()
        ours = [ns for ns in dict.fromkeys(self.recorded() + self.vm_namespaces()
                                           + self.light_namespaces()) if ns in present]
        removed += self._remove(ours)
        if self.state.exists():
            shutil.rmtree(self.state)
            removed.append(str(self.state))
        (self.state.parent / f"{self.lab.name}.namespaces").unlink(missing_ok=True)
        (STATE / f"{self.lab.name}.lock").unlink(missing_ok=True)
        marker = STATE / "etc-netns.created"
        if marker.exists() and ETC_NETNS.exists() and not any(ETC_NETNS.iterdir()):
            with contextlib.suppress(OSError):  # another lab may be making its namespaces now
                ETC_NETNS.rmdir()
                marker.unlink()
        with contextlib.suppress(OSError):
            STATE.rmdir()  # only if no other lab left anything there
        return removed


def _debian_root(root: Path) -> None:
    """The few directories a node's paths assume, as on Debian (/var/run is /run)."""
    (root / "run").mkdir(parents=True, exist_ok=True)
    (root / "var").mkdir(exist_ok=True)
    if not (root / "var/run").is_symlink():
        (root / "var/run").symlink_to("../run")


def link_exists(ns: str | None, dev: str) -> bool:
    """Whether namespace `ns` (None: this machine's own) has the link `dev`."""
    return sh(["ip", *(("-n", ns) if ns else ()), "link", "show", "dev", dev], check=False).ok
