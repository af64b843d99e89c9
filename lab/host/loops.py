"""Loop devices on files of ours: attached, found by their backing file's inode, detached."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from lab.host.wait import until


def attach(file: Path) -> str:
    """A new loop device on `file`, with direct I/O: the file's blocks are not cached twice
    (once by the file system on the device, once by the one holding the file)."""
    return subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(file)],
                          check=True, capture_output=True, text=True).stdout.strip()


def backed_by(file: Path) -> list[str]:
    """The loop devices on `file` (none if it does not exist). By inode, not by name: a loop on
    another file once at this path is not ours to detach."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return []
    listing = subprocess.run(["losetup", "--list", "--json", "--output", "NAME,BACK-INO,BACK-MAJ:MIN"],
                             check=True, capture_output=True, text=True).stdout
    return devices_on(listing, os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)


def devices_on(listing: str, major: int, minor: int, inode: int) -> list[str]:
    """From `losetup --list --json` (empty when there are no loop devices): the devices whose
    backing file is inode `inode` of device major:minor."""
    if not listing.strip():
        return []
    found = []
    for dev in json.loads(listing).get("loopdevices", []):
        maj_min = str(dev.get("back-maj:min") or "").strip()  # padded: "     254:0  "
        if maj_min == f"{major}:{minor}" and dev.get("back-ino") == inode:
            found.append(dev["name"])
    return sorted(found)


def detach(file: Path, timeout: float = 20) -> None:
    """Detach every loop device on `file` and wait until they are gone. One still mounted (by a
    mount namespace whose last process just died) is only marked to go when released."""
    for device in backed_by(file):
        subprocess.run(["losetup", "--detach", device], capture_output=True)
    if not until(lambda: not backed_by(file), timeout, pause=0.1):
        raise RuntimeError(f"loop devices {backed_by(file)} on {file} still attached after {timeout} s")
