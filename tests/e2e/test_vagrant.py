"""The Vagrant lab end to end, as a user types it: the box (built, or reused from its cache),
`invoke host.up`, `vagrant up` (three VMs under QEMU: TCG here), `invoke provision`,
`invoke test.connectivity`, `invoke failover.green`, then `vagrant destroy -f && invoke
host.down`, which must leave the host as it was. Each step is timed; the whole must fit in 30
minutes on a 2-core machine. Cleans up even on failure.

The tasks pick the VMs by themselves (no embedded lab `vxlab` is up: the other end-to-end tests
use labs of their own names). It uses this directory's Vagrant project and the default lab: it
refuses to run (fails) if that project already has VMs, rather than destroy someone's lab.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import needs_root

from lab import model
from lab.vagrant import host as hosts
from lab.vagrant.lab import ROOT, VagrantLab

pytestmark = [needs_root("vagrant", "virsh", "libvirtd", "ovs-vsctl", "qemu-system-x86_64"),
              pytest.mark.e2e]

BUDGET = 30 * 60
DAEMONS = {"libvirtd", "virtlogd", "virtlockd", "ovsdb-server", "ovs-vswitchd", "dnsmasq",
           "qemu-system-x86"}
INVOKE = str(ROOT / ".venv/bin/invoke")


RECORD: list[str] = []  # what CI's output shows, pass or fail, with each step's time
OUTPUT: dict[str, str] = {}  # each command's output, by its program's name and first argument


def run(*argv: str, timeout: float, show: int = 0) -> float:
    """Run a command in the project's directory as typed; return its seconds; fail on rc != 0.
    `show`: how many of its last output lines go to the record."""
    started = time.monotonic()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "VAGRANT_NO_COLOR": "1"})
    took = time.monotonic() - started
    if show:
        RECORD.extend(p.stdout.splitlines()[-show:])
    OUTPUT[Path(argv[0]).name + " " + argv[1]] = p.stdout
    assert p.returncode == 0, (f"{' '.join(argv)} failed ({p.returncode}):\n"
                               f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return took


def host_footprint() -> dict:
    """What the Vagrant lab can leave on the host (sysctls included: they must never change)."""
    def out(*argv: str) -> str:
        return subprocess.run(argv, capture_output=True, text=True).stdout

    return {
        "links": sorted(line.split(":")[1].split("@")[0].strip()
                        for line in out("ip", "-o", "link").splitlines()),
        "netns": sorted(n.split()[0] for n in out("ip", "netns", "list").splitlines()
                        if n.startswith("vag-")),
        "nft": sorted(out("nft", "list", "tables").splitlines()),  # iptables' too: libvirt makes them
        "chains": sorted(line for line in out("iptables-save").splitlines() if line.startswith(":LIBVIRT")),
        # the daemons host.up starts (or finds) and host.down stops, and the VMs' QEMUs; not
        # zombies: the daemons detach, and PID 1 (not systemd here) reaps them when it will
        "daemons": sorted(comm for stat, comm in (line.split() for line in out(
            "ps", "-eo", "stat=,comm=").splitlines()) if comm in DAEMONS and not stat.startswith("Z")),
        "forwarding": (Path("/proc/sys/net/ipv4/ip_forward").read_text(),
                       Path("/proc/sys/net/ipv6/conf/all/forwarding").read_text()),
        # Files, not directories: Vagrant keeps empty .vagrant/machines/<vm>/<provider>/ after
        # a destroy (its state lives in files there: an id, keys, ...).
        "files": sorted(str(f) for p in (hosts.RUN, hosts.KEEP, ROOT / ".vagrant/machines")
                        for f in p.rglob("*") if f.is_file()),
    }


def teardown() -> list[str]:
    """`vagrant destroy -f && invoke host.down`, as a user types them; what failed, if any
    (a failed host.down is run once more, so that the machine is clean for what follows,
    but the failure stands)."""
    failed = []
    for argv in (["vagrant", "destroy", "-f"], [INVOKE, "host.down"]):
        p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
        if p.returncode:
            failed.append(" ".join(Path(a).name for a in argv))
            RECORD.extend([f"{failed[-1]} failed:", *(p.stdout + p.stderr).splitlines()[-20:]])
    if failed:
        subprocess.run([INVOKE, "host.down"], cwd=ROOT, capture_output=True, timeout=600)
    return failed


def test_vagrant_lab_end_to_end(capsys):
    vlab = VagrantLab(model.load())
    assert not vlab.exists(), "this directory already has the lab's Vagrant VMs: not touched"
    before = host_footprint()
    started = time.monotonic()
    times: dict[str, float] = {}
    try:
        times["box.build"] = run(INVOKE, "box.build", timeout=900)
        times["host.up"] = run(INVOKE, "host.up", timeout=300)
        times["vagrant up"] = run("vagrant", "up", timeout=1200)
        times["provision"] = run(INVOKE, "provision", timeout=1500)
        # fresh VMs: the provisioning's own check of each node's links, addresses and routes
        # finds nothing to repair (no drift reported where there is none)
        repaired = [ln for ln in OUTPUT["invoke provision"].splitlines() if "repaired:" in ln]
        RECORD.extend(repaired)
        assert not repaired, repaired
        times["test.connectivity"] = run(INVOKE, "test.connectivity", "--wait", "120", timeout=900,
                                         show=1)
        times["failover.green"] = run(INVOKE, "failover.green", timeout=900, show=40)
        # broken as a student would: greenVM's NIC set down and up (the kernel drops its
        # routes), a route deleted from routerVM's green table; provision puts back exactly that
        run(INVOKE, "exec", "greenVM", "--", "sh", "-c", "ip link set enp0s6 down; ip link set enp0s6 up",
            timeout=120)
        run(INVOKE, "exec", "routerVM", "--", "ip", "route", "del", "default", "table", "green", timeout=120)
        times["provision (repair)"] = run(INVOKE, "provision", timeout=900)
        repaired = [ln for ln in OUTPUT["invoke provision"].splitlines() if "repaired:" in ln]
        RECORD.extend(repaired)
        assert any("routerVM: " in ln and "default via 172.16.96.1" in ln for ln in repaired), repaired
        assert any("greenVM: " in ln for ln in repaired), repaired
        times["test.connectivity (repaired)"] = run(INVOKE, "test.connectivity", "--wait", "60",
                                                    timeout=900, show=1)
    finally:
        t = time.monotonic()
        teardown_failed = teardown()
        times["destroy + host.down"] = time.monotonic() - t
        total = time.monotonic() - started
        with capsys.disabled():
            print("\n".join(["", *RECORD, *(f"{k:22} {v:6.0f} s" for k, v in times.items()),
                             f"{'total':22} {total:6.0f} s"]), flush=True)
    assert not teardown_failed, f"{', '.join(teardown_failed)} failed (see the record above)"
    assert host_footprint() == before
    assert total < BUDGET, f"took {total:.0f} s, more than {BUDGET} s"
