"""The Vagrant lab end to end, as a user types it: the box (built, or reused from its cache),
`invoke host.up`, `vagrant up` (three VMs under QEMU: TCG here), `invoke provision`,
`invoke test.connectivity`, `invoke failover.green` (the seed's drill, then keepalived
killed), `invoke failover.link greenVM` (its NIC without carrier), `invoke provision`
repairing what a student broke, then `vagrant destroy -f && invoke host.down`, which must
leave the host as it was. Each step is timed; the whole must fit in 30
minutes on a 2-core machine. Cleans up even on failure.

The tasks pick the VMs by themselves (no embedded lab `vxlab` is up: the other end-to-end tests
use labs of their own names). It uses this directory's Vagrant project and the default lab: it
refuses to run (fails) if that project already has VMs, rather than destroy someone's lab.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import paramiko
import pytest
from conftest import needs_root

from lab import drills, model
from lab.vagrant import spec, state
from lab.vagrant.lab import ROOT, VagrantLab

pytestmark = [needs_root("vagrant", "virsh", "libvirtd", "ovs-vsctl", "qemu-system-x86_64"),
              pytest.mark.e2e]

BUDGET = 30 * 60
VIRSH = ("virsh", "-q", "-c", "qemu:///system")
IMAGES = Path("/var/lib/libvirt/images")
FOREIGN = {"domain": "vxforeign", "volume": "vxforeign.qcow2", "file": "vxforeign-file.img"}
INSECURE_KEY = Path.home() / ".vagrant.d/insecure_private_key"  # Vagrant's, the same everywhere
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
        "files": sorted(str(f) for p in (state.RUN, state.KEEP, ROOT / ".vagrant/machines")
                        for f in p.rglob("*") if f.is_file()),
        # libvirt's own dirs, as libvirtd (started by host.up) leaves them; /etc's contents too
        "libvirt": sorted((str(f), hashlib.sha256(f.read_bytes()).hexdigest()
                           if f.is_file() and f.is_relative_to("/etc") else "")
                          for p in map(Path, ("/etc/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
                                              "/var/cache/libvirt", "/run/libvirt"))
                          for f in p.rglob("*")),
    }


def make_foreign() -> None:
    """What someone else makes with libvirt while the lab is up: a domain (defined), a volume
    in the pool the lab's VMs use, a file among the images."""
    xml = Path(state.RUN) / "vxforeign.xml"
    xml.write_text(f"<domain type='qemu'><name>{FOREIGN['domain']}</name><memory unit='MiB'>64</memory>"
                   "<os><type arch='x86_64'>hvm</type></os></domain>")
    for argv in (("define", str(xml)),
                 ("vol-create-as", "default", FOREIGN["volume"], "1M", "--format", "qcow2")):
        subprocess.run([*VIRSH, *argv], check=True, capture_output=True)
    xml.unlink()
    (IMAGES / FOREIGN["file"]).write_text("not the lab's\n")


def foreign_found() -> dict[str, bool]:
    """Whether each foreign thing is still there (as files: host.down stopped libvirtd)."""
    return {"domain": Path(f"/etc/libvirt/qemu/{FOREIGN['domain']}.xml").exists(),
            "volume": (IMAGES / FOREIGN["volume"]).exists(),
            "file": (IMAGES / FOREIGN["file"]).exists() and
            (IMAGES / FOREIGN["file"]).read_text() == "not the lab's\n"}


def remove_foreign() -> None:
    if subprocess.run([*VIRSH, "uri"], capture_output=True).returncode == 0:  # a libvirtd runs
        subprocess.run([*VIRSH, "undefine", FOREIGN["domain"]], capture_output=True)
    Path(f"/etc/libvirt/qemu/{FOREIGN['domain']}.xml").unlink(missing_ok=True)
    for name in ("volume", "file"):
        (IMAGES / FOREIGN[name]).unlink(missing_ok=True)


def trust(vlab: VagrantLab) -> list[str]:
    """What each VM lets in and where it listens (asserted); the listeners, for the record."""
    lines = []
    addresses = {vm.name: vm.mgmt_address for vm in spec.vms(vlab.lab)}
    for name, address in addresses.items():
        node = vlab.node(name)
        listening = node.run(["ss", "-Htlnp"]).out.splitlines()
        sshd = sorted({ln.split()[3] for ln in listening if '"sshd"' in ln})
        assert sshd == [f"{address}:22"], (name, sshd)  # the management address only
        config = node.run(["sshd", "-T"]).out.splitlines()
        for line in ("passwordauthentication no", "kbdinteractiveauthentication no",
                     "permitrootlogin without-password"):
            assert line in config, (name, line)
        for how in ({"key_filename": str(INSECURE_KEY)}, {"password": "vagrant"}):
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # throwaway: kept nowhere
            with pytest.raises(paramiko.SSHException):  # refused: Vagrant's key, its password
                client.connect(address, username="vagrant", look_for_keys=False, allow_agent=False,
                               timeout=30, **how)
            client.close()
        known = state.KEEP / vlab.lab.name / "ssh" / f"known_hosts-{name}"
        assert known.read_text().count(" ssh-ed25519 ") == 1  # recorded at first contact
        lines.append(f"{name} listens: {listeners(node)}")
    for name, tenant in vlab.lab.tenants.items():
        vm = vlab.node(tenant.vm)
        certs = json.loads(vm.run(["lxc", "query", "/1.0/certificates?recursion=1"]).out)
        assert [(c["restricted"], c["projects"]) for c in certs] == [(True, ["default"])], certs
        assert state.KEEP.joinpath(vlab.lab.name, "lxd", f"server-{tenant.vm}.crt").exists()
        for container in vlab.lab.containers_of(name):
            lines.append(f"{container} listens: {listeners(vlab.node(container))}")
    return lines


