"""One LXD daemon per tenant network namespace, driven through pylxd.

Each has its own btrfs, on a loop device over a file on disk, whose two subvolumes are its
LXD_DIR (database, logs) and its storage pool, so its containers' NICs land on that namespace's
bridge and nothing touches the root namespace. The image is unpacked once per daemon; each
container is a btrfs snapshot of it, sharing its blocks. stop() removes exactly what the daemon
made: its containers, processes, mounts, dirs, loop device, file and cgroups.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shlex
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pylxd
import pylxd.exceptions
import requests

from lab.containers.image import fingerprint
from lab.host import loops, process
from lab.host.cgroups import cgroup_dirs, cgroup_procs, container_cgroups, remove_cgroup
from lab.host.mounts import mounted, mounts, remove_tree
from lab.host.wait import until

# On disk: the labs' btrfs files, POOLS/<lab>/lxd-<tenant>.btrfs (on a tmpfs they would be memory).
POOLS = Path("/var/lib/vxlab-pools")


def processes_using(lxd_dir: Path) -> list[int]:
    """Live processes of one daemon: lxd and what it spawned (`[lxc monitor] ... NAME`,
    fork helpers) all carry `LXD_DIR=lxd_dir` in their environment; nothing else does."""
    return process.with_env("LXD_DIR", str(lxd_dir))


def _lxd_processes() -> list[int]:
    """Every live lxd on the machine (daemons and their `[lxc monitor]` children)."""
    return process.where(lambda p: p.name() == "lxd" or " ".join(p.cmdline()).startswith("[lxc monitor]"))


class _UnixHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP on LXD's unix socket: a cheap readiness probe without pylxd's setup."""

    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("lxd", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class LxdDaemon:
    """One `lxd` inside network namespace `netns`. LXD_DIR = lxd_dir and its storage pool (mounted
    beside it) are two subvolumes of one btrfs on a loop device over `pool_file`."""

    POOL = "default"

    def __init__(self, netns: str, lxd_dir: Path, pool_file: Path, pool_size: int = 4 << 30) -> None:
        """pool_size is the sparse file's size: it holds LXD's database (~25 MB), the image's
        tarball and one unpacked copy (~450 MB), and what containers write."""
        self.netns = netns
        self.lxd_dir = Path(lxd_dir).absolute()
        self.pool_file = Path(pool_file).absolute()
        self.pool_dir = self.lxd_dir.with_name(f"{self.lxd_dir.name}.pool")  # LXD refuses one inside LXD_DIR
        self.pool_size = pool_size
        self.socket = self.lxd_dir / "unix.socket"
        self.pid_file = self.lxd_dir / "vxlab-lxd.pid"
        self.log_file = self.lxd_dir / "lxd.log"
        self._proc: subprocess.Popen[bytes] | None = None  # kept to reap it when we stop it
        self._client: pylxd.Client | None = None
        self.execs = threading.BoundedSemaphore(16)

    # -- lifecycle ---------------------------------------------------------------------------

    def pid(self) -> int | None:
        """The daemon's pid, if the pid file names a live lxd with our LXD_DIR."""
        pid = process.pid_in(self.pid_file)
        if pid is None or not process.runs(pid, "lxd"):
            return None
        return pid if process.environ(pid).get("LXD_DIR") == str(self.lxd_dir) else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 30) -> None:
        """Start lxd in the namespace and wait until its API is ready (no-op if running)."""
        if (pid := self.pid()) is not None:
            # A daemon left from a run whose namespace was since deleted and re-made.
            if os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat(f"/run/netns/{self.netns}").st_ino:
                raise RuntimeError(f"lxd {pid} of {self.lxd_dir} runs in another netns: stop() it")
            return
        # Not a dir pool: on tmpfs it held a full copy of the image per container (~220 MB
        # each), on ext4 it cost 5-7 s per launch (unpacking). Mounted before lxd starts: / is
        # a private mount here, so a later mount would not reach the daemon's mount namespace.
        if not mounted(self.pool_dir) and not mounted(self.lxd_dir):
            self._new_btrfs()
        device = self._device()
        for path, subvolume in ((self.pool_dir, "pool"), (self.lxd_dir, "lxd")):
            path.mkdir(parents=True, exist_ok=True)
            if not mounted(path):
                options = f"noatime,subvol={subvolume}"
                subprocess.run(["mount", "-t", "btrfs", "-o", options, device, str(path)], check=True)
        self.lxd_dir.chmod(0o711)
        # `ip netns exec` remounts /sys, which empties /sys/fs/cgroup: without cgroups systemd
        # containers die. Replay the host's cgroup mounts in that mount namespace, then exec.
        replay = [
            f"mkdir -p {shlex.quote(tgt)} && mount -t {fstype} -o {shlex.quote(opts)}"
            f" {shlex.quote(src)} {shlex.quote(tgt)}"
            for src, tgt, fstype, opts in mounts()
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
        def ready() -> bool:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"lxd in {self.netns} exited: {self._log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = _UnixHTTPConnection(self.socket, timeout=2)
                conn.request("GET", "/internal/ready")
                return conn.getresponse().status == 200
            return False

        if not until(ready, timeout, pause=0.1):
            raise TimeoutError(f"lxd in {self.netns} not ready: {self._log_tail()}")

    def _log_tail(self) -> str:
        texts = []
        for path in (self.lxd_dir / "lxd.stdout", self.log_file):
            with contextlib.suppress(OSError):
                texts.append(path.read_text()[-2000:])
        return "\n".join(texts)

    def _new_btrfs(self) -> None:
        """A btrfs with subvolumes `pool` and `lxd` on a loop device over a new sparse file.
        Made here, not by LXD: given the device, LXD waits 10 s for a /dev/disk/by-uuid link
        (no udev here); and LXD would keep its own loop file in LXD_DIR."""
        self._drop_btrfs()  # an interrupted run's
        for _ in range(3):  # another lab's stop() may remove POOLS between our mkdirs
            with contextlib.suppress(FileNotFoundError):
                self.pool_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                with open(self.pool_file, "xb") as f:
                    f.truncate(self.pool_size)
                break
        device = loops.attach(self.pool_file)
        # Single metadata copy, no discard pass: a throwaway file system on a sparse file.
        subprocess.run(["mkfs.btrfs", "-q", "-K", "-m", "single", device], check=True, capture_output=True)
        # Two subvolumes, since LXD refuses a pool inside LXD_DIR: made in the top level, mounted
        # for that only on pool_dir.
        self.pool_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "btrfs", "-o", "noatime", device, str(self.pool_dir)], check=True)
        try:
            for subvolume in ("pool", "lxd"):
                subprocess.run(["btrfs", "-q", "subvolume", "create", str(self.pool_dir / subvolume)],
                               check=True, capture_output=True)
        finally:
            subprocess.run(["umount", str(self.pool_dir)], check=True)

    def _device(self) -> str:
        devices = loops.backed_by(self.pool_file)
        if not devices:
            raise RuntimeError(f"no loop device on {self.pool_file}: stop() this daemon and start it again")
        return devices[0]

    def _drop_btrfs(self) -> None:
        """Unmount lxd_dir and pool_dir, detach the loop device, remove the file and the dirs
        made for it."""
        remove_tree(self.lxd_dir)
        remove_tree(self.pool_dir)
        loops.detach(self.pool_file)  # once no mount namespace holds the btrfs any more
        self.pool_file.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # made for the pool files: removed once empty
            self.pool_file.parent.rmdir()
            if self.pool_file.parent.parent == POOLS:
                POOLS.rmdir()

    def client(self) -> pylxd.Client:
        if self._client is None:
            self._client = pylxd.Client(endpoint=str(self.socket))
        return self._client

    def init(self, bridge: str, mtu: int, image: Path, alias: str = "vxlab") -> None:
        """Pool, default profile (eth0 on `bridge`) and image alias; each step idempotent."""
        client = self.client()
        if not client.storage_pools.exists(self.POOL):
            client.storage_pools.create({"name": self.POOL, "driver": "btrfs",
                                         "config": {"source": str(self.pool_dir)}})
        profile = client.profiles.get("default")
        devices = {
            "root": {"type": "disk", "path": "/", "pool": self.POOL},
            "eth0": {"type": "nic", "name": "eth0", "nictype": "bridged", "parent": bridge, "mtu": str(mtu)},
        }
        if profile.devices != devices:
            profile.devices = devices
            profile.save(wait=True)
        image_fingerprint = fingerprint(image)
        if not client.images.exists(image_fingerprint):
            with image.open("rb") as f:  # a file object: requests streams it, no 300 MB copy
                client.images.create(f, wait=True)
        with contextlib.suppress(pylxd.exceptions.NotFound):
            if client.images.get_by_alias(alias).fingerprint == image_fingerprint:
                return
            client.api.images.aliases[alias].delete()  # points to an older build
        client.images.get(image_fingerprint).add_alias(alias, "vxlab lab image")

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
            process.terminate([pid], timeout)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout)  # reap our child, else a zombie lingers in /proc
            self._proc = None
        # Leftovers of an interrupted run: container monitors, payload processes, helpers.
        leftovers = processes_using(self.lxd_dir)
        for cgroup in container_cgroups(names):
            leftovers += cgroup_procs(cgroup)
        process.terminate(sorted(set(leftovers) - {os.getpid()}), timeout, first=signal.SIGKILL)
        self._drop_btrfs()  # and any mount left below lxd_dir
        for cgroup in container_cgroups(names):
            remove_cgroup(cgroup)
        if not _lxd_processes():
            # liblxc leaves an empty lxc.pivot in every hierarchy after a container stop. It is
            # shared by all daemons on the machine: remove it only when no lxd is left to use it.
            for cgroup in cgroup_dirs("lxc.pivot"):
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
