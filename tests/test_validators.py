"""Every rendered file through its real validator (keepalived, dhcpd, radvd, iptables-restore,
ifupdown, sysctl, sh), for both substrates. Needs root: throwaway namespaces hold the
interfaces the daemons look for; nothing touches the machine's own network namespace."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import needs_root

from lab import model, render
from lab.deployment import Deployment

pytestmark = needs_root("keepalived", "dhcpd", "radvd", "iptables-restore", "ifup", "ip")

SUBSTRATES = ["vagrant", "netns"]


@pytest.fixture
def netns():
    """A throwaway namespace with the lab's VLAN 7 bridge, deleted afterwards."""
    name = f"vxlabtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip = ["ip", "-n", name]
        subprocess.run([*ip, "link", "set", "lo", "up"], check=True)
        subprocess.run([*ip, "link", "add", "sw-vlan7", "type", "bridge"], check=True)
        subprocess.run([*ip, "link", "set", "sw-vlan7", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture(params=SUBSTRATES)
def tree(request, tmp_path):
    """The default lab rendered into tmp_path/<node>/..., with runtime paths pointing there."""
    lab = model.load()
    form = render.FORMS[request.param]
    if form.state_dir:  # netns: the files name their node's root; make that root tmp_path
        form = dataclasses.replace(form, state_dir=str(tmp_path))
    render.write(render.render(lab, Deployment.of(lab, form)), tmp_path)
    os.chmod(tmp_path, 0o755)  # keepalived refuses scripts under a world-writable path
    return request.param, tmp_path


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"{p.args}: rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def test_keepalived(tree, netns):
    substrate, root = tree
    for vm in ("blueVM", "greenVM"):
        conf = root / vm / "etc/keepalived/keepalived.conf"
        # On the VMs the scripts live in /usr/local/bin: show keepalived the rendered ones there
        # (a private mount namespace, so the machine's /usr/local/bin is untouched).
        bind = (f"mount --bind {root / vm / 'usr/local/bin'} /usr/local/bin && "
                if substrate == "vagrant" else "")
        out = ok(run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                      f"{bind}exec ip netns exec {netns} keepalived --config-test -f {conf}"]))
        for bad in ("rror", "nknown", "not found", "cannot", "Unable", "WARNING", "insecure"):
            assert bad not in out, out


def test_dhcpd(tree):
    _, root = tree
    for c in ("blueDHCP", "greenDHCP"):
        ok(run(["dhcpd", "-4", "-t", "-q", "-cf", str(root / c / "etc/dhcp/dhcpd.conf")]))


def test_radvd(tree, netns):
    _, root = tree
    for vm in ("blueVM", "greenVM"):
        ok(run(["ip", "netns", "exec", netns, "radvd", "--configtest",
                "-C", str(root / vm / "etc/radvd.conf")]))


def test_iptables_restore(tree, netns):
    _, root = tree
    for tool, f in (("iptables-restore", "rules.v4"), ("ip6tables-restore", "rules.v6")):
        rules = (root / "routerVM/etc/iptables" / f).read_text()
        ok(run(["ip", "netns", "exec", netns, tool, "--test"], input=rules))


def test_ifupdown_parses_every_interfaces_file(tree, tmp_path_factory):
    _, root = tree
    for f in sorted(root.glob("*/etc/network/interfaces")):
        state = tmp_path_factory.mktemp("ifstate")
        out = ok(run(["ifup", "--no-act", "--all", "--force", "-i", str(f),
                      "--state-dir", str(state)]))
        assert "ifup: " not in out or "error" not in out.lower(), out


def test_sysctl_files_apply_in_a_namespace(tree, netns):
    _, root = tree
    for vm in ("routerVM", "blueVM", "greenVM"):
        ok(run(["ip", "netns", "exec", netns, "sysctl", "-q", "-p", str(root / vm / "etc/sysctl.conf")]))


def test_shell_scripts_parse(tree):
    _, root = tree
    scripts = sorted(root.glob("*/usr/local/bin/*.sh")) + sorted(root.glob("*/etc/default/*"))
    assert len(scripts) == 2 * 4 + 2  # each tenant's checks, notify, notify FIFO; dhcpd's defaults
    for s in scripts:
        ok(run(["bash", "-n", str(s)]))
        first = Path(s).read_text().splitlines()[0]
        if s.suffix == ".sh":
            assert first == "#!/bin/bash"
            assert os.access(s, os.X_OK)


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
