"""Reaching a lab's other hosts (lab/vagrant/hosts.py) without touching any: how SSH is set up,
what the other host is given, and what the remote side refuses. tests/e2e/test_hosts.py runs it."""

from __future__ import annotations

import io
import subprocess
import sys

from paramiko import RejectPolicy

from lab import model
from lab.vagrant import hosts

SPLIT = ["hosts={here: {endpoint: 10.255.0.1, underlay_mtu: 9108, nic: eth1}, "
         "far: {ssh: {user: vxlab, address: 192.0.2.7, port: 2222}, endpoint: 10.255.0.2, "
         "underlay_mtu: 9108, nic: eth1}}", "tenants.green.host=far"]


def test_a_remote_host_key_must_be_known_and_only_the_given_key_is_offered(tmp_path):
    lab = model.load(model.DEFAULT_LAB, SPLIT)
    known = tmp_path / "known_hosts"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")], check=True)
    kind, b64, *_ = (tmp_path / "hk.pub").read_text().split()
    known.write_text(f"[192.0.2.7]:2222 {kind} {b64}\n")
    c = hosts.connect(lab, "far", hosts.Reach(identity=tmp_path / "key", known_hosts=known))
    assert (c.host, c.user, c.port) == ("192.0.2.7", "vxlab", 2222)
    assert isinstance(c.client._policy, RejectPolicy)  # Fabric's own default accepts any key
    assert list(c.client.get_host_keys()) == ["[192.0.2.7]:2222"]
    assert c.connect_kwargs["key_filename"] == [str(tmp_path / "key")] and not c.connect_kwargs["allow_agent"]
    assert hosts.remote_hosts(lab) == ["far"]


def test_the_other_host_gets_the_lab_as_validated_here():
    lab = model.load(model.DEFAULT_LAB, [*SPLIT, "tenants.blue.clients=3"])
    again = model.parse(hosts.description(lab))
    assert again == lab


def _main(monkeypatch, capsys, text: str, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    code = hosts.main(list(argv))
    return code, capsys.readouterr().err


def test_the_remote_side_refuses_what_it_cannot_trust(monkeypatch, capsys):
    lab = model.load(model.DEFAULT_LAB, SPLIT)
    good = hosts.description(lab)
    assert _main(monkeypatch, capsys, good, "up")[0] == 2
    assert _main(monkeypatch, capsys, good, "reboot", "far")[0] == 2
    code, err = _main(monkeypatch, capsys, good, "up", "here")  # this machine: not over SSH
    assert code == 2 and "no host of lab 'vxlab' reached over SSH" in err
    code, err = _main(monkeypatch, capsys, good.replace("user: vxlab", "user: 'x; reboot'"), "up", "far")
    assert code == 2 and "hosts.far.ssh.user: should be a user name" in err
