"""The box recipe (lab/vagrant/box.py) without building it: its cache key, the files it bakes
in, and the generator that names the lab's NICs by MAC from the kernel command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.vagrant import box as boxes


def _generate(cmdline: str, tmp_path: Path) -> dict[str, str]:
    """Run the box's generator against a fake /proc/cmdline and output dir."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    out = tmp_path / "network"
    script = (boxes.IFNAMES_GENERATOR.replace("/proc/cmdline", str(tmp_path / "cmdline"))
              .replace("/run/systemd/network", str(out)))
    subprocess.run(["sh", "-c", script], check=True)
    return {p.name: p.read_text() for p in sorted(out.glob("*"))} if out.exists() else {}


def test_generator_names_nics_by_mac(tmp_path):
    files = _generate("root=/dev/vda quiet vxlab.ifname=enp0s6:ba:ad:ca:fe:00:01 "
                      "vxlab.ifname=enp0s7:ba:ad:ca:fe:00:09 systemd.hostname=routerVM", tmp_path)
    assert files == {
        "10-vxlab-enp0s6.link": "[Match]\nMACAddress=ba:ad:ca:fe:00:01\n\n[Link]\nName=enp0s6\n"
                                "TransmitChecksumOffload=false\n",
        "10-vxlab-enp0s7.link": "[Match]\nMACAddress=ba:ad:ca:fe:00:09\n\n[Link]\nName=enp0s7\n"
                                "TransmitChecksumOffload=false\n",
    }


def test_generator_without_lab_nics_writes_nothing(tmp_path):
    assert _generate("root=/dev/vda quiet vxlab.ifname=", tmp_path) == {}


def test_recipe_key_and_box_names():
    b = boxes.box_for("vxlab-bookworm-aaaa.tar", Path("/c"))
    assert b.key == boxes.recipe_key(Path("vxlab-bookworm-aaaa.tar")) and len(b.key) == 16
    assert b.dir == Path(f"/c/bookworm-{b.key}") and b.name == f"vxlab/bookworm-{b.key}"
    assert (b.file.name, b.kernel.name, b.initrd.name) == ("vxlab.box", "vmlinuz", "initrd.img")


def test_the_lab_packages_are_baked_in():
    lab_needs = {"openvswitch-switch", "keepalived", "radvd", "ifupdown", "iptables", "conntrack", "lxd",
                 "lxd-client", "btrfs-progs", "tcpdump", "iputils-ping", "ndisc6", "curl", "sudo",
                 "openssh-server", "linux-image-amd64", "ethtool"}
    assert lab_needs <= set(boxes.PACKAGES)


def test_management_nic_is_networkds_and_routes_nothing():
    net = boxes.FILES["/etc/systemd/network/10-vxlab-mgmt.network"][0]
    assert "Name=eth0" in net and "UseGateway=no" in net and "UseRoutes=no" in net
    # ifupdown's file has no eth0: provisioning's `ifdown -a` cannot cut Vagrant's SSH
    interfaces = boxes.FILES["/etc/network/interfaces"][0]
    assert "eth0" not in interfaces.replace("eth0 is", "") and "allow-hotplug" not in interfaces
    assert boxes.FILES["/etc/sudoers.d/vagrant"][1] == 0o440


def test_overlay_holds_files_and_no_key(tmp_path):
    overlay = boxes._Builder(tmp_path, Path("img.tar"), lambda _: None)._overlay()
    gen = overlay / "etc/systemd/system-generators/vxlab-ifnames"
    assert gen.stat().st_mode & 0o777 == 0o755
    assert (overlay / "usr/local/sbin/vxlab-access").stat().st_mode & 0o777 == 0o755
    assert overlay.stat().st_mode & 0o777 == 0o755  # sync-in gives "/" this mode
    assert not list(overlay.rglob("authorized_keys")) and not list(overlay.rglob("ssh_host_*"))


def test_sshd_takes_keys_only_and_root_by_key():
    conf = boxes.FILES["/etc/ssh/sshd_config.d/vxlab.conf"][0].splitlines()
    for line in ("PasswordAuthentication no", "KbdInteractiveAuthentication no",
                 "PermitRootLogin prohibit-password", "AuthenticationMethods publickey"):
        assert line in conf
    hooks = " ".join(boxes.HOOKS)
    assert "chpasswd" not in hooks and 'usermod -p "*" vagrant' in hooks  # no password at all
    assert 'rm -f "$1"/etc/ssh/ssh_host_*' in hooks  # every VM makes its own host key
    assert "systemctl enable vxlab-access.service" in hooks


def _access(cmdline: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the box's vxlab-access against a fake /proc/cmdline, /etc/ssh and homes."""
    (tmp_path / "cmdline").write_text(cmdline + "\n")
    (tmp_path / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    script = (boxes.ACCESS.replace("/proc/cmdline", str(tmp_path / "cmdline"))
              .replace("/etc/ssh/", f"{tmp_path}/etc/ssh/")
              .replace('$(getent passwd "$user" | cut -d: -f6)', f"{tmp_path}/home/$user")
              .replace('-o "$user" -g "$user" ', "")
              .replace('chown "$user:$user" "$ssh/.authorized_keys.new" && ', ""))
    assert script.count(str(tmp_path)) >= 5  # every host path replaced
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True)


KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIGlK2xHvKf3b2S0c4jI9mTnB2v0Z7dYqGm1cTQ2oQ0aX"


def test_access_lets_the_lab_key_in_and_listens_on_the_management_address(tmp_path):
    r = _access(f"root=/dev/vda quiet vxlab.mgmt=192.168.121.11 vxlab.sshkey={KEY}", tmp_path)
    assert r.returncode == 0, r.stderr
    for user in ("root", "vagrant"):
        keys = tmp_path / "home" / user / ".ssh/authorized_keys"
        assert keys.read_text() == f"ssh-ed25519 {KEY} vxlab\n"
        assert keys.stat().st_mode & 0o777 == 0o600 and keys.parent.stat().st_mode & 0o777 == 0o700
    listen = tmp_path / "etc/ssh/sshd_config.d/vxlab-listen.conf"
    assert listen.read_text() == "ListenAddress 192.168.121.11\n"
    host_key = tmp_path / "etc/ssh/ssh_host_ed25519_key"
    made = host_key.read_text()
    assert _access(f"vxlab.mgmt=192.168.121.11 vxlab.sshkey={KEY}", tmp_path).returncode == 0
    assert host_key.read_text() == made  # made once, at the first boot


@pytest.mark.parametrize("cmdline", [
    "root=/dev/vda vxlab.mgmt=192.168.121.11",  # no key: nobody gets in
    f"vxlab.sshkey={KEY} ",  # no address: sshd would listen everywhere
    "vxlab.mgmt=192.168.121.11 vxlab.sshkey=AAAA;reboot",
    f"vxlab.mgmt=0.0.0.0\\nPort=2 vxlab.sshkey={KEY}",
    "vxlab.mgmt=192.168.121.11 vxlab.sshkey=*",
])
def test_access_refuses_a_missing_or_strange_value(tmp_path, cmdline):
    r = _access(cmdline, tmp_path)
    assert r.returncode == 1 and "vxlab-access: no valid" in r.stderr
    assert not (tmp_path / "home").exists()
    assert not (tmp_path / "etc/ssh/sshd_config.d/vxlab-listen.conf").exists()
