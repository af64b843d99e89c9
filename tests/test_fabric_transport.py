"""The Vagrant substrate's SSH transport (Fabric) against a real sshd on 127.0.0.1.

The fixture starts its own sshd (Debian's openssh-server binary) with its own host key,
config, port and a throwaway key pair, all in a temp dir, and stops it by pid. It logs in as
root (the test runs as root) and, unless a test logs in as root on purpose, every command
goes through `sudo -n`, as on a VM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import needs_root
from paramiko.ssh_exception import BadHostKeyException

from lab.substrate.base import CommandError, Service
from lab.substrate.vagrant import KnownHosts, SshEndpoint, VagrantNode, nodes_from_ssh_config

SSHD = "/usr/sbin/sshd"
pytestmark = needs_root(SSHD, "ssh-keygen", "sudo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError("sshd does not listen")


@contextlib.contextmanager
def _sshd(d: Path, permit_root: str) -> Iterator[SshEndpoint]:
    d.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = _free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\n"
        f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
        f"PermitRootLogin {permit_root}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n")
    # sshd refuses to start without its privilege separation dir; make it only if missing.
    privsep = Path("/run/sshd")
    made_privsep = not privsep.exists()
    privsep.mkdir(mode=0o755, exist_ok=True)
    with open(d / "sshd.log", "wb") as log:  # sshd keeps its own copy of the descriptor
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield SshEndpoint("testvm", "127.0.0.1", port, "root", (str(d / "client_key"),))
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # our own sshd, by pid
        proc.wait(10)
        if made_privsep:
            with contextlib.suppress(OSError):
                privsep.rmdir()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[SshEndpoint]:
    with _sshd(tmp_path_factory.mktemp("sshd"), "prohibit-password") as endpoint:
        yield endpoint


@pytest.fixture
def node(sshd, tmp_path) -> Iterator[VagrantNode]:
    n = VagrantNode("testvm", sshd, tmp_path / "ssh-config")
    n.sudo = True  # as on a VM, where Vagrant's user is not root
    yield n
    n.close()


def test_ssh_config_parsing():
    text = """Host routerVM
  HostName 192.168.121.12
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  IdentityFile "/home/me/.vagrant.d/insecure_private_key"
  IdentitiesOnly yes

Host blueVM
  HostName 192.168.121.13
  User vagrant
  Port 2222
  IdentityFile /a/key
  IdentityFile /b/key
