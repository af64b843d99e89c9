"""Every rendered file through its real validator (keepalived, dhcpd or kea-dhcp4 and
kea-ctrl-agent, radvd, iptables-restore, ifupdown, sysctl, sh), for both substrates. Needs
root: throwaway namespaces hold the interfaces the daemons look for; nothing touches the
machine's own network namespace.

The validators are functions of a rendered tree, so that tests/test_render.py's property test
sends the labs it makes through them too."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import needs_root

from lab import model, render
from lab.deployment import Deployment

TOOLS = ("keepalived", "dhcpd", "kea-dhcp4", "kea-ctrl-agent", "radvd", "iptables-restore", "ifup", "ip")
pytestmark = needs_root(*TOOLS)

SUBSTRATES = ["vagrant", "netns"]


@contextlib.contextmanager
def namespace(bridge: str) -> Iterator[str]:
    """A throwaway namespace with the lab's VLAN 7 bridge, deleted afterwards."""
    name = f"vxlabtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip = ["ip", "-n", name]
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        subprocess.run([*ip, "link", "add", "name", bridge, "type", "bridge"], check=True)
        subprocess.run([*ip, "link", "set", "dev", bridge, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def render_tree(lab: model.Lab, substrate: str, root: Path) -> None:
    """The lab rendered into root/<node>/..., with runtime paths pointing there."""
    form = render.FORMS[substrate]
    if form.state_dir:  # netns: the files name their node's root; make that root `root`
        form = dataclasses.replace(form, state_dir=str(root))
    render.write(render.render(lab, Deployment.of(lab, form)), root)
    os.chmod(root, 0o755)  # keepalived refuses scripts under a world-writable path


@pytest.fixture
def netns():
    with namespace(model.load().shared_vlan.bridge) as ns:
        yield ns


@pytest.fixture(params=SUBSTRATES)
def tree(request, tmp_path):
    render_tree(model.load(), request.param, tmp_path)
    return request.param, tmp_path


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"{p.args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def tenant_vms(lab: model.Lab) -> list[str]:
    return [t.vm for t in lab.tenants.values()]


# -- the validators ------------------------------------------------------------------------------

def keepalived(lab: model.Lab, substrate: str, root: Path, netns: str) -> None:
    for vm in tenant_vms(lab):
        conf = root / vm / "etc/keepalived/keepalived.conf"
        if lab.vrrp.script_user != "root":
            # keepalived 2.2.7's --config-test kills itself (SIGTERM, no word) once it has looked
            # at the scripts as a non-root script_user, though the daemon runs them as that user
            # (tried with nobody): the test reads a copy that says root.
            text = conf.read_text()
            assert f"script_user {lab.vrrp.script_user}\n" in text
            conf = conf.with_name("keepalived.config-test.conf")
            conf.write_text(text.replace(f"script_user {lab.vrrp.script_user}\n", "script_user root\n"))
        # On the VMs the scripts live in /usr/local/bin: show keepalived the rendered ones there
        # (a private mount namespace, so the machine's /usr/local/bin is untouched).
        bind = (f"mount --bind {root / vm / 'usr/local/bin'} /usr/local/bin && "
                if substrate == "vagrant" else "")
        out = ok(run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                      f"{bind}exec ip netns exec {netns} keepalived --config-test -f {conf}"]))
        for bad in ("rror", "nknown", "not found", "cannot", "Unable", "WARNING", "insecure"):
            assert bad not in out, out


def dhcpd(lab: model.Lab, root: Path) -> None:
    for t in lab.tenants.values():
        ok(run(["dhcpd", "-4", "-t", "-q", "-cf", str(root / t.dhcp_server.name / "etc/dhcp/dhcpd.conf")]))


def kea(lab: model.Lab, root: Path) -> None:
    """kea-dhcp4 -t loads the hook libraries; kea-ctrl-agent -t checks the agent's file."""
    for t in lab.tenants.values():
        conf = root / t.dhcp_server.name / "etc/kea"
        out = ok(run(["kea-dhcp4", "-t", str(conf / "kea-dhcp4.conf")]))
        assert "libdhcp_ha.so successfully closed" in out, out
        out = ok(run(["kea-ctrl-agent", "-t", str(conf / "kea-ctrl-agent.conf")]))
        assert "Configuration check successful" in out, out
        if lab.dhcp.v6 == "stateful":
            # a copy whose data-directory exists (the node's is made when the server starts)
            text = (conf / "kea-dhcp6.conf").read_text()
            data = re.search(r'"data-directory": "([^"]+)"', text).group(1)
            (conf / "data").mkdir(exist_ok=True)
            copy = conf / "kea-dhcp6.test.conf"
            copy.write_text(text.replace(f'"{data}"', f'"{conf / "data"}"'))
            out = ok(run(["kea-dhcp6", "-t", str(copy)]))
            assert "libdhcp_ha.so successfully closed" in out, out


def dhcp_servers(lab: model.Lab, root: Path) -> None:
    kea(lab, root) if lab.dhcp.server == "kea" else dhcpd(lab, root)


def radvd(lab: model.Lab, root: Path, netns: str) -> None:
    for vm in tenant_vms(lab):
        ok(run(["ip", "netns", "exec", netns, "radvd", "--configtest",
                "-C", str(root / vm / "etc/radvd.conf")]))


def iptables_restore(lab: model.Lab, root: Path, netns: str) -> None:
    for tool, f in (("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")):
        rules = (root / lab.router.vm / "etc/iptables" / f).read_text()
        ok(run(["ip", "netns", "exec", netns, tool, "--test"], input=rules))