def listeners(node) -> str:
    """Its sockets that listen or wait for datagrams: protocol, address:port, program."""
    out = set()
    for line in node.run(["ss", "-Htulpn"]).out.splitlines():
        f = line.split()
        program = f[6].split('"')[1] if len(f) > 6 and '"' in f[6] else "?"
        out.add(f"{f[0]} {f[4]} {program}")
    return ", ".join(sorted(out))


def diagnose(vlab: VagrantLab) -> list[str]:
    """After a failure, before teardown: each VM's state as libvirt and the host's ARP see it,
    and the end of its serial console (a VM that stops answering leaves its reason there)."""
    lines = []
    for vm in spec.vms(vlab.lab):
        state_ = subprocess.run([*VIRSH, "domstate", spec.lab_nic(vlab.lab, vm.name)[0]],
                                capture_output=True, text=True).stdout.strip()
        neigh = subprocess.run(["ip", "neigh", "show", vm.mgmt_address], capture_output=True,
                               text=True).stdout.strip()
        ping = subprocess.run(["ping", "-c", "2", "-W", "1", vm.mgmt_address], capture_output=True).returncode
        lines.append(f"{vm.name}: domstate {state_ or '?'}; neigh {neigh or 'none'}; "
                     f"ping {'ok' if ping == 0 else 'no answer'}")
        log = Path(vm.serial_log)
        if log.exists():
            lines += [f"  {vm.name} serial: {ln}" for ln in
                      log.read_text(errors="replace").splitlines()[-25:]]
    return lines


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


def test_vagrant_lab_end_to_end(capsys, tmp_path):
    vlab = VagrantLab(model.load())
    assert not vlab.exists(), "this directory already has the lab's Vagrant VMs: not touched"
    before = host_footprint()
    started = time.monotonic()
    times: dict[str, float] = {}
    passed = False
    try:
        times["box.build"] = run(INVOKE, "box.build", timeout=900)
        times["host.up"] = run(INVOKE, "host.up", timeout=300)
        make_foreign()
        times["vagrant up"] = run("vagrant", "up", timeout=1200)
        times["provision"] = run(INVOKE, "provision", timeout=1500)
        # fresh VMs: the provisioning's own check of each node's links, addresses and routes
        # finds nothing to repair (no drift reported where there is none)
        repaired = [ln for ln in OUTPUT["invoke provision"].splitlines() if "repaired:" in ln]
        RECORD.extend(repaired)
        assert not repaired, repaired
        RECORD.extend(trust(VagrantLab(model.load())))
        times["test.connectivity"] = run(INVOKE, "test.connectivity", "--wait", "120", timeout=900,
                                         show=1)
        times["failover.green"] = run(INVOKE, "failover.green", timeout=900, show=40)
        # keepalived killed: systemd's ExecStopPost (vxlab's drop-in) removes the VIPs it cannot
        crash = tmp_path / "crash.json"
        times["failover.green --mode crash"] = run(INVOKE, "failover.green", "--mode", "crash",
                                                   "--json", str(crash), timeout=900, show=40)
        both = drills.GatewayReport.from_json(crash.read_text()).vips_on_both_s
        RECORD.append(f"crash: a VIP on both tenants for {both:.2f} s")
        assert both <= 1.0, both
        # greenVM's NIC loses its carrier (QEMU's link state, `virsh domif-setlink`): blue takes
        # over, and once the NIC is back green is master again with every container online
        times["failover.link greenVM"] = run(INVOKE, "failover.link", "greenVM", timeout=900, show=12)
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
        passed = True
    finally:
        if not passed:
            RECORD.extend(diagnose(vlab))
        t = time.monotonic()
        teardown_failed = teardown()
        times["destroy + host.down"] = time.monotonic() - t
        found = foreign_found()
        remove_foreign()
        total = time.monotonic() - started
        with capsys.disabled():
            print("\n".join(["", *RECORD, *(f"{k:28} {v:6.0f} s" for k, v in times.items()),
                             f"{'total':28} {total:6.0f} s"]), flush=True)
    assert not teardown_failed, f"{', '.join(teardown_failed)} failed (see the record above)"
    assert found == {"domain": True, "volume": True, "file": True}  # host.down left them
    assert host_footprint() == before
    assert total < BUDGET, f"took {total:.0f} s, more than {BUDGET} s"
