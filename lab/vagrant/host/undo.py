"""What host.up changes, recorded by name before it does, so that host.down undoes exactly that:
the objects made (Ledger), the files changed (Backups), and what the host had before us, which
must stay (Facts). Nothing is found by looking at what is there: what is not recorded is not
touched."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path


def digest(path: Path) -> str | None:
    """What `path` is now, in a word: None (absent), a directory, a link and its target, or
    a file's SHA-256."""
    if path.is_symlink():
        return f"link:{os.readlink(path)}"
    if path.is_dir():
        return "dir"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.rename(path)  # a record is whole or absent, also after a crash


class Backups:
    """Copies of host files before we change them; put back byte for byte (mode too), unless
    changed since we left them: then they are someone else's now, and stay."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.index = where / "index.json"

    def _load(self) -> dict[str, dict]:
        try:
            return json.loads(self.index.read_text())
        except (OSError, ValueError):
            return {}

    def save(self, path: Path) -> None:
        """Remember `path` as it is now, unless remembered already (the first state wins)."""
        index = self._load()
        if str(path) in index:
            return
        self.where.mkdir(mode=0o700, parents=True, exist_ok=True)
        copy = None
        if path.exists() or path.is_symlink():
            copy = str(self.where / f"{hashlib.sha1(str(path).encode()).hexdigest()[:12]}-{path.name}")
            if path.is_symlink():
                os.symlink(os.readlink(path), copy)
            else:
                shutil.copy2(path, copy)
        index[str(path)] = {"copy": copy, "left": None}
        _write_json(self.index, index)

    def left(self, path: Path) -> None:
        """`path` is as we leave it (after our change, or our daemon's): host.down puts it
        back only if it is still so (unconfirmed, as after a crash mid-change: put back)."""
        index = self._load()
        index[str(path)]["left"] = digest(path)
        _write_json(self.index, index)

    def copy_of(self, path: Path) -> Path | None:
        copy = self._load().get(str(path), {}).get("copy")
        return Path(copy) if copy else None

    def forget(self, path: Path) -> None:
        """We did not change `path` after all: no copy kept."""
        index = self._load()
        entry = index.pop(str(path), None)
        if entry and entry["copy"]:
            Path(entry["copy"]).unlink(missing_ok=True)
        _write_json(self.index, index)

    def restore_all(self) -> list[str]:
        done = []
        for path, entry in self._load().items():
            p, copy = Path(path), entry["copy"]
            if entry["left"] is not None and digest(p) != entry["left"]:
                done.append(f"{path}: changed since host.up, left as it is")
                continue
            if p.exists() or p.is_symlink():
                p.unlink()
            if copy is not None:
                if Path(copy).is_symlink():
                    os.symlink(os.readlink(copy), p)
                else:
                    shutil.copy2(copy, p)
            done.append(f"restored {path}")
        shutil.rmtree(self.where, ignore_errors=True)
        return done


class Ledger:
    """What host.up made, and what it expects `vagrant up` to make for this lab, each by kind
    and name, written before it is made (an interrupted host.up is undone too) and dropped
    once undone. Kinds: link, netns, nft, network, pool, domain, volume, box-volumes, path
    (see Host.cleanup for how each is undone)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, kind: str | None = None) -> list[dict]:
        try:
            items = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as e:
            raise RuntimeError(f"{self.path} is not a record host.up wrote ({e}): nothing "
                               "can be removed by it") from None
        return [e for e in items if kind is None or e["kind"] == kind]

    def names(self, kind: str) -> list[str]:
        return [e["name"] for e in self.entries(kind)]

    def get(self, kind: str, name: str) -> dict | None:
        return next((e for e in self.entries(kind) if e["name"] == name), None)

    def add(self, kind: str, name: str, **data: object) -> dict:
        """Record (once: the first record wins) that we make `name`, of `kind`."""
        found = self.get(kind, name)
        if found is not None:
            return found
        entry = {"kind": kind, "name": name, **data}
        _write_json(self.path, [*self.entries(), entry])
        return entry

    def drop(self, kind: str, name: str) -> None:
        _write_json(self.path, [e for e in self.entries()
                                if (e["kind"], e["name"]) != (kind, name)])


def add_path(ledger: Ledger, path: Path, *, tree: bool = False, keep_changed: bool = False) -> None:
    """Record a path that we (or a daemon of ours) are about to make, if it is not there.
    `tree`: a directory removed with its contents (a stopped daemon's runtime state);
    `keep_changed`: a file removed only if unchanged since `settle_paths`."""
    if not (path.exists() or path.is_symlink()):
        ledger.add("path", str(path), tree=tree, keep_changed=keep_changed, digest=None)


