"""The tenants' keepalived notification: keepalived writes every transition, in order, to a
FIFO; the rendered FIFO script hands the sync group's to the seed's notify script one at a
time, so the status file ends with the last state (forked notify scripts could finish out of
order). The rendered scripts run here for real, under a temporary root."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lab import model, render
from lab.deployment import Deployment
from lab.roles import tenant

# in keepalived's format (as it wrote to a FIFO in a scratch namespace), with the lab's names
LINES = ['INSTANCE "VXLAN_7_IPv4" BACKUP 220', 'INSTANCE "VXLAN_7_IPv6" BACKUP 220',
         'GROUP "vrrp_group" BACKUP 0', 'INSTANCE "VXLAN_7_IPv4" MASTER 220',
         'INSTANCE "VXLAN_7_IPv6" MASTER 220', 'GROUP "vrrp_group" MASTER 0',
         'INSTANCE "VXLAN_7_IPv4" BACKUP 220', 'GROUP "vrrp_group" BACKUP 0']


def _rendered_under(root: Path) -> Path:
    """blueVM's files written under root/blueVM, with paths pointing there."""
    lab = model.load()
    form = render.Form("test", ovs=False, bridge_nf_off=True, state_dir=str(root))
    files = render.render_node(lab, lab.node("blueVM"), Deployment.of(lab, form))
    render.write({"blueVM": files}, root)
    (root / "blueVM/var/run").mkdir(parents=True)
    return root / "blueVM"


def test_the_fifo_script_passes_the_group_transitions_in_order(tmp_path):
    node = _rendered_under(tmp_path)
    conf = (node / "etc/keepalived/keepalived.conf").read_text()
    fifo = node / "run/keepalived_notify.fifo"
    script = node / "usr/local/bin/keepalived_notify_fifo.sh"
    assert f"vrrp_notify_fifo {fifo}\n" in conf
    assert f'vrrp_notify_fifo_script "{script}"\n' in conf
    assert "\n        notify " not in conf  # the seed's notify runs from the FIFO script only

    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    reader = subprocess.Popen([str(script), str(fifo)])  # as keepalived starts it: FIFO last
    with open(fifo, "w") as w:  # keepalived, writing
        for line in LINES:
            w.write(line + "\n")
    assert reader.wait(timeout=30) == 0  # the writer closed: the script ends

    status = (node / "var/run/keepalived_status").read_text()
    assert status == "GROUP vrrp_group has transitioned to the BACKUP state with a priority of 0\n"
    assert tenant.vrrp_state(status) == "BACKUP"
    history = (node / "var/run/keepalived_transitions").read_text().splitlines()
    assert [line.split()[1:] for line in history] == [
        ["GROUP", "vrrp_group", s, "0"] for s in ("BACKUP", "MASTER", "BACKUP")]


def test_becoming_master_reloads_radvd_for_an_ra_at_once(tmp_path):
    node = _rendered_under(tmp_path)
    fifo, hups = node / "run/keepalived_notify.fifo", node / "hups"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    # radvd's stand-in: counts its SIGHUPs (a reload: radvd then sends an RA at once)
    radvd = subprocess.Popen(["bash", "-c", f"trap 'echo hup >> {hups}' HUP; "
                                            "while :; do sleep 0.05; done"])
    try:
        (node / "run/radvd.pid").write_text(f"{radvd.pid}\n")
        reader = subprocess.Popen([str(node / "usr/local/bin/keepalived_notify_fifo.sh"), str(fifo)])
        with open(fifo, "w") as w:
            w.write("\n".join(LINES) + "\n")
        assert reader.wait(timeout=30) == 0
        for _ in range(40):
            if hups.exists():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        assert hups.read_text() == "hup\n"  # one sync group MASTER, one reload; none for BACKUP
    finally:
        radvd.kill()
        radvd.wait()


def test_no_radvd_running_does_not_stop_the_notifications(tmp_path):
    node = _rendered_under(tmp_path)
    fifo = node / "run/keepalived_notify.fifo"
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    reader = subprocess.Popen([str(node / "usr/local/bin/keepalived_notify_fifo.sh"), str(fifo)])
    with open(fifo, "w") as w:
        w.write('GROUP "vrrp_group" MASTER 0\n')
    assert reader.wait(timeout=30) == 0
    assert tenant.vrrp_state((node / "var/run/keepalived_status").read_text()) == "MASTER"
