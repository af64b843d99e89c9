"""The lab's Vagrant box: Debian bookworm for the libvirt provider, built offline.

mmdebstrap installs every package the lab's VMs run (nothing is installed at `vagrant up`:
CI has no Internet) from the host's Debian mirror; `mkfs.ext4 -d` turns the tree into a disk
image without loop mounts; the VMs boot the box's kernel directly (no boot loader). The lab's
LXD container image is copied in. The box is cached outside the repository, keyed by a hash
of its recipe: the same recipe is never built twice, a changed one is built anew.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.containers import image as container_image
from lab.debian import RELEASE
from lab.host import cache as cached
from lab.host.run import run_to_end

CACHE = Path("/var/cache/vxlab/boxes")
SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
IMAGES_DIR = "/var/lib/vxlab/images"  # where the VMs find the lab's container image
IMAGE_CACHE = container_image.CACHE
DISK_GB = 8  # sparse: LXD's btrfs pool file and containers live on it

PACKAGES = (
    # boot and base
    "linux-image-amd64", "initramfs-tools", "systemd-sysv", "udev", "dbus", "kmod", "procps",
    "netbase", "less", "openssh-server", "sudo", "ca-certificates",
    "libnss-myhostname",  # the host name from the kernel command line resolves (else sudo warns)
    # the seed's network tools
    "ifupdown", "iproute2", "openvswitch-switch", "keepalived", "radvd", "iptables", "conntrack",
    "ethtool",
    # containers
    "lxd", "lxd-client", "btrfs-progs",
    # what the checks and a user at the console use
    "tcpdump", "iputils-ping", "ndisc6", "curl", "bind9-dnsutils",
)

# systemd-networkd owns the management NIC (eth0, Vagrant's DHCP network). ifupdown owns the
# lab's NICs: the rendered /etc/network/interfaces replaces the box's, and provisioning's
# `ifdown -a` of the old file would otherwise take eth0, and the SSH session, down with it.
# (ifupdown's `allow-hotplug eth0` also broke on LXD: a container's veth is eth0 inside.)
MGMT_NETWORK = """\
# vxlab: the management NIC (Vagrant's SSH). No default route, no DNS from it: the lab's
# traffic leaves through routerVM only.
[Match]
Name=eth0

[Network]
DHCP=ipv4
LinkLocalAddressing=no
IPv6AcceptRA=no

