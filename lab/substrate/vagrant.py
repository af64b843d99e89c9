"""Substrate "vagrant": each machine of the lab is a Vagrant VM, reached over SSH with Fabric.

A node is built from the values of `vagrant ssh-config` (python-vagrant's `ssh_config()`):
commands run as root, through `sudo -n` as Vagrant's user (the box's vagrant user has
passwordless sudo) or, once provisioning has let that user's key log in as root, as root
directly: under QEMU emulation sudo is three quarters of a short command's cost, and the
drills' reads compete with keepalived for the tenants' CPU. Files are uploaded over SFTP and
moved into place as root, and services are the node's systemd units. The VMs have their own
file systems, so a node's root is "". Each VM's host key is recorded at first contact and
required afterwards (KnownHosts).
"""

from __future__ import annotations

import fcntl
import io
import os
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fabric import Config, Connection
from invoke.exceptions import CommandTimedOut
from paramiko import MissingHostKeyPolicy, PKey, SSHClient, SSHConfig
from paramiko.hostkeys import HostKeys
from paramiko.ssh_exception import BadHostKeyException, SSHException

from lab.substrate.base import CommandError, Result
from lab.substrate.systemd import SystemdServices

# Exit codes of the small remote scripts below (sh has no exceptions).
_ABSENT = 3
_SAME = 4

# Place a file atomically as root: compare with what is there (content and mode), else copy the
# upload next to the target and rename it over (a rename within one directory is atomic).
_PLACE = r"""
set -e
tmp=$1 path=$2 mode=$3
trap 'rm -f "$tmp"' EXIT
if [ -f "$path" ] && [ "$(stat -c %a "$path")" = "$mode" ] && cmp -s "$tmp" "$path"; then
  exit 4
fi
dir=$(dirname "$path"); mkdir -p "$dir"
next="$dir/.$(basename "$path").vxlab-tmp"
install -m "$mode" -o root -g root "$tmp" "$next"
mv -f "$next" "$path"
"""
_READ = 'test -e "$1" || exit 3; exec cat -- "$1"'
# Root's authorized keys become the sudo user's (the key Vagrant put in at `vagrant up`).
_AUTHORIZE_ROOT = r"""
set -e
src="$(getent passwd "$SUDO_USER" | cut -d: -f6)/.ssh/authorized_keys"
install -d -m 700 /root/.ssh
cmp -s "$src" /root/.ssh/authorized_keys || install -m 600 "$src" /root/.ssh/authorized_keys
"""


@dataclass(frozen=True)
class SshEndpoint:
    """Where and how to log in to one VM: the values of its `vagrant ssh-config` stanza."""

    host: str  # the Host alias (the VM's name)
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> dict[str, SshEndpoint]:
        """Every `Host` stanza of an ssh-config text, by alias, in the text's order."""
        config = SSHConfig.from_text(text)
        words = text.split()  # paramiko gives the aliases as a set: ordered as the text names them
        aliases = sorted(config.get_hostnames() - {"*"},
                         key=lambda a: words.index(a) if a in words else len(words))
        out: dict[str, SshEndpoint] = {}
        for alias in aliases:
            o = config.lookup(alias)  # its HostName is the alias unless the stanza says otherwise
            out[alias] = cls(host=alias, hostname=o["hostname"], port=int(o.get("port", 22)),
                             user=o.get("user", "vagrant"), identity_files=tuple(o.get("identityfile", [])))
        return out


