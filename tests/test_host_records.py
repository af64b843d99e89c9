"""The records host.down works from (lab/vagrant/host/undo.py), the lab's private state dirs
(lab/vagrant/state.py) and the host's cut interface names (lab/host/names.py), on files under
tmp only: what is recorded is undone, what is not is left, whoever made it."""

from __future__ import annotations

import os

import pytest

from lab.host.names import ifname
from lab.vagrant import state
from lab.vagrant.host import undo
from lab.vagrant.host.undo import Backups, DaemonStart, Ledger, add_path, remove_paths


def test_cut_names_keep_a_hash_of_the_whole_name():
    one, two = ifname("up214-labnumberone"), ifname("up214-labnumbertwo")
    assert one != two and len(one) == len(two) == 15
    assert one.startswith("up214-labn-") and one == ifname("up214-labnumberone")  # stable
    assert ifname("up214-vxlab") == "up214-vxlab" and ifname("a" * 15) == "a" * 15  # fits: as is


def test_ledger_records_once_and_drops(tmp_path):
    led = Ledger(tmp_path / "ledger.json")
    assert led.entries() == []
    led.add("link", "up214-x", note=1)
    led.add("link", "up214-x", note=2)  # the first record wins
    led.add("netns", "ns")
    assert led.entries() == [{"kind": "link", "name": "up214-x", "note": 1},
                             {"kind": "netns", "name": "ns"}]
    led.drop("link", "up214-x")
    assert led.names("link") == [] and led.names("netns") == ["ns"]
    led.path.write_text("{not json")
    with pytest.raises(RuntimeError, match="not a record host.up wrote"):
        led.entries()


def test_backups_put_back_only_what_is_as_we_left_it(tmp_path):
    ours, theirs, made = tmp_path / "ours.conf", tmp_path / "theirs.conf", tmp_path / "made.conf"
    ours.write_text("a\n")
    theirs.write_text("b\n")
    b = Backups(tmp_path / "backup")
    for p in (ours, theirs, made):
        b.save(p)
        p.write_text("changed by us\n")
        b.left(p)
    theirs.write_text("changed by someone since\n")
    done = b.restore_all()
    assert ours.read_text() == "a\n" and not made.exists()
    assert theirs.read_text() == "changed by someone since\n"
    assert f"{theirs}: changed since host.up, left as it is" in done


def test_recorded_paths_are_removed_and_nothing_else(tmp_path):
    led = Ledger(tmp_path / "ledger.json")
    tree, empty, full, log = (tmp_path / n for n in ("run", "state", "cache", "x.log"))
    for p in (tree, empty, full, log, tmp_path / "there"):
        add_path(led, p, tree=p == tree)
    add_path(led, tmp_path / "ledger.json")  # there already: not ours, not recorded
    assert not any(e["name"].endswith("ledger.json") for e in led.entries())
    for d in (tree / "sub", empty, full):
        d.mkdir(parents=True)
    (tree / "sub/sock").write_text("")
    (full / "foreign.img").write_text("theirs")  # someone's file in a dir we made
    log.write_text("ours")
    done = remove_paths(led)
    assert not tree.exists() and not empty.exists() and not log.exists()
    assert (full / "foreign.img").read_text() == "theirs"
    assert f"{full}: not empty, left as it is" in done
    assert led.entries("path") == []


def test_a_recorded_path_now_a_symlink_is_left(tmp_path):
    led = Ledger(tmp_path / "ledger.json")
    add_path(led, tmp_path / "x")
    (tmp_path / "target").write_text("keep")
    (tmp_path / "x").symlink_to(tmp_path / "target")
    remove_paths(led)
    assert (tmp_path / "x").is_symlink() and (tmp_path / "target").read_text() == "keep"


def test_a_daemons_start_is_recorded_by_name(tmp_path, monkeypatch):
    """As libvirtd's first start: rewrites packaged files in etc, makes its runtime dir, a log
    and a state dir. Whatever happens after the start is not recorded."""
    etc, run, log, lib = (tmp_path / n for n in ("etc", "run", "log", "lib"))
    for d in (etc / "nwfilter", log, lib):
        d.mkdir(parents=True)
    (etc / "nwfilter/a.xml").write_text("packaged a\n")
    (etc / "nwfilter/b.xml").write_text("packaged b\n")
    monkeypatch.setattr(DaemonStart, "ETC", etc)
    monkeypatch.setattr(DaemonStart, "DIRS", (etc, lib, log, run))
    monkeypatch.setattr(DaemonStart, "RUNTIME", (run, log))
    led, backups = Ledger(tmp_path / "ledger.json"), Backups(tmp_path / "backup")
    start = DaemonStart(led, backups)
    before = start.before()
    # the start
    (etc / "nwfilter/a.xml").write_text("packaged a\n<uuid/>\n")
    (etc / "secrets").mkdir()
    (run / "qemu").mkdir(parents=True)
    (run / "libvirt-sock").write_text("")
    (log / "libvirtd.log").write_text("started\n")
    (lib / "save").mkdir()
    made = start.after(before)
    assert str(etc / "nwfilter/a.xml") in made and str(etc / "nwfilter/b.xml") not in made
    assert {e["name"] for e in led.entries("path")} == {
        str(etc / "secrets"), str(run), str(log / "libvirtd.log"), str(lib / "save")}
    # later, not the start's: someone's domain, someone's edit, someone's file in a state dir
    (etc / "qemu.xml").write_text("a foreign domain\n")
    (etc / "nwfilter/b.xml").write_text("edited by someone\n")
    (lib / "save/foreign.save").write_text("theirs")
    remove_paths(led)
    done = backups.restore_all()
    assert (etc / "nwfilter/a.xml").read_text() == "packaged a\n"  # as it was before the start
    assert (etc / "nwfilter/b.xml").read_text() == "edited by someone\n"
    assert (etc / "qemu.xml").exists() and (lib / "save/foreign.save").exists()
    assert not (etc / "secrets").exists() and not run.exists() and not (log / "libvirtd.log").exists()
    assert done == [f"restored {etc / 'nwfilter/a.xml'}"]


def test_digest_names_what_a_path_is(tmp_path):
    assert undo.digest(tmp_path / "none") is None and undo.digest(tmp_path) == "dir"
    (tmp_path / "l").symlink_to("/x")
    assert undo.digest(tmp_path / "l") == "link:/x"


def test_private_dirs(tmp_path):
    d = state.private_dir(tmp_path / "p")
    assert d.stat().st_mode & 0o777 == 0o700 and d.stat().st_uid == os.geteuid()
    assert state.private_dir(d) == d  # there, and right: used
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    (tmp_path / "file").write_text("")
    (tmp_path / "link").symlink_to(d)
    for name, why in (("open", "mode 0755"), ("file", "not a directory"), ("link", "a symlink")):
        with pytest.raises(RuntimeError, match=why):
            state.private_dir(tmp_path / name)
    if os.geteuid() == 0:
        (tmp_path / "other").mkdir(mode=0o700)
        os.chown(tmp_path / "other", 65534, 65534)
        with pytest.raises(RuntimeError, match="owned by uid 65534"):
            state.private_dir(tmp_path / "other")


def test_lab_dirs_are_private_at_each_level(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "RUN", tmp_path / "run")
    d = state.run_dir("lab", "serial")
    for p in (tmp_path / "run", tmp_path / "run/lab", d):
        assert p.stat().st_mode & 0o777 == 0o700