[DHCPv4]
UseGateway=no
UseRoutes=no
UseDNS=no
UseDomains=no
UseHostname=no
UseNTP=no
"""
# networkd deletes routes and rules it did not make by default: routerVM's policy routing
# (ifupdown hooks) must survive it.
NETWORKD_CONF = """\
[Network]
ManageForeignRoutes=no
ManageForeignRoutingPolicyRules=no
"""
# Lab NICs get the names lab.yaml gives (the seed's enp0s6), matched by MAC: the kernel
# command line says `vxlab.ifname=NAME:MAC` (from the Vagrantfile), so the box stays the same
# for any lab. The generator runs before udev; a .link file names the NIC when udev adds it.
# TX checksum offload off: behind the host's OVS userspace datapath TCP fails otherwise.
IFNAMES_GENERATOR = r"""#!/bin/sh
# vxlab: name NICs by MAC from the kernel command line: vxlab.ifname=NAME:MAC (repeatable)
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vxlab.ifname=*:*)
      v=${arg#vxlab.ifname=}; name=${v%%:*}; mac=${v#*:}
      mkdir -p /run/systemd/network
      printf '[Match]\nMACAddress=%s\n\n[Link]\nName=%s\nTransmitChecksumOffload=false\n' \
        "$mac" "$name" > "/run/systemd/network/10-vxlab-$name.link"
      ;;
  esac
done
"""
# No key, no password, no host key in the box: at every boot this takes the lab's public key
# and the VM's management address from the kernel command line (lab/vagrant/spec.py), lets
# that key in for vagrant and root, and makes sshd listen on that address only; the VM makes
# its own host key at its first boot. Without them nobody logs in.
ACCESS = r"""#!/bin/sh
# vxlab: vxlab.sshkey=BASE64 (the lab's ed25519 public key) and vxlab.mgmt=ADDRESS (sshd's)
set -euf
key= addr=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    vxlab.sshkey=*) key=${arg#vxlab.sshkey=} ;;
    vxlab.mgmt=*) addr=${arg#vxlab.mgmt=} ;;
  esac
done
no() { echo "vxlab-access: no valid $1 on the kernel command line" >&2; exit 1; }
case "$key" in ""|*[!A-Za-z0-9+/=]*) no vxlab.sshkey=BASE64 ;; esac
case "$addr" in ""|*[!0-9.]*) no vxlab.mgmt=ADDRESS ;; esac
[ -s /etc/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key
for user in root vagrant; do
  ssh="$(getent passwd "$user" | cut -d: -f6)/.ssh"
  install -d -m 700 -o "$user" -g "$user" "$ssh"
  printf 'ssh-ed25519 %s vxlab\n' "$key" > "$ssh/.authorized_keys.new"
  chown "$user:$user" "$ssh/.authorized_keys.new" && chmod 600 "$ssh/.authorized_keys.new"
  mv -f "$ssh/.authorized_keys.new" "$ssh/authorized_keys"
done
printf 'ListenAddress %s\n' "$addr" > /etc/ssh/sshd_config.d/vxlab-listen.conf
"""
ACCESS_UNIT = """\
[Unit]
Description=vxlab: the lab's SSH key and sshd's address, from the kernel command line
After=local-fs.target
Before=ssh.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/vxlab-access

[Install]
RequiredBy=ssh.service
"""
SSHD_CONFIG = """\
# vxlab: the lab's key only (vxlab-access), on the management address only (vxlab-listen.conf)
UseDNS no
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
HostKey /etc/ssh/ssh_host_ed25519_key
"""
# The management address comes by DHCP: sshd waits for it, and tries again rather than give up
# (Debian's unit gives up on exit 255, "Cannot bind any address").
SSH_UNIT = """\
[Unit]
After=vxlab-access.service systemd-networkd-wait-online.service
Wants=systemd-networkd-wait-online.service
StartLimitIntervalSec=0

[Service]
RestartPreventExitStatus=
RestartSec=2
"""
FILES: dict[str, tuple[str, int]] = {
    "/etc/hostname": ("vxlab-box\n", 0o644),
    "/etc/hosts": ("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n", 0o644),
    "/etc/fstab": ("/dev/vda / ext4 defaults,errors=remount-ro 0 1\n", 0o644),
    "/etc/network/interfaces": ("# vxlab: the lab's NICs are provisioned here; eth0 is "
                                "systemd-networkd's\nauto lo\niface lo inet loopback\n", 0o644),
    "/etc/systemd/network/10-vxlab-mgmt.network": (MGMT_NETWORK, 0o644),
    "/etc/systemd/networkd.conf.d/vxlab.conf": (NETWORKD_CONF, 0o644),
    "/etc/systemd/system-generators/vxlab-ifnames": (IFNAMES_GENERATOR, 0o755),
    "/etc/sudoers.d/vagrant": ("vagrant ALL=(ALL) NOPASSWD:ALL\n", 0o440),
    "/etc/ssh/sshd_config.d/vxlab.conf": (SSHD_CONFIG, 0o644),
    "/usr/local/sbin/vxlab-access": (ACCESS, 0o755),
    "/etc/systemd/system/vxlab-access.service": (ACCESS_UNIT, 0o644),
    "/etc/systemd/system/ssh.service.d/vxlab.conf": (SSH_UNIT, 0o644),
    # a unit that hangs must not hold up a boot under emulation for 90 s
    "/etc/systemd/system.conf.d/vxlab-timeouts.conf": ("[Manager]\nDefaultTimeoutStartSec=30s\n", 0o644),
    # LXD and its containers yield to keepalived: under emulation LXD's requests took a third
    # of a tenant's CPU, keepalived stalled for seconds and its checks timed out (VRRP flapped).
    "/etc/systemd/system/lxd.service.d/vxlab-nice.conf": ("[Service]\nNice=10\n", 0o644),
}
# Run in the new system (mmdebstrap customize hooks; "$1" is its root).
HOOKS = (
    'chroot "$1" useradd -m -s /bin/bash -G sudo,lxd vagrant',
    # no password logs in anyone, anywhere (the console included): keys only (ACCESS)
    'chroot "$1" usermod -p "*" vagrant && chroot "$1" usermod -p "*" root',
    'rm -f "$1"/etc/ssh/ssh_host_*',  # each VM makes its own at its first boot
    'chroot "$1" systemctl enable vxlab-access.service',
    # LXD's unprivileged containers need root's subordinate ids
    'echo root:1000000:1000000000 >> "$1/etc/subuid" && echo root:1000000:1000000000 >> "$1/etc/subgid"',
    'chroot "$1" systemctl enable systemd-networkd.service',
    # keepalived and radvd start when provisioning has written their configuration
    'chroot "$1" systemctl disable keepalived.service radvd.service',
    'chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer man-db.timer'
    ' e2scrub_all.timer fstrim.timer systemd-timesyncd.service',
    # every VM gets its own machine-id (and DHCP client id) at first boot
    'truncate -s0 "$1/etc/machine-id" && rm -f "$1/var/lib/dbus/machine-id"',
    'rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin',
)
DPKG_OPTS = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright",
             "path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*")
BOX_VAGRANTFILE = """\
# The box alone boots too: its kernel, direct kernel boot (the lab's Vagrantfile sets the same).
Vagrant.configure("2") do |config|
  config.vm.synced_folder ".", "/vagrant", disabled: true
  config.vm.provider :libvirt do |libvirt|
    libvirt.kernel = File.join(__dir__, "vmlinuz")
    libvirt.initrd = File.join(__dir__, "initrd.img")
    libvirt.cmd_line = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
  end
end
"""


@dataclass(frozen=True)
class Box:
    """A built box in the cache: its directory holds the .box, the kernel and the manifest."""

    key: str
    dir: Path

    @property
    def name(self) -> str:
        """The box's name in Vagrant: a new recipe is a new name, so no stale box is used."""
        return f"vxlab/{RELEASE}-{self.key}"

    @property
    def file(self) -> Path:
        return self.dir / "vxlab.box"

    @property
    def kernel(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.dir / "initrd.img"

    @property
    def manifest(self) -> Path:
        return self.dir / "manifest.txt"

    def exists(self) -> bool:
        return self.file.exists()


def recipe(image: Path) -> dict:
    """Everything the box is made from; its hash is the box's cache key."""
    return {"release": RELEASE, "packages": PACKAGES, "files": FILES, "hooks": HOOKS,
            "dpkg": DPKG_OPTS, "disk_gb": DISK_GB, "vagrantfile": BOX_VAGRANTFILE,
            "image": image.name}  # the image's name carries its own recipe hash


def recipe_key(image: Path) -> str:
    return cached.recipe_key(recipe(image))


def box_for(image_name: str, cache: Path = CACHE) -> Box:
    """The box of the current recipe (built or not), given the container image's file name."""
    key = recipe_key(Path(image_name))
    return Box(key, cache / f"{RELEASE}-{key}")


def current(cache: Path = CACHE, images: Path = IMAGE_CACHE) -> Box | None:
    """The box the current recipe makes, without building anything (None if the container
    image is not built either)."""
    found = sorted(images.glob(f"{container_image.PREFIX}*.tar"), key=lambda p: p.stat().st_mtime)
    return box_for(found[-1].name, cache) if found else None


def build(cache: Path = CACHE, progress: Callable[[str], None] = print, force: bool = False) -> Box:
    """Build the box unless the cache holds one of this recipe; return it.

    lab.host.cache builds it aside and renames it into place: an interrupted or failed build
    leaves nothing behind, and a box in the cache is always whole.
    """
    image = container_image.ensure_image(progress=progress)
    box = box_for(image.name, cache)

    def make(staging: Path) -> Path:
        _Builder(staging, image, progress).build()
        return staging / "box"

    started = time.monotonic()
    if not cached.build(box.dir, make, others=f"{RELEASE}-*", built=box.exists, force=force):
        progress(f"box {box.name} is up to date: {box.file}")
        return box
    progress(f"box {box.name} built in {time.monotonic() - started:.0f} s: {box.file} "
             f"({box.file.stat().st_size / 2**20:.0f} MiB)")
    return box


class _Builder:
    """Makes one box in `staging`: rootfs/ (the tree), then box/ (what the cache keeps)."""

    def __init__(self, staging: Path, image: Path, progress: Callable[[str], None]) -> None:
        self.staging = staging
        self.image = image
        self.progress = progress
        self.rootfs = staging / "rootfs"
        self.out = staging / "box"

    def build(self) -> None:
        self.out.mkdir()
        self._mmdebstrap()
        self._add_image()
        self._manifest()
        self._boot_files()
        self._disk()
        self._pack()

    def _overlay(self) -> Path:
        overlay = self.staging / "overlay"
        overlay.mkdir(mode=0o755)  # sync-in gives "/" the overlay's own mode
        for path, (text, mode) in FILES.items():
            dest = overlay / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
            dest.chmod(mode)
        return overlay

    def _mmdebstrap(self) -> None:
        self.progress(f"mmdebstrap: Debian {RELEASE} + {len(PACKAGES)} packages from {SOURCES}")
        overlay = self._overlay()
        argv = ["mmdebstrap", "--mode=root", "--variant=apt", "--format=directory", "--quiet",
                f"--include={','.join(PACKAGES)}",
                *(f"--dpkgopt={o}" for o in DPKG_OPTS),
                f"--customize-hook=sync-in {overlay} /",
                *(f"--customize-hook={h}" for h in HOOKS),
                RELEASE, str(self.rootfs), str(SOURCES)]
        # Terminated (not killed) on Ctrl-C, so mmdebstrap undoes its bind mounts first.
        run_to_end(argv)

    def _add_image(self) -> None:
        dest = self.rootfs / IMAGES_DIR.lstrip("/")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.image, dest / self.image.name)
        (dest / "vxlab.tar").symlink_to(self.image.name)  # a fixed name for provisioning

    def _manifest(self) -> None:
        r = subprocess.run(["dpkg-query", f"--admindir={self.rootfs}/var/lib/dpkg", "-W",
                            "-f", "${Package}\t${Version}\t${Architecture}\n"],
                           capture_output=True, text=True, check=True)
        lines = sorted(r.stdout.splitlines())
        header = (f"# vxlab box: Debian {RELEASE}, {len(lines)} packages; "
                  f"container image {self.image.name}\n")
        (self.out / "manifest.txt").write_text(header + "\n".join(lines) + "\n")

    def _boot_files(self) -> None:
        # Direct kernel boot: the host hands QEMU the box's kernel and initrd.
        for link, name in (("vmlinuz", "vmlinuz"), ("initrd.img", "initrd.img")):
            shutil.copyfile(self.rootfs / os.readlink(self.rootfs / link).lstrip("/"), self.out / name)
            (self.out / name).chmod(0o644)

    def _disk(self) -> None:
        self.progress(f"disk image: mkfs.ext4 -d ({DISK_GB} GiB sparse), compressed qcow2")
        raw = self.staging / "root.raw"
        with open(raw, "wb") as f:
            f.truncate(DISK_GB * 2**30)
        run_to_end(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(self.rootfs), str(raw)])
        # Compressed qcow2 (a third of the size); QEMU decompresses natively, not emulated.
        run_to_end(["qemu-img", "convert", "-c", "-W", "-m", "2", "-O", "qcow2", str(raw),
                         str(self.staging / "box.img")])
        raw.unlink()

    def _pack(self) -> None:
        (self.staging / "metadata.json").write_text(
            json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GB}) + "\n")
        (self.staging / "Vagrantfile").write_text(BOX_VAGRANTFILE)
        for name in ("vmlinuz", "initrd.img"):
            shutil.copyfile(self.out / name, self.staging / name)
        # A plain tar (the disk is the bulk, and gzip would take a minute for ~15%).
        partial = self.out / ".vxlab.box.partial"
        run_to_end(["tar", "-C", str(self.staging), "-cf", str(partial), "--sparse",
                         "metadata.json", "Vagrantfile", "box.img", "vmlinuz", "initrd.img"])
        partial.rename(self.out / "vxlab.box")
        with contextlib.suppress(FileNotFoundError):
            (self.staging / "box.img").unlink()
