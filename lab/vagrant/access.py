"""How the host reaches the lab's VMs: the lab's own SSH key pair, made by host.up in the lab's
private state dir (KEEP/<lab>/ssh), its public half handed to each VM on its kernel command line
(the box has no key of its own: lab/vagrant/box.py puts this one in place at boot), and the
VMs' host keys, recorded there at first contact (lab.substrate.vagrant.KnownHosts)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from lab.vagrant import state

KEY_TYPE = "ssh-ed25519"
BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def ssh_dir(lab: str) -> Path:
    return state.KEEP / lab / "ssh"


def key_path(lab: str) -> Path:
    """The lab's private key (0600 in a 0700 dir, root's)."""
    return ssh_dir(lab) / "id_ed25519"


def ensure_key(lab: str) -> Path:
    """The lab's key pair, made unless it exists; the private key's path."""
    key = key_path(lab)
    state.keep_dir(lab, "ssh")
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"vxlab-{lab}",
                        "-f", str(key)], check=True, capture_output=True)
    return key


def public_key(lab: str) -> str | None:
    """The base64 of the lab's public key (what the VMs' command line carries), if made."""
    try:
        kind, b64, *_ = key_path(lab).with_suffix(".pub").read_text().split()
    except (OSError, ValueError):
        return None
    if kind != KEY_TYPE or not BASE64.match(b64):
        raise RuntimeError(f"{key_path(lab)}.pub is not an {KEY_TYPE} public key")
    return b64


def known_hosts(lab: str, vm: str) -> Path:
    """Where the VM's host key is recorded at first contact."""
    return ssh_dir(lab) / f"known_hosts-{vm}"
