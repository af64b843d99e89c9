"""LXD containers inside a network namespace, driven through pylxd.

One LXD daemon runs per tenant namespace (its own LXD_DIR, storage pool on a tmpfs), so its
containers' NICs land on that namespace's bridge and nothing touches the root namespace.
The lab's container image is built once with mmdebstrap from the Debian mirror and cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pylxd
import pylxd.exceptions
import requests

from lab.debian import RELEASE, SOURCES_LIST

# ---------------------------------------------------------------------------------------------
# Image

IMAGE_PACKAGES = (
    "systemd-sysv",
    "dbus",  # hostnamectl, systemctl's bus: a systemd container without it is half-usable
    "ifupdown",
    "isc-dhcp-server",
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "ndisc6",  # rdisc6: SLAAC checks
    "ethtool",  # `ethtool -K eth0 tx off` behind an OVS userspace datapath
    "curl",
    "apt",
    "ca-certificates",
    "tcpdump",
    "bind9-dnsutils",
    "bind9-host",
    "procps",
    "netbase",
    "resolvconf",  # ifupdown's dns-nameservers (the DHCP containers' static config) needs it
)
LAB_SOURCES_LIST = SOURCES_LIST

# mmdebstrap customize hooks ("$1" is the rootfs). Part of the recipe hash.
_CUSTOMIZE_HOOKS = (
    # The lab serves its own tiny repository under the Debian name (no key, no Internet).
    f'printf %s {shlex.quote(LAB_SOURCES_LIST)} > "$1/etc/apt/sources.list"',
    'rm -f "$1"/etc/apt/sources.list.d/*',
    # eth0 stays unconfigured: the lab writes /etc/network/interfaces per container.
    'printf "source /etc/network/interfaces.d/*\\n\\nauto lo\\niface lo inet loopback\\n"'
    ' > "$1/etc/network/interfaces"',
    # mmdebstrap leaves the host's resolv.conf: make it resolvconf's (filled from the lab's
    # dns-nameservers or DHCP); replaced, never written through (a link could lead out).
    'rm -f "$1/etc/resolv.conf" && ln -s ../run/resolvconf/resolv.conf "$1/etc/resolv.conf"',
    # No hostname baked in: LXD's templates and lxc.uts.name give each container its name.
    'rm -f "$1/etc/hostname"',
    # dhcpd has no config until the lab writes one; enabled, it fails every boot ("degraded").
    # (bookworm's dhcpd is a SysV script; `systemctl enable --now` still works on it.)
    'chroot "$1" update-rc.d isc-dhcp-server disable',
    # Fails in an unprivileged container and marks the system degraded.
    'ln -sf /dev/null "$1/etc/systemd/system/systemd-journald-audit.socket"',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/*'
    ' "$1"/usr/share/man/* "$1"/usr/share/locale/*',
)
_METADATA_YAML = f"""\
architecture: x86_64
creation_date: {{creation_date}}
properties:
  description: vxlab Debian {RELEASE} amd64 container image
  os: debian
  release: {RELEASE}
  architecture: amd64
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
"""
_TEMPLATES = {
    "hostname.tpl": "{{ container.name }}\n",
    "hosts.tpl": "127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n"
    "::1 localhost ip6-localhost ip6-loopback\n",
}


def _host_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The first Debian mirror of the host's deb822 list (the only reachable one here)."""
    with contextlib.suppress(OSError):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if re.match(r"^\w+:", line))
            if RELEASE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    return "http://deb.debian.org/debian"