def settle_paths(ledger: Ledger) -> None:
    """The paths recorded with `keep_changed` are as we leave them: remember their digests."""
    entries = ledger.entries()
    for e in entries:
        if e["kind"] == "path" and e.get("keep_changed") and e.get("digest") is None:
            e["digest"] = digest(Path(e["name"]))
    _write_json(ledger.path, entries)


def remove_paths(ledger: Ledger) -> list[str]:
    """The recorded paths, deepest first: a tree whole; a directory if empty (else something
    not ours is in it: it stays); a file, unless `keep_changed` and changed since."""
    done = []
    for e in sorted(ledger.entries("path"), key=lambda e: -e["name"].count("/")):
        path = Path(e["name"])
        if path.is_symlink() or not path.exists():  # gone, or not what we made
            ledger.drop("path", e["name"])
            continue
        if path.is_dir():
            if e.get("tree"):
                shutil.rmtree(path)
                done.append(f"{path} (runtime state)")
            else:
                try:
                    path.rmdir()
                    done.append(str(path))
                except OSError:
                    done.append(f"{path}: not empty, left as it is")
        elif e.get("keep_changed") and e.get("digest") and digest(path) != e["digest"]:
            done.append(f"{path}: changed since host.up, left as it is")
        else:
            path.unlink()
            done.append(str(path))
        ledger.drop("path", e["name"])
    return done


class DaemonStart:
    """What libvirtd writes when we start it, recorded by name around that start only: what its
    start made (its runtime dir, logs, state dirs) is removed once it has stopped, and the
    /etc/libvirt files it rewrote (it adds UUIDs to the packaged nwfilters and networks) are
    put back if still as it left them. What anyone does with libvirt later is not in it."""

    ETC = Path("/etc/libvirt")
    DIRS = (ETC, Path("/var/lib/libvirt"), Path("/var/log/libvirt"), Path("/var/cache/libvirt"),
            Path("/run/libvirt"))
    RUNTIME = (Path("/run/libvirt"), Path("/var/log/libvirt"))  # state and logs of the daemon only

    def __init__(self, ledger: Ledger, backups: Backups) -> None:
        self.ledger, self.backups = ledger, backups

    def _paths(self) -> set[Path]:
        out = set()
        for d in self.DIRS:
            if d.exists():
                out.add(d)
                for dirpath, dirnames, filenames in os.walk(d):
                    out |= {Path(dirpath, n) for n in dirnames + filenames}
        return out

    def before(self) -> set[Path]:
        """Just before our start: the paths there, and a copy of each /etc/libvirt file."""
        paths = self._paths()
        for p in sorted(paths):
            if self._etc_file(p):
                self.backups.save(p)
        return paths

    def after(self, before: set[Path]) -> list[str]:
        """Just after: keep the copies of the files the start rewrote, record what it made.
        Returns what it made or rewrote."""
        rewritten = []
        for p in sorted(before):
            if self._etc_file(p):
                if digest(p) == digest(self.backups.copy_of(p) or p):
                    self.backups.forget(p)  # not rewritten
                else:
                    self.backups.left(p)
                    rewritten.append(p)
        new = self._paths() - before
        trees = {self.RUNTIME[0]} & new  # /run/libvirt, if the start made it: whole
        for p in sorted(new):
            if any(p != t and p.is_relative_to(t) for t in trees):
                continue
            runtime = any(p.is_relative_to(d) for d in self.RUNTIME)
            self.ledger.add("path", str(p), tree=p in trees,
                            keep_changed=p.is_file() and not runtime, digest=None)
        settle_paths(self.ledger)
        return [str(p) for p in sorted(new | set(rewritten))]

    def _etc_file(self, p: Path) -> bool:
        return p.is_relative_to(self.ETC) and p.is_file() and not p.is_symlink()


class Facts:
    """What the host was like before us (a JSON object in `path`), recorded once, before
    anything changes: what existed already is left as it is."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def recorded(self) -> bool:
        return self.path.exists()

    def load(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def record(self, facts: dict) -> None:
        with contextlib.suppress(FileExistsError):
            self.path.parent.mkdir(mode=0o700, parents=True)
        _write_json(self.path, facts)

    def add(self, **facts: object) -> None:
        """One more fact, learnt later (libvirt's, once libvirtd answers)."""
        self.record(self.load() | facts)