"""
    eps = SshEndpoint.parse(text)
    assert list(eps) == ["routerVM", "blueVM"]
    assert eps["routerVM"] == SshEndpoint("routerVM", "192.168.121.12", 22, "vagrant",
                                          ("/home/me/.vagrant.d/insecure_private_key",))
    assert eps["blueVM"].port == 2222 and eps["blueVM"].identity_files == ("/a/key", "/b/key")


def test_run_goes_through_sudo(node):
    r = node.run(["sh", "-c", 'echo "$SUDO_USER:$(id -u):$HOME"'])
    assert r.ok and r.out.strip() == "root:0:/root"
    assert r.argv == ("sh", "-c", 'echo "$SUDO_USER:$(id -u):$HOME"')


def test_login_as_root_drops_sudo(node):
    assert node.login_as_root() is True
    assert (node.user, node.sudo) == ("root", False)
    r = node.run(["sh", "-c", 'echo "${SUDO_USER:-none}:$(id -u):$HOME"'])
    assert r.ok and r.out.strip() == "none:0:/root"
    assert node.login_as_root() is True  # already: nothing to do


def test_refused_root_login_keeps_sudo(tmp_path):
    with _sshd(tmp_path / "sshd", "no") as endpoint:
        n = VagrantNode("testvm", endpoint, tmp_path / "ssh-config")
        n.sudo = True
        try:
            assert n.login_as_root() is False
            assert n.sudo is True
        finally:
            n.close()


def test_run_quotes_arguments_and_feeds_input(node):
    assert node.run(["printf", "%s|", "a b", "$HOME", "it's"]).out == "a b|$HOME|it's|"
    assert node.run(["cat"], input="line 1\nline 2\n").out == "line 1\nline 2\n"
    assert node.run(["cat"]).out == ""  # no input: stdin is at EOF, nothing hangs


def test_failure_raises_command_error(node):
    with pytest.raises(CommandError) as e:
        node.run(["sh", "-c", "echo oops >&2; exit 7"])
    assert e.value.result.rc == 7 and "oops" in e.value.result.err
    assert "testvm" in str(e.value) and "exit 7" in str(e.value)
    r = node.run(["false"], check=False)
    assert r.rc == 1 and not r.ok


def test_timeout_gives_124(node):
    r = node.run(["sleep", "5"], check=False, timeout=1)
    assert r.rc == 124 and "timed out" in r.err


def test_put_places_as_root_with_mode_and_reports_changes(node, tmp_path):
    target = tmp_path / "etc" / "deep" / "conf"
    assert node.put(str(target), "one\n", 0o640) is True
    assert target.read_text() == "one\n"
    st = target.stat()
    assert st.st_mode & 0o7777 == 0o640 and (st.st_uid, st.st_gid) == (0, 0)
    assert node.put(str(target), "one\n", 0o640) is False  # same content and mode
    assert node.put(str(target), "one\n", 0o755) is True  # mode only
    assert target.stat().st_mode & 0o7777 == 0o755
    assert node.put(str(target), b"\x00two\xff", 0o755) is True  # content, binary
    assert target.read_bytes() == b"\x00two\xff"
    # no upload or temp file left behind, next to the target or in the login home
    assert sorted(p.name for p in target.parent.iterdir()) == ["conf"]
    assert not list(Path("/root").glob(".vxlab-upload-*"))
    with pytest.raises(CommandError):  # a file where a directory must be
        node.put(str(target / "below"), "x\n")
    assert not list(Path("/root").glob(".vxlab-upload-*"))  # the upload went anyway


def test_read(node, tmp_path):
    f = tmp_path / "file"
    f.write_text("hello\nworld\n")
    assert node.read(str(f)) == "hello\nworld\n"
    assert node.read(str(tmp_path / "absent")) is None
    with pytest.raises(CommandError):
        node.read(str(tmp_path))  # a directory: an error, not "absent"


def test_services_use_systemd_units_and_their_own_pid_files(node, tmp_path):
    # No systemd on the test host: systemctl fails or is missing, so "not running".
    assert node.running(Service("keepalived", ("keepalived",), unit="vxlab-no-such.service")) is False
    # A daemon with a pid file is alive when that pid is (an LSB unit stays "active" after its
    # daemon died): this test's own pid, then one that is gone.
    pidfile = tmp_path / "d.pid"
    pidfile.write_text(f"{os.getpid()}\n")
    assert node.running(Service("d", ("d",), unit="d", pidfiles=(str(pidfile),))) is True
    gone = subprocess.Popen(["true"])
    gone.wait()
    pidfile.write_text(f"{gone.pid}\n")
    assert node.running(Service("d", ("d",), unit="d", pidfiles=(str(pidfile),))) is False


def test_interactive_command_line(node):
    argv = node.interactive(["sh", "-c", "ip -4 addr; echo 'x y'"])
    assert argv[:5] == ["ssh", "-F", str(node.ssh_config), "-t", "testvm"]
    # through a real ssh with the config file, the command arrives intact
    node.ssh_config.write_text(
        f"Host testvm\n  HostName 127.0.0.1\n  Port {node.endpoint.port}\n  User root\n"
        f"  IdentityFile {node.endpoint.identity_files[0]}\n  IdentitiesOnly yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n")
    cmd = node.interactive(["printf", "%s|", "a b", "it's"])
    cmd = [a for a in cmd if a != "-t"]  # no terminal in the test
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "a b|it's|"


def test_nodes_from_ssh_config_writes_the_file(sshd, tmp_path):
    text = (f"Host testvm\n  HostName 127.0.0.1\n  User root\n  Port {sshd.port}\n"
            f"  IdentityFile {sshd.identity_files[0]}\n")
    nodes = nodes_from_ssh_config(text, tmp_path / "cfg" / "ssh-config")
    assert (tmp_path / "cfg" / "ssh-config").read_text() == text
    n = nodes["testvm"]
    try:
        assert n.run(["true"]).ok
    finally:
        n.close()


def test_host_key_recorded_at_first_contact_then_required(tmp_path):
    known = tmp_path / "known_hosts-testvm"
    with _sshd(tmp_path / "a", "prohibit-password") as endpoint:
        n = VagrantNode("testvm", endpoint, tmp_path / "ssh-config", known_hosts=KnownHosts(known, "m1"))
        try:
            assert n.run(["true"]).ok  # first contact: recorded
        finally:
            n.close()
        host_key = (tmp_path / "a/host_key.pub").read_text().split()[1]
        lines = known.read_text().splitlines()
        assert lines[0] == "# vxlab: host keys of machine m1"
        assert lines[1] == f"[127.0.0.1]:{endpoint.port} ssh-ed25519 {host_key}"
        again = VagrantNode("testvm", endpoint, tmp_path / "ssh-config", known_hosts=KnownHosts(known, "m1"))
        try:
            assert again.run(["true"]).ok and again.login_as_root()  # the same key: fine
        finally:
            again.close()
    with _sshd(tmp_path / "b", "prohibit-password") as other:  # another host key answers
        impostor = VagrantNode("testvm", other, tmp_path / "ssh-config", known_hosts=KnownHosts(known, "m1"))
        impostor.sudo = True  # as on a VM: login_as_root opens a connection of its own
        try:
            with pytest.raises(BadHostKeyException):
                impostor.run(["true"])
            with pytest.raises(BadHostKeyException):
                impostor.login_as_root()
        finally:
            impostor.close()
        assert known.read_text().count("ssh-ed25519") == 1  # nothing recorded for it
        # the machine made anew (Vagrant's id changed): a first contact again
        remade = VagrantNode("testvm", other, tmp_path / "ssh-config", known_hosts=KnownHosts(known, "m2"))
        try:
            assert remade.run(["true"]).ok
        finally:
            remade.close()
        assert known.read_text().splitlines()[0] == "# vxlab: host keys of machine m2"


def test_ssh_config_for_the_terminal_checks_the_recorded_key(sshd, tmp_path):
    text = (f"Host testvm\n  HostName 127.0.0.1\n  User root\n  Port {sshd.port}\n"
            f"  IdentityFile {sshd.identity_files[0]}\n  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n")
    known = tmp_path / "known_hosts-testvm"
    nodes = nodes_from_ssh_config(text, tmp_path / "ssh-config", lambda alias: KnownHosts(known, "m"))
    cfg = (tmp_path / "ssh-config").read_text()
    assert "StrictHostKeyChecking yes" in cfg and f"UserKnownHostsFile {known}" in cfg
    assert "/dev/null" not in cfg and "StrictHostKeyChecking no" not in cfg
    n = nodes["testvm"]
    try:
        n.run(["true"])  # the first contact, through the lab
    finally:
        n.close()
    cmd = [a for a in n.interactive(["echo", "ok"]) if a != "-t"]
    cmd[cmd.index("sudo"):cmd.index("--") + 1] = []  # root already
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "ok\n", out.stderr
    known.write_text(known.read_text().replace("ssh-ed25519 AAAA", "ssh-ed25519 AAAB"))  # not its key
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
