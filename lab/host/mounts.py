"""Mounts of this machine's mount namespace, and a tree removal that never crosses into one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path


def mounts() -> list[tuple[str, str, str, str]]:
    """(source, target, fstype, options) of this mount namespace, in mount order."""
    with open("/proc/self/mounts") as f:
        return [
            (_unescape(src), _unescape(tgt), fstype, opts)
            for src, tgt, fstype, opts, *_ in (line.split() for line in f)
        ]


def _unescape(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted(target: Path) -> bool:
    """Something is mounted on target itself."""
    return any(tgt == str(target) for _, tgt, _, _ in mounts())


def umount(target: str) -> None:
    """Unmount, or detach it if something still holds it (it goes when released)."""
    if subprocess.run(["umount", target], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", target], check=True)


def remove_tree(path: Path) -> None:
    """rm -rf that never leaves path's filesystem: first unmount what is mounted below it (a
    killed mmdebstrap leaves rbind mounts of /sys and /dev in its rootfs; walking into those
    would delete the host's files), then `rm --one-file-system` as a second guard."""
    for _, target, _, _ in reversed(mounts()):  # deepest (latest) first
        if _under(target, path):
            umount(target)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _under(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(f"{root}/")
