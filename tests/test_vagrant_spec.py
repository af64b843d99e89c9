"""The Vagrantfile's input (lab.vagrant.spec) comes from the lab description, and the Vagrantfile
that consumes it passes `vagrant validate`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lab import model
from lab.vagrant import box as boxes
from lab.vagrant import spec

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def lab() -> model.Lab:
    return model.load()


def test_vms_come_from_the_lab(lab):
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    names = [vm.name for vm in s.vms]
    assert names == [lab.router.vm, *(t.vm for t in lab.tenants.values())]
    by = {vm.name: vm for vm in s.vms}
    assert (by[lab.router.vm].memory, by[lab.router.vm].cpus) == (768, 1)
    assert (by["blueVM"].memory, by["blueVM"].cpus) == (1536, 2)
    router_nic = by["routerVM"].nics[0]
    assert (router_nic.name, router_nic.portgroup, router_nic.vlans) == ("enp0s6", "trunk", (214, 220, 221))
    assert [(vm.nics[0].portgroup, vm.nics[0].vlans) for vm in s.vms[1:]] == [("vlan220", (220,)),
                                                                               ("vlan221", (221,))]
    assert {nic.mtu for vm in s.vms for nic in vm.nics} == {lab.shared_vlan.vxlan.underlay_mtu}


def test_macs_names_and_cmdline(lab):
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    macs = [vm.nics[0].mac for vm in s.vms]
    assert macs == ["ba:ad:ca:fe:00:01", "ba:ad:ca:fe:00:02", "ba:ad:ca:fe:00:03"]
    for vm in s.vms:
        assert f"vxlab.ifname=enp0s6:{vm.nics[0].mac}" in vm.cmdline.split()
        assert f"systemd.hostname={vm.name}" in vm.cmdline.split()
        assert "net.ifnames=0" in vm.cmdline.split()


def test_switch_and_management(lab):
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    assert s.switch.bridge == "dsw-host" and s.switch.name == "vxlab-dsw-host"
    assert s.switch.portgroups == {"trunk": (214, 220, 221), "vlan220": (220,), "vlan221": (221,)}
    assert s.management.name == "vxlab-mgmt"
    assert s.upstream_vlan == 214
    assert s.cpu_mode == "custom" and s.driver == "qemu"
    assert spec.spec(lab, box=boxes.Box("k", Path("/x")), driver="kvm").cpu_mode == "host-passthrough"


def test_box_info():
    b = boxes.Box("0123456789abcdef", Path("/var/cache/vxlab/boxes/bookworm-0123456789abcdef"))
    info = spec.box_info(b)
    assert info["name"] == "vxlab/bookworm-0123456789abcdef"
    assert info["url"] == "file:///var/cache/vxlab/boxes/bookworm-0123456789abcdef/vxlab.box"
    assert info["kernel"].endswith("/vmlinuz") and info["built"] is False
    assert spec.box_info(None)["built"] is False


def test_box_key_follows_the_recipe(monkeypatch):
    key = boxes.recipe_key(Path("vxlab-bookworm-aaaa.tar"))
    assert key == boxes.recipe_key(Path("/elsewhere/vxlab-bookworm-aaaa.tar"))  # the name counts
    assert key != boxes.recipe_key(Path("vxlab-bookworm-bbbb.tar"))  # a new container image
    monkeypatch.setattr(boxes, "PACKAGES", (*boxes.PACKAGES, "htop"))
    assert key != boxes.recipe_key(Path("vxlab-bookworm-aaaa.tar"))  # a new package


def test_a_changed_lab_changes_the_spec(lab_data, tmp_path):
    lab_data["tenants"]["blue"]["resources"]["memory"] = 2048
    lab_data["tenants"]["green"]["vlan"] = 230
    lab_data["tenants"]["green"]["table"] = 230
    lab_data["tenants"]["green"]["fwmark"] = 230
    f = tmp_path / "lab.yaml"
    f.write_text(yaml.safe_dump(lab_data))
    env = {**os.environ, "VXLAB_LAB": str(f), "VXLAB_LIBVIRT_DRIVER": "qemu"}
    out = subprocess.run([sys.executable, "-m", "lab.vagrant.spec"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    assert data["driver"] == "qemu"
    blue = next(vm for vm in data["vms"] if vm["name"] == "blueVM")
    green = next(vm for vm in data["vms"] if vm["name"] == "greenVM")
    assert blue["memory"] == 2048
    assert green["nics"][0]["portgroup"] == "vlan230"
    assert data["switch"]["portgroups"]["trunk"] == [214, 220, 230]


def test_the_tasks_set_reaches_the_vagrantfile_through_its_environment():
    env = {**os.environ, "VXLAB_SET": "'tenants.blue.resources.memory=2048' name=alice",
           "VXLAB_LIBVIRT_DRIVER": "qemu"}
    env.pop("VXLAB_LAB", None)
    data = json.loads(subprocess.run([sys.executable, "-m", "lab.vagrant.spec"], cwd=REPO, env=env,
                                     capture_output=True, text=True, check=True).stdout)
    assert next(vm for vm in data["vms"] if vm["name"] == "blueVM")["memory"] == 2048
    assert data["domain_prefix"].startswith("alice")
    env["VXLAB_SET"] = "tenants.blu.vlan=3"
    r = subprocess.run([sys.executable, "-m", "lab.vagrant.spec"], cwd=REPO, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 2 and "--set tenants.blu.vlan: tenants.blu is not in" in r.stderr


def test_a_bad_lab_is_refused(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_text("name: vxlab\n")
    r = subprocess.run([sys.executable, "-m", "lab.vagrant.spec"], cwd=REPO, capture_output=True,
                       text=True, env={**os.environ, "VXLAB_LAB": str(f)})
    assert r.returncode == 2 and "invalid lab description" in r.stderr


@pytest.mark.skipif(not os.environ.get("CI") and not shutil.which("vagrant"), reason="needs vagrant")
def test_vagrant_validate(tmp_path):
    # Vagrant's own state goes to tmp: the test leaves no .vagrant/ nor ~/.vagrant.d behind.
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "home"),
           "VAGRANT_DOTFILE_PATH": str(tmp_path / "dot"), "VAGRANT_CHECKPOINT_DISABLE": "1",
           "VXLAB_LIBVIRT_DRIVER": "qemu"}
    r = subprocess.run(["vagrant", "validate"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "validated successfully" in r.stdout


def test_management_addresses_are_fixed_and_sshd_is_told(lab):
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    assert [vm.mgmt_address for vm in s.vms] == ["192.168.121.11", "192.168.121.12", "192.168.121.13"]
    assert len({vm.mgmt_mac for vm in s.vms}) == 3
    for vm in s.vms:
        assert f"vxlab.mgmt={vm.mgmt_address}" in vm.cmdline.split()
    assert s.management.bridge == "vxm-vxlab"


def test_the_labs_key_goes_on_the_command_line_once_host_up_made_it(lab, tmp_path, monkeypatch):
    from lab.vagrant import access, state

    monkeypatch.setattr(state, "KEEP", tmp_path / "keep")
    monkeypatch.setattr(state, "RUN", tmp_path / "run")
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    assert s.ssh_key is None and "not made" in s.not_ready
    assert not any("vxlab.sshkey" in vm.cmdline for vm in s.vms)
    key = access.ensure_key(lab.name)
    assert key.stat().st_mode & 0o777 == 0o600 and key.parent.stat().st_mode & 0o777 == 0o700
    state.run_dir(lab.name, "serial")
    s = spec.spec(lab, box=boxes.Box("k", Path("/nowhere")), driver="qemu")
    b64 = key.with_suffix(".pub").read_text().split()[1]
    assert s.ssh_key == str(key) and s.not_ready is None
    assert all(f"vxlab.sshkey={b64}" in vm.cmdline.split() for vm in s.vms)
    assert all(vm.serial_log.startswith(f"{tmp_path}/run/vxlab/serial/") for vm in s.vms)
    (tmp_path / "run/vxlab/serial").chmod(0o755)  # not private any more: VMs are not made
    assert "mode 0755" in spec.spec(lab, box=boxes.Box("k", Path("/x")), driver="qemu").not_ready


def test_the_management_network_gives_each_vm_its_address(lab):
    from lab.vagrant.host.libvirt import Libvirt

    xml, bridge = Libvirt(lab, Path("/nowhere"), None, None, print).network_xml()["vxlab-mgmt"]
    assert bridge == "vxm-vxlab" and "<bridge name=\"vxm-vxlab\" stp='off' delay='0'/>" in xml
    for vm in spec.vms(lab):
        assert f"<host mac='{vm.mgmt_mac}' name=\"{vm.name}\" ip='{vm.mgmt_address}'/>" in xml
    assert "<range start='192.168.121.100' end='192.168.121.254'/>" in xml


DOMAIN_XML = """<domain type='qemu'><name>vxlab_greenVM</name><devices>
  <interface type='network'><mac address='52:54:00:ff:00:03'/><source network='vxlab-mgmt'/>
    <alias name='net0'/></interface>
  <interface type='bridge'><mac address='52:54:00:AB:00:03'/><source bridge='dsw-host'/>
    <virtualport type='openvswitch'/><alias name='net1'/></interface>
</devices></domain>"""


def test_the_lab_nic_is_found_by_its_mac_for_qemus_set_link():
    from lab.vagrant.lab import nic_alias

    assert nic_alias(DOMAIN_XML, "52:54:00:ab:00:03") == "net1"
    assert nic_alias(DOMAIN_XML, "52:54:00:ff:00:03") == "net0"
    with pytest.raises(RuntimeError, match="no NIC with MAC 52:54:00:00:00:09"):
        nic_alias(DOMAIN_XML, "52:54:00:00:00:09")
