"""What host.up changes, recorded before it does, so that host.down puts it back exactly:
the files we edit (Backups), what libvirtd writes on its own (Footprint), and what the host
had before us, which must stay (Facts)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from lab.host.run import sh


class Backups:
    """Copies of host files before we change them, restored byte for byte (mode too)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.index = where / "index.json"

    def _load(self) -> dict[str, str | None]:
        try:
            return json.loads(self.index.read_text())
        except (OSError, ValueError):
            return {}

    def save(self, path: Path) -> None:
        """Remember `path` as it is now, unless remembered already (the first state wins)."""
        index = self._load()
        if str(path) in index:
            return
        self.where.mkdir(parents=True, exist_ok=True)
        copy = None
        if path.exists() or path.is_symlink():
            copy = str(self.where / f"{len(index)}-{path.name}")
            if path.is_symlink():
                os.symlink(os.readlink(path), copy)
            else:
                shutil.copy2(path, copy)
        index[str(path)] = copy
        self.index.write_text(json.dumps(index, indent=1))

    def restore_all(self) -> list[str]:
        restored = []
        for path, copy in self._load().items():
            p = Path(path)
            if p.exists() or p.is_symlink():
                p.unlink()
            if copy is not None:
                if Path(copy).is_symlink():
                    os.symlink(os.readlink(copy), p)
                else:
                    shutil.copy2(copy, p)
            restored.append(path)
        shutil.rmtree(self.where, ignore_errors=True)
        return restored


class Footprint:
    """What libvirtd writes by itself when we start it (its first start fills /etc/libvirt
    with nwfilters, UUIDs and secrets/; then runtime dirs, logs, dnsmasq and QEMU state):
    /etc/libvirt is saved whole and put back; elsewhere, whatever is new is removed."""

    ETC = Path("/etc/libvirt")
    DIRS = (Path("/var/lib/libvirt"), Path("/var/log/libvirt"), Path("/var/cache/libvirt"),
            Path("/run/libvirt"))

    def __init__(self, where: Path) -> None:
        self.where = where
        self.tar = where / "etc-libvirt.tar"
        self.listing = where / "paths.json"

    def record(self) -> None:
        if self.listing.exists():
            return
        self.where.mkdir(parents=True, exist_ok=True)
        if self.ETC.exists():
            sh(["tar", "-C", str(self.ETC.parent), "--numeric-owner", "--xattrs", "-cpf", str(self.tar),
                self.ETC.name])
        self.listing.write_text(json.dumps(sorted(self._paths())))

    def _paths(self) -> set[str]:
        out = set()
        for d in self.DIRS:
            if d.exists():
                out.add(str(d))
                for dirpath, dirnames, filenames in os.walk(d):
                    out |= {os.path.join(dirpath, n) for n in dirnames + filenames}
        return out

    def undo(self) -> list[str]:
        if not self.listing.exists():
            return []
        before = set(json.loads(self.listing.read_text()))
        new = sorted(self._paths() - before, key=lambda p: -p.count("/"))  # deepest first
        for p in new:
            path = Path(p)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        done = [f"{len(new)} paths libvirt made"] if new else []
        if self.tar.exists():
            shutil.rmtree(self.ETC)
            sh(["tar", "-C", str(self.ETC.parent), "--numeric-owner", "--xattrs", "-xpf", str(self.tar)])
            done.append(f"{self.ETC} as it was")
        shutil.rmtree(self.where, ignore_errors=True)
        return done


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(facts, indent=1))

    def add(self, **facts: object) -> None:
        """One more fact, learnt later (libvirt's, once libvirtd answers)."""
        self.record(self.load() | facts)
