"""The fast timing profile (`vrrp.profile: fast`): 0.1 s VRRPv3 adverts, keepalived tracking a
file that a long-running prober per family writes, 10 ms drill probes; refused on emulated VMs
unless forced; the seed profile's files unchanged. The prober script runs here for real,
under a temporary root, with a stand-in `ping` that prints what iputils' ping prints."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lab import model, render
from lab.deployment import FORCE_FAST, Deployment, ProfileRefused
from lab.roles import Target, tenant


def fast_lab() -> model.Lab:
    lab = model.load()
    return lab.model_copy(update={"vrrp": lab.vrrp.model_copy(update={"profile": "fast"})})


def test_the_seed_profile_is_the_default():
    lab = model.load()
    assert lab.vrrp.profile == "seed"
    d = Deployment.of(lab, "netns")
    assert (d.profile, d.prober, d.probe_interval, d.timing.advert_int) == ("seed", None, 0.05, 1)


def test_fast_profile_files_differ_in_keepalived_and_the_prober_only():
    lab = fast_lab()
    fast = Deployment.of(lab, "netns")
    assert (fast.profile, fast.probe_interval, fast.timing.advert_int) == ("fast", 0.01, 0.1)
    assert fast.master_down(lab, "blue") == pytest.approx(0.3 + 36 / 256 * 0.1)
    seed, files = render.render(model.load(), "netns"), render.render(lab, fast)
    changed = {(n, p) for n, fs in files.items() for p in fs if fs[p] != seed[n].get(p)}
    assert changed == {(vm, p) for vm in ("blueVM", "greenVM") for p in (
        "/etc/keepalived/keepalived.conf", tenant.PROBER, tenant.PROBER_UNIT)}
    conf = files["greenVM"]["/etc/keepalived/keepalived.conf"].text
    assert "advert_int 0.1\n" in conf and "vrrp_script" not in conf and "track_script" not in conf
    for fam in ("ipv4", "ipv6"):
        assert (f"vrrp_track_file keepalived_track_{fam} {{\n"
                f'        file "/run/vxlab/vxlab/greenVM/run/keepalived_track_{fam}"\n'
                "        weight 0\n") in conf
    assert "        track_file {\n                keepalived_track_ipv4\n" in conf


def test_the_fast_timers_come_from_the_lab_file():
    lab = fast_lab()
    timers = lab.vrrp.fast.model_copy(update={"advert_ms": 50, "probe_ms": 20, "misses": 5, "replies": 7})
    lab = lab.model_copy(update={"vrrp": lab.vrrp.model_copy(update={"fast": timers})})
    d = Deployment.of(lab, "netns")
    assert d.master_down(lab, "blue") == pytest.approx(3 * 0.05 + 36 / 256 * 0.05)
    files = render.render(lab, d)["blueVM"]
    assert "advert_int 0.05\n" in files["/etc/keepalived/keepalived.conf"].text
    prober = files[tenant.PROBER].text
    assert "-i 0.02 " in prober and "$missed -ge 5 ]" in prober and "$answered -ge 7 ]" in prober


def test_the_tenant_runs_its_probers_first():
    lab = fast_lab()
    d = Deployment.of(lab, "netns")
    t = Target.of(lab, lab.node("greenVM"), None, d)
    t.node = type("N", (), {"path": staticmethod(lambda p: "/r" + p)})()
    names = [s.name for s in tenant.services(t)]
    assert names == ["uplink-prober-ipv4", "uplink-prober-ipv6", "radvd", "keepalived"]
    seed = Target.of(lab, lab.node("greenVM"), None, Deployment.of(model.load(), "netns"))
    seed.node = t.node
    assert [s.name for s in tenant.services(seed)] == ["radvd", "keepalived"]


def test_fast_is_refused_on_emulated_vms_unless_forced(monkeypatch):
    lab = fast_lab()
    monkeypatch.delenv(FORCE_FAST, raising=False)
    with pytest.raises(ProfileRefused, match="flap under QEMU's emulation.*VXLAB_FORCE_FAST=1"):
        Deployment.of(lab, "vagrant", emulated=True)
    assert Deployment.of(lab, "vagrant").profile == "fast"  # VMs with KVM
    monkeypatch.setenv(FORCE_FAST, "1")
    assert Deployment.of(lab, "vagrant", emulated=True).timing.advert_int == 0.1


FAKE_PING = """#!/bin/bash
# iputils ping's lines: a header, replies, -O's misses; then it waits, as a ping keeps going
echo "PING 9.9.9.9 (9.9.9.9) 56(84) bytes of data."
for x in {plan}; do
    if [ "$x" = r ]; then echo "64 bytes from 9.9.9.9: icmp_seq=1 ttl=63 time=0.1 ms"
    else echo "no answer yet for icmp_seq=1"; fi
done
exec sleep 30
"""


@pytest.mark.parametrize("plan,expected", [
    ("", "1"),                         # nothing answered yet: the tenant is not fit
    ("r" * 9, "1"),                    # one reply short
    ("r" * 10, "0"),
    ("r" * 10 + "mm", "0"),            # two misses are no fault
    ("r" * 10 + "mmm", "1"),
    ("r" * 10 + "mmm" + "r" * 9, "1"),
    ("r" * 10 + "mmm" + "r" * 10, "0"),
    ("r" * 10 + "mmrmm" + "r", "0"),   # misses must come in a row
])
def test_the_prober_writes_the_track_file(tmp_path, plan, expected):
    lab = fast_lab()
    form = render.Form("test", ovs=False, bridge_nf_off=True, state_dir=str(tmp_path))
    files = render.render_node(lab, lab.node("greenVM"), Deployment.of(lab, form))
    render.write({"greenVM": files}, tmp_path)
    node = tmp_path / "greenVM"
    (node / "run").mkdir()
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "ping").write_text(FAKE_PING.format(plan=" ".join(plan)))
    (bin_ / "ping").chmod(0o755)
    script = node / tenant.PROBER.lstrip("/")
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    p = subprocess.Popen(["bash", str(script), "ipv4"], env={"PATH": f"{bin_}:/usr/bin:/bin"},
                         start_new_session=True)
    try:
        track = node / "run/keepalived_track_ipv4"
        time.sleep(0.5)
        assert track.read_text() == expected + "\n"
    finally:
        subprocess.run(["kill", "--", f"-{p.pid}"], check=False)
        p.wait(timeout=5)


def test_the_unit_runs_the_prober_per_family():
    unit = render.render(fast_lab(), "vagrant")["blueVM"][tenant.PROBER_UNIT].text
    assert f"ExecStart={tenant.PROBER} %i\n" in unit and "Before=keepalived.service" in unit
    assert Path(tenant.PROBER).name in unit
