"""The cgroups liblxc makes for containers, found in every hierarchy and removed."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from lab.host.mounts import mounts


def container_cgroups(names: Sequence[str]) -> list[Path]:
    """Cgroup dirs liblxc made for these containers (lxc.payload.NAME, lxc.monitor.NAME)."""
    return cgroup_dirs(*(f"lxc.{kind}.{n}" for n in names for kind in ("payload", "monitor")))


def cgroup_dirs(*wanted: str) -> list[Path]:
    """Dirs with these names in every cgroup hierarchy, searched a few levels deep since LXD
    nests its cgroups under its own."""
    names, found = set(wanted), []
    for _, target, fstype, _ in mounts():
        if fstype not in ("cgroup", "cgroup2"):
            continue
        root_depth = target.rstrip("/").count("/")
        for dirpath, dirnames, _ in os.walk(target):
            if dirpath.count("/") - root_depth >= 4:
                dirnames.clear()
            for d in dirnames:
                if d in names:
                    found.append(Path(dirpath, d))
    return found


def cgroup_procs(cgroup: Path) -> list[int]:
    """The pids in a cgroup (none if it is gone)."""
    with contextlib.suppress(OSError):
        return [int(p) for p in (cgroup / "cgroup.procs").read_text().split()]
    return []


def remove_cgroup(path: Path) -> None:
    """Cgroup dirs go with rmdir, children first (their files cannot be unlinked)."""
    for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(dirpath)