def ifupdown(root: Path, state: Path) -> None:
    for i, f in enumerate(sorted(root.glob("*/etc/network/interfaces"))):
        (state / str(i)).mkdir()
        out = ok(run(["ifup", "--no-act", "--all", "--force", "-i", str(f),
                      "--state-dir", str(state / str(i))]))
        assert "ifup: " not in out or "error" not in out.lower(), out


def sysctl(lab: model.Lab, root: Path, netns: str) -> None:
    for vm in (lab.router.vm, *tenant_vms(lab)):
        ok(run(["ip", "netns", "exec", netns, "sysctl", "-q", "-p", str(root / vm / "etc/sysctl.conf")]))


def shell_scripts(root: Path, dhcpd_defaults: int = 2) -> None:
    scripts = sorted(root.glob("*/usr/local/bin/*.sh")) + sorted(root.glob("*/etc/default/*"))
    probers = sorted(root.glob("*/usr/local/bin/vxlab_uplink_prober.sh"))  # the fast profile's
    assert len(probers) in (0, 2)
    # tenants' checks, notify, notify FIFO, VIP release; dhcpd's defaults (ISC's servers)
    assert len(scripts) - len(probers) == 2 * 5 + dhcpd_defaults
    for s in scripts:
        ok(run(["bash", "-n", str(s)]))
        first = Path(s).read_text().splitlines()[0]
        if s.suffix == ".sh":
            assert first == "#!/bin/bash"
            assert os.access(s, os.X_OK)


def validate(lab: model.Lab, substrate: str, root: Path, state: Path) -> None:
    """Every validator on a rendered tree (each in its own namespace: sysctl changes it)."""
    with namespace(lab.shared_vlan.bridge) as netns:
        keepalived(lab, substrate, root, netns)
        radvd(lab, root, netns)
        iptables_restore(lab, root, netns)
    with namespace(lab.shared_vlan.bridge) as netns:
        sysctl(lab, root, netns)
    dhcp_servers(lab, root)
    ifupdown(root, state)
    shell_scripts(root, 2 if lab.dhcp.server == "isc" else 0)


# -- the default lab -----------------------------------------------------------------------------

def test_keepalived(tree, netns):
    keepalived(model.load(), *tree, netns)


def test_dhcpd(tree):
    dhcpd(model.load(), tree[1])


@pytest.mark.parametrize("v6", ["slaac", "stateful"])
@pytest.mark.parametrize("mode", ["load-balancing", "hot-standby"])
@pytest.mark.parametrize("substrate", SUBSTRATES)
def test_kea(substrate, mode, v6, tmp_path, netns):
    """A Kea lab's servers, light containers in the embedded lab (their paths per node); with
    dhcp.v6 stateful kea-dhcp6 too, and radvd's managed flag."""
    lab = model.load(sets=["dhcp.server=kea", f"dhcp.kea.mode={mode}", f"dhcp.v6={v6}",
                           "containers.driver=netns"])
    render_tree(lab, substrate, tmp_path)
    kea(lab, tmp_path)
    radvd(lab, tmp_path, netns)
    for vm in tenant_vms(lab):
        managed = "AdvManagedFlag on;" in (tmp_path / vm / "etc/radvd.conf").read_text()
        assert managed == (v6 == "stateful")


def test_radvd(tree, netns):
    radvd(model.load(), tree[1], netns)


def test_iptables_restore(tree, netns):
    iptables_restore(model.load(), tree[1], netns)


def test_ifupdown_parses_every_interfaces_file(tree, tmp_path_factory):
    ifupdown(tree[1], tmp_path_factory.mktemp("ifstate"))


def test_sysctl_files_apply_in_a_namespace(tree, netns):
    sysctl(model.load(), tree[1], netns)


def test_shell_scripts_parse(tree):
    shell_scripts(tree[1])


def test_rt_tables_names_resolve(tree, netns, tmp_path):
    """The router's table names work through `ip netns exec`'s /etc/netns overlay."""
    _, root = tree
    made_etc_netns = not Path("/etc/netns").exists()
    etc = Path("/etc/netns") / netns / "iproute2"
    etc.mkdir(parents=True)
    try:
        for f in Path("/etc/iproute2").iterdir():
            (etc / f.name).write_bytes(f.read_bytes()) if f.is_file() else None
        (etc / "rt_tables").write_text((root / "routerVM/etc/iproute2/rt_tables").read_text())
        ok(run(["ip", "netns", "exec", netns, "ip", "route", "add", "unreachable", "default",
                "table", "blue"]))
        out = ok(run(["ip", "-n", netns, "route", "show", "table", "220"]))
        assert "unreachable default" in out
    finally:
        subprocess.run(["rm", "-rf", str(Path("/etc/netns") / netns)], check=True)
        if made_etc_netns:
            Path("/etc/netns").rmdir()


def test_keepalived_fast_profile(tmp_path):
    """The fast profile's keepalived.conf (0.1 s adverts, track files) as keepalived reads it."""
    lab = model.load()
    lab = lab.model_copy(update={"vrrp": lab.vrrp.model_copy(update={"profile": "fast"})})
    render_tree(lab, "netns", tmp_path)
    with namespace(lab.shared_vlan.bridge) as netns:
        keepalived(lab, "netns", tmp_path, netns)
    shell_scripts(tmp_path)
