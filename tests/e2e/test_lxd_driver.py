"""End-to-end: an LXD daemon inside a network namespace, two systemd containers on its bridge.

Runs as root. Creates namespace hlxd-t1 (bridge sw-vlan7, 192.0.2.1/24, no link to the root
namespace), builds or reuses the cached image, and checks that stop() leaves nothing behind.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.containers.container import LxdContainer
from lab.containers.daemon import POOLS, LxdDaemon, processes_using
from lab.containers.image import ensure_image
from lab.host.cgroups import container_cgroups

NETNS = "hlxd-t1"
BRIDGE = "sw-vlan7"
MTU = 9000
WORK = Path("/run/hlxd-test")
CONTAINERS = {"hlxdC0": "192.0.2.10", "hlxdC1": "192.0.2.11"}
HWADDR = "ba:ad:ca:fe:07:11"  # given to hlxdC1, to check the per-container NIC override
INTERFACES = """\
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet static
    address {address}/24
"""

TIMINGS: dict[str, float] = {}


class timed:
    """Record how long a block took under `name` (reported at the end of the session)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        self.t0 = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        TIMINGS[self.name] = time.monotonic() - self.t0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


@pytest.fixture(scope="session", autouse=True)
def report_timings() -> Iterator[None]:
    yield
    print("\n" + "\n".join(f"  {name:28} {secs:7.2f} s" for name, secs in TIMINGS.items()))


@pytest.fixture(scope="session")
def image() -> Path:
    with timed("image (ensure_image)"):
        return ensure_image()


@pytest.fixture
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)  # a previous crash
    ip("netns", "add", NETNS)
    try:
        ip("-n", NETNS, "link", "set", "lo", "up")
        ip("-n", NETNS, "link", "add", BRIDGE, "mtu", str(MTU), "type", "bridge")
        ip("-n", NETNS, "addr", "add", "192.0.2.1/24", "dev", BRIDGE)
        ip("-n", NETNS, "link", "set", BRIDGE, "up")
        yield NETNS
    finally:
        ip("netns", "del", NETNS)


@pytest.fixture
def daemon(netns: str) -> Iterator[LxdDaemon]:
    d = LxdDaemon(netns, WORK / "lxd-t1", POOLS / "hlxd-test" / "lxd-t1.btrfs")
    d.stop()  # what a crashed earlier run may have left
    try:
        yield d
    finally:
        d.stop()  # idempotent: a no-op when the test already stopped it
        shutil.rmtree(WORK, ignore_errors=True)


def test_lxd_in_netns(image: Path, daemon: LxdDaemon) -> None:
    with timed("daemon start"):
        daemon.start()
    assert daemon.running()
    daemon.start()  # idempotent: same daemon
    with timed("daemon init (pool, profile, image)"):
        daemon.init(BRIDGE, MTU, image)

    containers = [LxdContainer(daemon, name) for name in CONTAINERS]
    for c in containers:
        hwaddr = HWADDR if c.name == "hlxdC1" else None
        with timed(f"launch {c.name}"):
            c.launch(hwaddr=hwaddr)
        c.launch(hwaddr=hwaddr)  # idempotent
        assert c.state() == "Running"
    for c in containers:
        with timed(f"boot {c.name} (systemd)"):
            assert c.wait_booted() in ("running", "degraded")

    for c, address in zip(containers, CONTAINERS.values(), strict=True):
        c.put("/etc/network/interfaces", INTERFACES.format(address=address).encode())
        assert c.get("/etc/network/interfaces").decode().endswith(f"{address}/24\n")
        with timed(f"ifup eth0 {c.name}"):
            rc, out, err = c.run(["ifup", "eth0"])
        assert rc == 0, (out, err)
        assert c.run(["hostname"])[1].strip() == c.name
        rc, out, _ = c.run(["cat", "/sys/class/net/eth0/mtu", "/sys/class/net/eth0/address"])
        mtu, mac = out.split()
        assert mtu == str(MTU)
        assert c.name != "hlxdC1" or mac == HWADDR

    for c in containers:
        for target in ["192.0.2.1", *CONTAINERS.values()]:
            rc, out, err = c.run(["ping", "-c", "1", "-W", "2", target])
            assert rc == 0, (c.name, target, out, err)
    rc, out, _ = containers[0].run(["sh", "-c", "cat; echo err >&2; exit 3"], input=b"in\n")
    assert (rc, out) == (3, "in\n")

    # Copy-on-write: the image's tarball and one unpacked copy on disk, none per container;
    # nothing of LXD's on a tmpfs (memory).
    on_disk = daemon.pool_file.stat().st_blocks * 512
    assert on_disk < 2 * image.stat().st_size + (64 << 20), on_disk
    with open("/proc/self/mounts") as f:
        fstypes = {fields[1]: fields[2] for fields in (line.split() for line in f)}
    assert (fstypes[str(daemon.lxd_dir)], fstypes[str(daemon.pool_dir)]) == ("btrfs", "btrfs")

    lxd_dir = daemon.lxd_dir
    with timed("daemon stop + cleanup"):
        daemon.stop()
    assert not daemon.running()
    assert processes_using(lxd_dir) == []
    with open("/proc/self/mounts") as f:
        assert [line for line in f if str(lxd_dir) in line or str(daemon.pool_dir) in line] == []
    loops = subprocess.run(["losetup", "--list"], capture_output=True, text=True, check=True).stdout
    assert str(daemon.pool_file) not in loops
    assert not lxd_dir.exists()
    assert not daemon.pool_dir.exists()
    assert not daemon.pool_file.parent.exists()
    assert container_cgroups(list(CONTAINERS)) == []
    daemon.stop()  # idempotent


def test_created_before_its_bridge(image: Path) -> None:
    """The embedded lab makes a tenant's containers (stopped) as soon as its namespace exists,
    before its VM's shared VLAN bridge: LXD accepts the profile and the create then, and the
    container starts on the bridge once it is there."""
    subprocess.run(["ip", "netns", "del", NETNS], capture_output=True)  # a previous crash
    ip("netns", "add", NETNS)
    d = LxdDaemon(NETNS, WORK / "lxd-t1", POOLS / "hlxd-test" / "lxd-t1.btrfs")
    try:
        ip("-n", NETNS, "link", "set", "lo", "up")
        d.stop()
        d.start()
        d.init(BRIDGE, MTU, image)
        c = LxdContainer(d, "hlxdC0")
        c.create()
        assert c.state() == "Stopped"
        ip("-n", NETNS, "link", "add", BRIDGE, "mtu", str(MTU), "type", "bridge")
        ip("-n", NETNS, "link", "set", BRIDGE, "up")
        c.start()
        assert c.wait_booted() in ("running", "degraded")
        assert c.run(["cat", "/sys/class/net/eth0/mtu"])[1].strip() == str(MTU)
        bridged = subprocess.run(["ip", "-n", NETNS, "-o", "link", "show", "master", BRIDGE],
                                 capture_output=True, text=True, check=True).stdout
        assert bridged.strip(), "the container's veth is not on the bridge"
    finally:
        d.stop()
        shutil.rmtree(WORK, ignore_errors=True)
        ip("netns", "del", NETNS)