class KnownHosts(MissingHostKeyPolicy):
    """One machine's host key, in a known_hosts file of its own: recorded at first contact,
    required afterwards (any other key is refused, as paramiko's RejectPolicy would). The file
    names the machine (Vagrant's id of it): a machine made anew is a first contact again."""

    def __init__(self, path: Path, machine: str | None) -> None:
        self.path = path
        self.header = f"# vxlab: host keys of machine {machine or 'unknown'}\n"
        self._lock = threading.Lock()

    def attach(self, client: SSHClient) -> None:
        """Make `client` check the recorded key, and record the first one."""
        self._forget_other_machine()
        if self.path.exists():
            client.get_host_keys().load(str(self.path))
        client.set_missing_host_key_policy(self)

    def _forget_other_machine(self) -> None:
        try:
            with open(self.path) as f:
                if f.readline() != self.header:
                    self.path.unlink()  # recorded for a machine since destroyed
        except FileNotFoundError:
            pass

    def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
        with self._lock, open(self.path.with_name(f".{self.path.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be at its first contact too
            recorded = HostKeys()
            if self.path.exists():
                recorded.load(str(self.path))
            keys = [k for name in recorded for k in recorded[name].values()]
            if keys and all(k.asbytes() != key.asbytes() for k in keys):  # another key: refused
                raise BadHostKeyException(hostname, key, keys[0])
            lines = self.path.read_text().splitlines(keepends=True)[1:] if self.path.exists() else []
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(self.header + "".join(lines) + f"{hostname} {key.get_name()} {key.get_base64()}\n")
            os.replace(tmp, self.path)
        client.get_host_keys().add(hostname, key.get_name(), key)


class VagrantNode(SystemdServices):
    """One VM of the lab over SSH (Fabric): run as root, place and read files, systemd units."""

    kind = "VM"
    root = ""  # the VM's own file system

    def __init__(self, name: str, endpoint: SshEndpoint, ssh_config: Path | str,
                 connect_timeout: float = 30, known_hosts: KnownHosts | None = None) -> None:
        """`ssh_config` is a file holding the endpoint's stanza, for `ssh -F` (interactive);
        `known_hosts`: the VM's host key (None: not checked)."""
        self.name = name
        self.endpoint = endpoint
        self.ssh_config = Path(ssh_config)
        self.connect_timeout = connect_timeout
        self.known_hosts = known_hosts
        self.user = endpoint.user  # who we log in as
        self.sudo = endpoint.user != "root"  # how commands become root
        self._conn: Connection | None = None
        self._home: str | None = None  # the login user's home, where uploads land
        self._lock = threading.Lock()  # one connection per node, shared by callers' threads

    # -- connection ------------------------------------------------------------------------

    def connection(self) -> Connection:
        with self._lock:
            if self._conn is None:
                self._conn = self._connect(self.user)
            return self._conn

    def _connect(self, user: str) -> Connection:
        e = self.endpoint
        # No ~/.ssh/config, no agent, no user keys: only what Vagrant says, so a developer's
        # own ssh setup cannot change how the lab logs in.
        conn = Connection(e.hostname, user=user, port=e.port,
                          config=Config(overrides={"load_ssh_configs": False}),
                          connect_timeout=int(self.connect_timeout),
                          connect_kwargs={"key_filename": list(e.identity_files), "look_for_keys": False,
                                          "allow_agent": False})
        if self.known_hosts is not None:
            self.known_hosts.attach(conn.client)
        return conn

    def authorize_root(self) -> None:
        """Let the login user's keys log in as root too (idempotent; then `login_as_root`)."""
        if self.sudo:
            self.run(["sh", "-c", _AUTHORIZE_ROOT])

    def login_as_root(self) -> bool:
        """Log in as root with the same keys from now on, if the VM lets us (False: it does
        not, and commands keep going through sudo)."""
        if not self.sudo:
            return True
        conn = self._connect("root")
        try:
            conn.open()
        except BadHostKeyException:
            conn.close()
            raise
        except SSHException:  # refused (paramiko may name a key it could not use instead)
            conn.close()
            return False
        with self._lock:
            old, self._conn, self._home = self._conn, conn, None
            self.user, self.sudo = "root", False
        if old is not None:
            old.close()
        return True

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                self._home = None

    # -- commands and files ----------------------------------------------------------------

    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60) -> Result:
        # -n: never wait for a password prompt; -H: root's HOME, as on the other substrates.
        command = ("sudo -n -H -- " if self.sudo else "") + shlex.join(argv)
        stdin = io.StringIO(input) if input is not None else io.StringIO("")
        started, timed_out = time.monotonic(), False
        try:
            r = self.connection().run(command, hide=True, warn=True, in_stream=stdin,
                                      timeout=timeout, pty=False)
            result = Result(tuple(argv), r.exited, r.stdout, r.stderr)
        except CommandTimedOut as e:
            result, timed_out = Result(tuple(argv), 124, e.result.stdout, e.result.stderr), True
        # invoke's timer closes the channel; if its thread is still finishing when the command
        # returns, no CommandTimedOut comes, only a channel without an exit status (-1)
        if timed_out or (result.rc == -1 and time.monotonic() - started >= timeout):
            result = Result(tuple(argv), 124, result.out, result.err + f"\ntimed out after {timeout} s")
        if check and not result.ok:
            raise CommandError(self.name, result)
        return result

    def put(self, path: str, data: str | bytes, mode: int = 0o644) -> bool:
        data = data.encode() if isinstance(data, str) else data
        sftp = self.connection().sftp()  # Fabric keeps one SFTP session per connection
        if self._home is None:
            self._home = sftp.normalize(".")
        # Uploaded as the login user into its home (SFTP has no sudo), then moved as root.
        tmp = f"{self._home}/.vxlab-upload-{uuid.uuid4().hex}"
        sftp.putfo(io.BytesIO(data), tmp)
        r = self.run(["sh", "-c", _PLACE, "place", tmp, path, f"{mode:o}"], check=False)
        if r.rc == _SAME:
            return False
        if not r.ok:
            raise CommandError(self.name, r)
        return True

    def read(self, path: str) -> str | None:
        r = self.run(["sh", "-c", _READ, "read", path], check=False)
        if r.rc == _ABSENT:
            return None
        if not r.ok:
            raise CommandError(self.name, r)
        return r.out

    # services: the node's systemd units (SystemdServices)

    def path(self, p: str) -> str:
        return p  # its own file system

    def interactive(self, argv: Sequence[str]) -> list[str]:
        # ssh joins its arguments into one remote shell line: quote each one.
        return ["ssh", "-F", str(self.ssh_config), "-t", self.endpoint.host, "sudo", "-H", "--",
                *(shlex.quote(a) for a in argv)]


def ssh_config_text(endpoints: dict[str, SshEndpoint], known_hosts: Callable[[str], Path]) -> str:
    """`ssh -F` stanzas for the endpoints that check each VM's recorded host key."""
    return "".join(
        f"Host {alias}\n  HostName {e.hostname}\n  User {e.user}\n  Port {e.port}\n"
        + "".join(f"  IdentityFile {shlex.quote(f)}\n" for f in e.identity_files)
        + f"  IdentitiesOnly yes\n  PasswordAuthentication no\n"
        f"  UserKnownHostsFile {shlex.quote(str(known_hosts(alias)))}\n  StrictHostKeyChecking yes\n"
        "  LogLevel ERROR\n\n" for alias, e in endpoints.items())


def nodes_from_ssh_config(text: str, ssh_config: Path | str,
                          known_hosts: Callable[[str], KnownHosts] | None = None) -> dict[str, VagrantNode]:
    """A node per VM of a `vagrant ssh-config` text; writes the text to `ssh_config` for ssh -F
    (with `known_hosts`, host key -> its KnownHosts: stanzas that check the recorded keys)."""
    path = Path(ssh_config)
    path.parent.mkdir(parents=True, exist_ok=True)
    endpoints = SshEndpoint.parse(text)
    known = {alias: known_hosts(alias) for alias in endpoints} if known_hosts else {}
    path.write_text(ssh_config_text(endpoints, lambda a: known[a].path) if known else text)
    return {alias: VagrantNode(alias, e, path, known_hosts=known.get(alias))
            for alias, e in endpoints.items()}


def nodes_from_vagrant(root: Path | str, names: Sequence[str], ssh_config: Path | str,
                       known_hosts: Callable[[str], Path] | None = None) -> dict[str, VagrantNode]:
    """Nodes of the running VMs `names` of the Vagrant project in `root` (python-vagrant);
    `known_hosts`: where each VM's host key is recorded (None: not checked)."""
    import vagrant  # python-vagrant: only needed where Vagrant runs

    v = vagrant.Vagrant(root=str(root), quiet_stdout=True, quiet_stderr=True)
    # One `vagrant ssh-config` for all VMs: each call costs about 1.5 s of Vagrant start-up.
    text = v.ssh_config() if len(names) != 1 else v.ssh_config(vm_name=names[0])

    def known(alias: str) -> KnownHosts:
        assert known_hosts is not None
        machine = Path(root, ".vagrant/machines", alias, "libvirt/id")  # Vagrant's id of the VM
        return KnownHosts(known_hosts(alias), machine.read_text().strip() if machine.exists() else None)

    nodes = nodes_from_ssh_config(text, ssh_config, known if known_hosts else None)
    missing = [n for n in names if n not in nodes]
    if missing:
        raise RuntimeError(f"vagrant ssh-config has no entry for {', '.join(missing)}: is it up?")
    return {n: nodes[n] for n in names}
