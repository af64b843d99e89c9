"""The lab's LXD container image: its recipe, its build with mmdebstrap from the Debian
mirror, and its cache (built once per recipe, shared by every daemon and by the Vagrant box).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.debian import RELEASE, SOURCES_LIST
from lab.host import cache
from lab.host.run import run_to_end

CACHE = Path("/var/cache/vxlab/images")
PREFIX = f"vxlab-{RELEASE}-"  # an image's file name: PREFIX + recipe hash + ".tar"

IMAGE_PACKAGES = (
    "systemd-sysv",
    "dbus",  # hostnamectl, systemctl's bus: a systemd container without it is half-usable
    "ifupdown",
    "isc-dhcp-server",
    "kea-dhcp4-server",  # dhcp.server kea (its HA and lease_cmds hooks come with kea-common)
    "kea-ctrl-agent",
    "isc-dhcp-client",
    "iproute2",
    "iputils-ping",
    "ndisc6",  # rdisc6: SLAAC checks
    "ethtool",  # `ethtool -K eth0 tx off` behind an OVS userspace datapath
    "curl",
    "apt",
    "ca-certificates",
    "tcpdump",
    "bind9-dnsutils",
    "bind9-host",
    "procps",
    "netbase",
    "resolvconf",  # ifupdown's dns-nameservers (the DHCP containers' static config) needs it
)
LAB_SOURCES_LIST = SOURCES_LIST

# mmdebstrap customize hooks ("$1" is the rootfs). Part of the recipe hash.
_CUSTOMIZE_HOOKS = (
    # The lab serves its own tiny repository under the Debian name (no key, no Internet).
    f'printf %s {shlex.quote(LAB_SOURCES_LIST)} > "$1/etc/apt/sources.list"',
    'rm -f "$1"/etc/apt/sources.list.d/*',
    # eth0 stays unconfigured: the lab writes /etc/network/interfaces per container.
    'printf "source /etc/network/interfaces.d/*\\n\\nauto lo\\niface lo inet loopback\\n"'
    ' > "$1/etc/network/interfaces"',
    # mmdebstrap leaves the host's resolv.conf: make it resolvconf's (filled from the lab's
    # dns-nameservers or DHCP); replaced, never written through (a link could lead out).
    'rm -f "$1/etc/resolv.conf" && ln -s ../run/resolvconf/resolv.conf "$1/etc/resolv.conf"',
    # No hostname baked in: LXD's templates and lxc.uts.name give each container its name.
    'rm -f "$1/etc/hostname"',
    # dhcpd has no config until the lab writes one; enabled, it fails every boot ("degraded").
    # (bookworm's dhcpd is a SysV script; `systemctl enable --now` still works on it.)
    'chroot "$1" update-rc.d isc-dhcp-server disable',
    # Kea's packages enable their units: every container (clients too) would run kea-dhcp4 on
    # Debian's sample config and kea-ctrl-agent on 127.0.0.1:8000. The dhcp role enables them.
    'chroot "$1" systemctl disable kea-dhcp4-server.service kea-ctrl-agent.service',
    # Fails in an unprivileged container and marks the system degraded.
    'ln -sf /dev/null "$1/etc/systemd/system/systemd-journald-audit.socket"',
    'rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/usr/share/doc/*'
    ' "$1"/usr/share/man/* "$1"/usr/share/locale/*',
)
_METADATA_YAML = f"""\
architecture: x86_64
creation_date: {{creation_date}}
properties:
  description: vxlab Debian {RELEASE} amd64 container image
  os: debian
  release: {RELEASE}
  architecture: amd64
templates:
  /etc/hostname:
    when: [create, copy]
    template: hostname.tpl
  /etc/hosts:
    when: [create, copy]
    template: hosts.tpl
"""
_TEMPLATES = {
    "hostname.tpl": "{{ container.name }}\n",
    "hosts.tpl": "127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n"
    "::1 localhost ip6-localhost ip6-loopback\n",
}


def _host_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The first Debian mirror of the host's deb822 list (the only reachable one here)."""
    with contextlib.suppress(OSError):
        for stanza in sources.read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in stanza.splitlines() if re.match(r"^\w+:", line))
            if RELEASE in fields.get("Suites", "").split():
                return fields["URIs"].split()[0]
    return "http://deb.debian.org/debian"


def recipe_hash() -> str:
    return cache.recipe_key({
        "release": RELEASE,
        "packages": IMAGE_PACKAGES,
        "hooks": _CUSTOMIZE_HOOKS,
        "metadata": _METADATA_YAML,
        "templates": _TEMPLATES,
    })


def ensure_image(
    cache_dir: Path = CACHE,
    mirror: str | None = None,
    progress: Callable[[str], None] = print,
) -> Path:
    """Build (once) the lab's container image; return the path of the cached tarball.

    An LXD unified tarball (metadata.yaml, templates/, rootfs/), uncompressed because LXD's
    dir driver unpacks the image for every container and xz costs ~1.6 s each. The file name
    carries the recipe hash, so a changed recipe builds a new image (and the older ones go:
    220 MB each); lab.host.cache builds it aside and renames it in, so an interrupted build
    leaves nothing half-made.
    """
    image = cache_dir / f"{PREFIX}{recipe_hash()}.tar"
    cache.build(image, lambda staging: _build(staging, image.name, mirror or _host_mirror(), progress),
                others=f"{PREFIX}*.tar")
    return image


def _build(staging: Path, name: str, mirror: str, progress: Callable[[str], None]) -> Path:
    progress(f"building {name} with mmdebstrap from {mirror}")
    hooks = [f"--customize-hook={hook}" for hook in _CUSTOMIZE_HOOKS]
    run_to_end(
        ["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet", f"--include={','.join(IMAGE_PACKAGES)}"]
        + [*hooks, RELEASE, str(staging / "rootfs"), f"deb {mirror} {RELEASE} main"]
    )
    # LXD rejects a creation_date of 0 ("Missing creation date").
    (staging / "metadata.yaml").write_text(_METADATA_YAML.format(creation_date=int(time.time())))
    (staging / "templates").mkdir()
    for template, text in _TEMPLATES.items():
        (staging / "templates" / template).write_text(text)
    progress(f"packing {name}")
    tarball = staging / "image.tar"
    members = ["metadata.yaml", "templates", "rootfs"]
    run_to_end(
        ["tar", "-C", str(staging), "-cf", str(tarball), "--numeric-owner", "--xattrs", "--xattrs-include=*"]
        + members
    )
    return tarball


_fingerprints: dict[tuple[str, int, int, int], str] = {}
_fingerprints_lock = threading.Lock()


def fingerprint(image: Path) -> str:
    """LXD's fingerprint of a unified tarball is the sha256 of the file: read once per file
    (its path, inode, size and mtime) and process, not once per daemon (0.75 s each)."""
    st = image.stat()
    key = (str(image), st.st_ino, st.st_size, st.st_mtime_ns)
    with _fingerprints_lock:  # the tenants' daemons ask at once: the second waits for the first's
        if key not in _fingerprints:
            digest = hashlib.sha256()
            with image.open("rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            _fingerprints[key] = digest.hexdigest()
        return _fingerprints[key]
