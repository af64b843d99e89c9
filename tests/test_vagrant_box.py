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


def test_overlay_holds_files_and_key(tmp_path, monkeypatch):
    key = tmp_path / "vagrant.pub"
    key.write_text("ssh-rsa AAAA vagrant\n")
    monkeypatch.setattr(boxes, "INSECURE_KEY", str(key))
    overlay = boxes._Builder(tmp_path, Path("img.tar"), lambda _: None)._overlay()
    assert (overlay / "home/vagrant/.ssh/authorized_keys").read_text() == "ssh-rsa AAAA vagrant\n"
    gen = overlay / "etc/systemd/system-generators/vxlab-ifnames"
    assert gen.stat().st_mode & 0o777 == 0o755
    assert overlay.stat().st_mode & 0o777 == 0o755  # sync-in gives "/" this mode
    monkeypatch.setattr(boxes, "INSECURE_KEY", str(tmp_path / "none*.pub"))
    (tmp_path / "x").mkdir()
    with pytest.raises(RuntimeError, match="insecure public key"):
        boxes._Builder(tmp_path / "x", Path("img.tar"), lambda _: None)._overlay()