def _recipe_hash() -> str:
    recipe = {
        "release": RELEASE,
        "packages": IMAGE_PACKAGES,
        "hooks": _CUSTOMIZE_HOOKS,
        "metadata": _METADATA_YAML,
        "templates": _TEMPLATES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_image(
    cache_dir: Path = Path("/var/cache/vxlab/images"),
    mirror: str | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Build (once) the lab's container image; return the path of the cached tarball.

    An LXD unified tarball (metadata.yaml, templates/, rootfs/), uncompressed because LXD's
    dir driver unpacks the image for every container and xz costs ~1.6 s each. The file name
    carries the recipe hash, so a changed recipe builds a new image; written to a temp file
    and renamed, so an interrupted build leaves nothing half-made.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    image = cache_dir / f"vxlab-{RELEASE}-{_recipe_hash()}.tar"
    if image.exists():
        return image
    # Two builders at once would waste minutes: the second waits, then finds the image.
    with open(cache_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image.exists():
            return image
        for stale in cache_dir.glob(".build-*"):  # of a build killed mid-way
            _remove_tree(stale)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_dir))
        try:
            _build(staging, image, mirror or _host_mirror(), progress)
        finally:
            _remove_tree(staging)
        for stale in cache_dir.glob(f"vxlab-{RELEASE}-*.tar"):  # older recipes: 220 MB each
            if stale != image:
                stale.unlink()
    return image


def _build(staging: Path, image: Path, mirror: str, progress: Callable[[str], None]) -> None:
    progress(f"building {image.name} with mmdebstrap from {mirror}")
    hooks = [f"--customize-hook={hook}" for hook in _CUSTOMIZE_HOOKS]
    _run_to_end(
        ["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet", f"--include={','.join(IMAGE_PACKAGES)}"]
        + [*hooks, RELEASE, str(staging / "rootfs"), f"deb {mirror} {RELEASE} main"]
    )
    # LXD rejects a creation_date of 0 ("Missing creation date").
    (staging / "metadata.yaml").write_text(_METADATA_YAML.format(creation_date=int(time.time())))
    (staging / "templates").mkdir()
    for name, text in _TEMPLATES.items():
        (staging / "templates" / name).write_text(text)
    progress(f"packing {image.name}")
    partial = staging / "image.tar"  # same filesystem as the cache: the rename is atomic
    members = ["metadata.yaml", "templates", "rootfs"]
    _run_to_end(
        ["tar", "-C", str(staging), "-cf", str(partial), "--numeric-owner", "--xattrs", "--xattrs-include=*"]
        + members
    )
    partial.rename(image)


def _run_to_end(argv: list[str]) -> None:
    """subprocess.run(check=True), except on Ctrl-C or another error: subprocess.run would
    SIGKILL the child after 0.25 s, leaving mmdebstrap's bind mounts of /dev and /sys in the
    rootfs; SIGTERM lets it undo them first."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        returncode = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if returncode:
        raise subprocess.CalledProcessError(returncode, argv)


def _sha256(path: Path) -> str:
    """LXD's fingerprint of a unified tarball is the sha256 of the file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Host helpers: /proc, mounts, cgroups


def _unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _mounts() -> list[tuple[str, str, str, str]]:
    """(source, target, fstype, options) of this mount namespace, in mount order."""
    with open("/proc/self/mounts") as f:
        return [
            (_unescape(src), _unescape(tgt), fstype, opts)
            for src, tgt, fstype, opts, *_ in (line.split() for line in f)
        ]


def _umount(target: str) -> None:
    """Unmount, or detach it if something still holds it (it goes when released)."""
    if subprocess.run(["umount", target], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", target], check=True)


def _remove_tree(path: Path) -> None:
    """rm -rf that never leaves path's filesystem: first unmount what is mounted below it (a
    killed mmdebstrap leaves rbind mounts of /sys and /dev in its rootfs; walking into those
    would delete the host's files), then `rm --one-file-system` as a second guard."""
    for _, target, _, _ in reversed(_mounts()):  # deepest (latest) first
        if _under(target, path):
            _umount(target)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _under(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(f"{root}/")


def _proc_read(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:  # gone, or a kernel thread
        return b""


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (dead, just not reaped by its parent)."""
    stat = _proc_read(pid, "stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            yield int(entry)


def processes_using(lxd_dir: Path) -> list[int]:
    """Live processes of one daemon: lxd and what it spawned (`[lxc monitor] ... NAME`,
    fork helpers) all carry `LXD_DIR=lxd_dir` in their environment; nothing else does."""
    env = f"LXD_DIR={lxd_dir}".encode()
    return [pid for pid in _pids() if env in _proc_read(pid, "environ").split(b"\0") and _alive(pid)]


def _lxd_processes() -> list[int]:
    """Every live lxd on the machine (daemons and their `[lxc monitor]` children)."""
    return [
        pid
        for pid in _pids()
        if (_proc_read(pid, "comm") == b"lxd\n" or _proc_read(pid, "cmdline").startswith(b"[lxc monitor]"))
        and _alive(pid)
    ]


def container_cgroups(names: Sequence[str]) -> list[Path]:
    """Cgroup dirs liblxc made for these containers (lxc.payload.NAME, lxc.monitor.NAME)."""
    return _cgroup_dirs(*(f"lxc.{kind}.{n}" for n in names for kind in ("payload", "monitor")))


def _cgroup_dirs(*wanted: str) -> list[Path]:
    """Dirs with these names in every cgroup hierarchy, searched a few levels deep since LXD
    nests its cgroups under its own."""
    names, found = set(wanted), []
    for _, target, fstype, _ in _mounts():
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root_depth = target.rstrip("/").count("/")
        for dirpath, dirnames, _ in os.walk(target):
            if dirpath.count("/") - root_depth >= 4:
                dirnames.clear()
            for d in dirnames:
                if d in names:
                    found.append(Path(dirpath, d))
    return found


def _remove_cgroup(path: Path) -> None:
    """Cgroup dirs go with rmdir, children first (their files cannot be unlinked)."""
    for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)


class _UnixHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP on LXD's unix socket: a cheap readiness probe without pylxd's setup."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


# ---------------------------------------------------------------------------------------------
# Daemon


class LxdDaemon:
    """One `lxd` inside network namespace `netns`; LXD_DIR = lxd_dir, a tmpfs of its own."""

    POOL = "default"

    def __init__(self, netns: str, lxd_dir: Path, storage_size: str = "2G") -> None:
        """storage_size caps the tmpfs holding all of LXD_DIR: the image (~220 MB) plus
        ~220 MB per container (the dir driver unpacks the whole image for each)."""
        self.netns = netns
        self.lxd_dir = Path(lxd_dir).absolute()
        self.storage_size = storage_size
        self.socket = self.lxd_dir / "unix.socket"
        self.pid_file = self.lxd_dir / "vxlab-lxd.pid"
        self.log_file = self.lxd_dir / "lxd.log"
        self._proc: subprocess.Popen[bytes] | None = None  # kept to reap it when we stop it
        self._client: pylxd.Client | None = None
        self.execs = threading.BoundedSemaphore(16)

    # -- lifecycle ---------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The daemon's pid, if the pid file names a live lxd with our LXD_DIR."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        cmdline = _proc_read(pid, "cmdline").split(b"\0")
        environ = _proc_read(pid, "environ").split(b"\0")
        is_ours = Path(cmdline[0].decode()).name == "lxd" and f"LXD_DIR={self.lxd_dir}".encode() in environ
        return pid if is_ours and _alive(pid) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 30) -> None:
        """Start lxd in the namespace and wait until its API is ready (no-op if running)."""
        if (pid := self.pid()) is not None:
            # A daemon left from a run whose namespace was since deleted and re-made.
            if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat(f"/run/netns/{self.netns}").st_ino:
                raise RuntimeError(f"lxd {pid} of {self.lxd_dir} runs in another netns: stop() it")
            return
        # All of LXD_DIR goes on a tmpfs: a dir pool on ext4 costs 5-7 s per launch (unpacking),
        # on tmpfs ~1 s. LXD refuses a pool source inside LXD_DIR and an existing
        # storage-pools/NAME, so the pool dir cannot be a mount of its own: the tmpfs is LXD_DIR.
        # Mounted before lxd starts: / is a private mount here, so a later mount would not
        # reach the daemon's mount namespace.
        self.lxd_dir.mkdir(parents=True, exist_ok=True)
        if not any(tgt == str(self.lxd_dir) for _, tgt, _, _ in _mounts()):
            subprocess.run(
                [
                    "mount",
                    "-t",
                    "tmpfs",
                    "-o",
                    f"size={self.storage_size},mode=711",
                    f"hlxd-{self.netns}",
                    str(self.lxd_dir),
                ],
                check=True,
            )
        # `ip netns exec` remounts /sys, which empties /sys/fs/cgroup: without cgroups systemd
        # containers die. Replay the host's cgroup mounts in that mount namespace, then exec.
        replay = [
            f"mkdir -p {shlex.quote(tgt)} && mount -t {fstype} -o {shlex.quote(opts)}"
            f" {shlex.quote(src)} {shlex.quote(tgt)}"
            for src, tgt, fstype, opts in _mounts()
            if (fstype == "tmpfs" and tgt == "/sys/fs/cgroup") or fstype in ("cgroup", "cgroup2")
        ]
        lxd = f"exec lxd --group root --logfile {shlex.quote(str(self.log_file))}"
        script = "\n".join(["set -e", *replay, lxd])
        env = {**os.environ, "LXD_DIR": str(self.lxd_dir)}
        with open(self.lxd_dir / "lxd.stdout", "ab") as out:
            # `ip netns exec` and `sh` both exec: the pid we get is lxd's.
            self._proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "sh", "-c", script],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,  # not in our terminal's process group (Ctrl-C)
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"lxd in {self.netns} exited: {self._log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = _UnixHTTPConnection(self.socket, timeout=2)
                conn.request("GET", "/internal/ready")
                if conn.getresponse().status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"lxd in {self.netns} not ready: {self._log_tail()}")
            time.sleep(0.1)

    def _log_tail(self) -> str:
        texts = []
        for path in (self.lxd_dir / "lxd.stdout", self.log_file):
            with contextlib.suppress(OSError):
                texts.append(path.read_text()[-2000:])
        return "\n".join(texts)

    def client(self) -> pylxd.Client:
        if self._client is None:
            self._client = pylxd.Client(endpoint=str(self.socket))
        return self._client

    def init(self, bridge: str, mtu: int, image: Path, alias: str = "vxlab") -> None:
        """Pool, default profile (eth0 on `bridge`) and image alias; each step idempotent."""
        client = self.client()
        if not client.storage_pools.exists(self.POOL):
            client.storage_pools.create({"name": self.POOL, "driver": "dir", "config": {}})
        profile = client.profiles.get("default")
        devices = {
            "root": {"type": "disk", "path": "/", "pool": self.POOL},
            "eth0": {"type": "nic", "name": "eth0", "nictype": "bridged", "parent": bridge, "mtu": str(mtu)},
        }
        if profile.devices != devices:
            profile.devices = devices
            profile.save(wait=True)
        fingerprint = _sha256(image)
        if not client.images.exists(fingerprint):
            with image.open("rb") as f:  # a file object: requests streams it, no 300 MB copy
                client.images.create(f, wait=True)
        with contextlib.suppress(pylxd.exceptions.NotFound):
            if client.images.get_by_alias(alias).fingerprint == fingerprint:
                return
            client.api.images.aliases[alias].delete()  # points to an older build
        client.images.get(fingerprint).add_alias(alias, "vxlab lab image")

    def stop(self, timeout: float = 20) -> None:
        """Remove every trace of this daemon: containers, processes, mounts, dir, cgroups.

        Safe to call twice, or after a failed start: each step looks at what is there.
        """
        names = self._container_names()
        if self.running():
            with contextlib.suppress(Exception):  # a sick daemon: the kills below still work
                self._delete_all_instances()
        self._client = None
        pid = self.pid()
        if pid is not None:
            # No SIGPWR: SIGTERM leaves instances alone, and there should be none left.
            self._kill([pid], timeout)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)  # reap our child, else a zombie lingers in /proc
            self._proc = None
        # Leftovers of an interrupted run: container monitors, payload processes, helpers.
        leftovers = processes_using(self.lxd_dir)
        for cgroup in container_cgroups(names):
            with contextlib.suppress(OSError):
                leftovers += [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
        self._kill(sorted(set(leftovers) - {os.getpid()}), timeout, sig=signal.SIGKILL)
        _remove_tree(self.lxd_dir)  # the tmpfs, and any mount left below it
        for cgroup in container_cgroups(names):
            _remove_cgroup(cgroup)
        if not _lxd_processes():
            # liblxc leaves an empty lxc.pivot in every hierarchy after a container stop. It is
            # shared by all daemons on the machine: remove it only when no lxd is left to use it.
            for cgroup in _cgroup_dirs("lxc.pivot"):
                with contextlib.suppress(OSError):
                    cgroup.rmdir()

    def _delete_all_instances(self) -> None:
        """Force-stop, then delete, all instances at once: a stop takes ~0.8 s each."""
        client = self.client()
        api = client.api.instances

        def wait_all(responses: list[requests.Response]) -> None:
            for response in responses:  # all operations run: now wait for each
                client.operations.wait_for_operation(response.json()["operation"])

        instances = client.instances.all()
        stop = {"action": "stop", "force": True}
        wait_all([api[i.name].state.put(json=stop) for i in instances if i.status != "Stopped"])
        wait_all([api[i.name].delete() for i in instances])

    def _container_names(self) -> list[str]:
        """Names from the API if it answers, and from LXD_DIR (which survives a dead daemon)."""
        names = set()
        with contextlib.suppress(OSError):
            names |= {p.name for p in (self.lxd_dir / "containers").iterdir()}
        if self.running():
            with contextlib.suppress(Exception):
                names |= {i.name for i in self.client().instances.all()}
        return sorted(names)

    @staticmethod
    def _kill(pids: Sequence[int], timeout: float, sig: int = signal.SIGTERM) -> None:
        """Signal by pid, wait, then SIGKILL what is still there."""
        for s in (sig, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, s)
            deadline = time.monotonic() + timeout
            while any(_alive(p) for p in pids) and time.monotonic() < deadline:
                time.sleep(0.05)
            if not any(_alive(p) for p in pids):
                return


# ---------------------------------------------------------------------------------------------
# Container


TRANSIENT = ("deadline exceeded", "database is locked")  # LXD errors worth a retry


def _again_if_transient(call: Callable, tries: int = 4):
    """call(), again a bit later while an overloaded LXD refuses for a moment (its database);
    only for calls that are safe to repeat."""
    for attempt in range(tries):
        try:
            return call()
        except pylxd.exceptions.LXDAPIException as e:
            if attempt == tries - 1 or not any(m in str(e) for m in TRANSIENT):
                raise
            time.sleep(1 + 2 * attempt)
    raise AssertionError("unreachable")


def _await(operation, timeout: float, tries: int = 3) -> dict:
    """An operation's outcome once it ends. Asking again is safe (a wait reads, it runs
    nothing), and needed: an LXD in a busy emulated VM was once more than 90 s late with the
    outcome of a command that its own `timeout` had ended long before."""
    for attempt in range(tries):
        try:
            reply = operation.wait.get(params={"timeout": round(timeout + 15)}, timeout=timeout + 30)
            return reply.json()["metadata"]
        except requests.exceptions.ReadTimeout:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


class LxdApi(Protocol):
    """Any LXD a container can live in: a daemon of ours on a unix socket (LxdDaemon), or one
    in a VM over HTTPS (lab/vagrant/lxd.py). Containers only need its pylxd client."""

    # How many commands it runs at once: beyond a few, an LXD in an emulated VM times out its
    # own database transactions ("context deadline exceeded").
    execs: threading.BoundedSemaphore

    def client(self) -> pylxd.Client: ...


class LxdContainer:
    """A systemd container of one daemon. Names must be unique across daemons (cgroups)."""

    def __init__(self, daemon: LxdApi, name: str) -> None:
        self.daemon = daemon
        self.name = name

    def _instance(self) -> pylxd.models.Instance:
        return self.daemon.client().instances.get(self.name)

    def launch(self, image_alias: str = "vxlab", hwaddr: str | None = None, mtu: int | None = None) -> None:
        """Create (if missing) and start (if not running); the hostname is the name.

        hwaddr and mtu override the profile's eth0 for this container; they apply at creation.
        Idempotent, so an overloaded LXD's transient refusal is met by trying again.
        """
        _again_if_transient(lambda: self._launch(image_alias, hwaddr, mtu))

    def _launch(self, image_alias: str, hwaddr: str | None, mtu: int | None) -> None:
        client = self.daemon.client()
        if not client.instances.exists(self.name):
            devices = {}
            if hwaddr or mtu:  # override the profile's eth0 with the same NIC plus these keys
                eth0 = dict(client.profiles.get("default").devices["eth0"])
                eth0.update({"hwaddr": hwaddr} if hwaddr else {})
                eth0.update({"mtu": str(mtu)} if mtu else {})
                devices["eth0"] = eth0
            client.instances.create(
                {
                    "name": self.name,
                    "type": "container",
                    "devices": devices,
                    "source": {"type": "image", "alias": image_alias},
                },
                wait=True,
            )
        instance = self._instance()
        if instance.status != "Running":
            instance.start(wait=True)

    def wait_booted(self, timeout: float = 60) -> str:
        """Wait for systemd to finish booting; returns its state ("running", "degraded", ...).

        Right after start systemctl cannot reach systemd yet ("Failed to connect to bus",
        empty output): retry until it answers, then `--wait` covers the rest of the boot.
        """
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            left = max(1, round(deadline - time.monotonic()))
            state = self.run(["systemctl", "is-system-running", "--wait"], timeout=left)[1].strip()
            if state and state not in ("initializing", "starting"):
                break
            time.sleep(0.1)
        return state

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float = 60
    ) -> tuple[int, str, str]:
        """Run argv in the container; (exit code, stdout, stderr). Exit 124 means timeout.

        LXD records the output to log files instead of pylxd's websockets: pylxd's ws4py
        thread races its own teardown ("I/O operation on closed epoll object"). The price:
        no stdin stream, so `input` goes through a file, unlinked before argv starts.
        Coreutils' `timeout` bounds the run, and each API request is bounded too.
        """
        command = ["timeout", "--kill-after=5", str(timeout), *argv]
        if input is not None:
            stdin = f"/run/vxlab-stdin-{uuid.uuid4().hex}"
            self.put(stdin, input, mode=0o600)
            command = ["sh", "-c", 'exec <"$0" && rm -f "$0" && exec "$@"', stdin, *command]
        with self.daemon.execs:
            return self._exec(command, timeout)

    def _exec(self, command: list[str], timeout: float) -> tuple[int, str, str]:
        client = self.daemon.client()
        api = client.api.instances[self.name]
        request = {"command": command, "environment": {}, "interactive": False,
                   "wait-for-websocket": False, "record-output": True}
        # Refused before anything ran: safe to ask again.
        response = _again_if_transient(lambda: api.exec.post(json=request, timeout=60))
        # Every request bounded by the command's own timeout: a busy LXD (in an emulated VM)
        # once left a reply hanging for many minutes.
        op_id = response.json()["operation"].rsplit("/", 1)[1]
        operation = _await(client.api.operations[op_id], timeout)
        if operation.get("status") != "Success":
            raise RuntimeError(f"{self.name}: LXD could not run {command[3:]}: "
                               f"{operation.get('err') or operation.get('status')}")
        result = operation["metadata"]
        outputs = []
        for fd in ("1", "2"):
            log = api.logs[result["output"][fd].rsplit("/", 1)[1]]
            # The raw body: pylxd's get() takes any JSON body for an API reply, and a command's
            # output can be JSON (`ip -j ...`).
            body = log.session.get(log._api_endpoint, timeout=timeout + 10)
            body.raise_for_status()
            outputs.append(body.content.decode(errors="replace"))
            # Else they pile up in LXD_DIR/logs. Best effort, bounded: a busy LXD in an
            # emulated VM once left this reply hanging for minutes.
            with contextlib.suppress(requests.RequestException):
                log.session.delete(log._api_endpoint, timeout=30)
        return result["return"], outputs[0], outputs[1]

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._instance().files.put(path, data, mode=mode)

    def get(self, path: str) -> bytes:
        return self._instance().files.get(path)

    def state(self) -> str:
        """LXD's status ("Running", "Stopped", ...), or "Absent"."""
        try:
            return self._instance().status
        except pylxd.exceptions.NotFound:
            return "Absent"

    def stop(self, force: bool = True) -> None:
        """Forced by default: the lab throws containers away, no clean shutdown needed."""
        with contextlib.suppress(pylxd.exceptions.NotFound):
            instance = self._instance()
            if instance.status != "Stopped":
                instance.stop(force=force, wait=True)

    def delete(self) -> None:
        self.stop()
        with contextlib.suppress(pylxd.exceptions.NotFound):
            self._instance().delete(wait=True)
