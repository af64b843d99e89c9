"""The sysctl keys a lab may set are its network namespace's own, as this machine's kernel
says: read from a fresh namespace, and written only inside namespaces that a user namespace
owns, as nobody (the kernel lets such a root write its own namespace's keys and nothing of the
host's). Nothing here writes the machine's own sysctls."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import needs_root

from lab import model
from lab.model.types import _sysctl_key

pytestmark = needs_root("ip", "sysctl", "setpriv", "unshare")

# The keys the default lab sets, and some more a lab might want.
WANTED = [*model.load().sysctl, "net.core.somaxconn", "net.ipv4.tcp_syncookies",
          "net.ipv6.conf.all.accept_ra", "net.ipv4.conf.default.arp_ignore", "net.unix.max_dgram_qlen"]
# Refused: the host's (kernel, vm, fs), or net keys the kernel keeps global. Only read here.
REFUSED = ["kernel.core_pattern", "vm.swappiness", "fs.protected_symlinks", "net.core.rmem_max",
           "net.core.netdev_max_backlog", "net.ipv4.tcp_mem", "net.ipv4.route.max_size",
           "net.netfilter.nf_conntrack_max"]


def accepted(key: str) -> bool:
    try:
        _sysctl_key(key)
    except ValueError:
        return False
    return True


def keys(listing: str) -> dict[str, bool]:
    """`find /proc/sys/net -printf '%P %m'` -> {net.key: writable by root}; per-interface
    keys are left out (the interfaces differ between namespaces)."""
    out = {}
    for line in listing.splitlines():
        path, mode = line.rsplit(" ", 1)
        parts = ["net", *path.split("/")]
        if len(parts) > 4 and parts[2] in ("conf", "neigh") and parts[3] not in ("all", "default"):
            continue
        out[".".join(parts)] = bool(int(mode, 8) & 0o200)
    return out


LIST = ["find", "/proc/sys/net", "-type", "f", "-printf", "%P %m\n"]


@pytest.fixture(scope="module")
def fresh() -> dict[str, bool]:
    """The net keys of a fresh namespace (as `ip netns exec` gives the embedded lab's nodes)."""
    ns = f"vxlabtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return keys(subprocess.run(["ip", "netns", "exec", ns, *LIST], check=True,
                                   capture_output=True, text=True).stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_every_key_of_this_kernel_the_model_accepts_is_the_namespaces_own(fresh):
    host = keys(subprocess.run(LIST, check=True, capture_output=True, text=True).stdout)
    host_only = sorted(k for k, writable in host.items() if writable and accepted(k) and not fresh.get(k))
    assert not host_only, f"accepted, but not writable in a fresh namespace: {host_only}"


def test_every_key_a_namespace_owns_is_accepted(fresh):
    refused = sorted(k for k, writable in fresh.items() if writable and not accepted(k))
    assert not refused, f"a namespace's own keys, refused: {refused}"


def in_owned_namespace(script: str, *args: str) -> subprocess.CompletedProcess:
    """A shell as root of a new user namespace (nobody outside it) in a new network namespace."""
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "unshare", "--user", "--map-root-user", "--net", "sh", "-c", script, "sh", *args],
                          capture_output=True, text=True)


def proc(key: str) -> Path:
    return Path("/proc/sys", *key.split("."))


def value(key: str) -> str:
    if not proc(key).exists():
        pytest.skip(f"this kernel has no {key}")
    return proc(key).read_text()


@pytest.mark.parametrize("key", WANTED)
def test_an_accepted_key_changes_the_namespace_and_not_the_host(key):
    assert accepted(key)
    before = value(key)
    # write another value than the namespace's own, and read it back there
    r = in_owned_namespace('new=$(( $(cat "$1") == 0 ? 1 : 0 )); echo $new > "$1" && '
                           '[ "$(cat "$1")" = $new ]', str(proc(key)))
    assert r.returncode == 0, r.stderr
    assert value(key) == before


@pytest.mark.parametrize("key", REFUSED)
def test_a_refused_key_is_not_a_namespaces_own(key):
    assert not accepted(key)
    before = value(key)
    # the kernel refuses the namespace's root too; the value written is the one there already
    r = in_owned_namespace('v=$(cat "$1") && echo "$v" > "$1"', str(proc(key)))
    assert r.returncode != 0, f"{key}: a namespace's root could write it"
    assert value(key) == before
