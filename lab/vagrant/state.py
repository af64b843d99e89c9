"""Where the Vagrant lab keeps its things on the host, a directory per lab in each of two places:
RUN (pid files, Open vSwitch's database, the VMs' serial logs; gone with the boot) and KEEP
(what outlives a reboot: the record of what host.up made, backups, the lab's SSH key, known
host keys, LXD certificates). Each is root's and private (0700): made so, and refused if found
otherwise (another owner, other modes, a symlink), since what is read back from it is trusted.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

RUN = Path("/run/vxlab-host")
KEEP = Path("/var/lib/vxlab-host")


def private_dir(path: Path) -> Path:
    """`path`, a directory only its owner (we: root) can enter; made if absent. RuntimeError
    if it exists as anything else: a symlink, not a directory, another owner, other modes."""
    try:
        os.mkdir(path, 0o700)  # the umask can only take bits away: 0700 or less
        os.chmod(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        problem = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
    elif st.st_uid != os.geteuid():
        problem = f"owned by uid {st.st_uid}"
    elif mode != 0o700:
        problem = f"mode {mode:04o}"
    else:
        return path
    raise RuntimeError(f"{path} is {problem}: not a private directory of ours (0700, uid "
                       f"{os.geteuid()}); not used. Remove it if it is a leftover")


def run_dir(lab: str, *sub: str) -> Path:
    """RUN/<lab>[/sub...], each level private (made if absent)."""
    return _private(RUN, lab, *sub)


def keep_dir(lab: str, *sub: str) -> Path:
    """KEEP/<lab>[/sub...], each level private (made if absent)."""
    return _private(KEEP, lab, *sub)


def _private(base: Path, *parts: str) -> Path:
    path = private_dir(base)
    for part in parts:
        path = private_dir(path / part)
    return path
