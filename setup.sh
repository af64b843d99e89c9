#!/bin/bash
# Set up this machine for vxlab (Debian 12, as root): the Debian packages the lab runs and
# the Python environment in .venv. Safe to run again. Starts no daemon on the machine.
set -euo pipefail
cd "$(dirname "$0")"

PACKAGES=(
  python3-venv                               # the .venv
  iproute2 iptables conntrack ifupdown       # the seed's network tools
  keepalived radvd isc-dhcp-server isc-dhcp-client
  kea-dhcp4-server kea-ctrl-agent            # dhcp.server: kea (the HA hooks: kea-common)
  iputils-ping ndisc6 tcpdump ethtool curl dnsmasq-base procps util-linux
  lxd lxd-client mmdebstrap btrfs-progs squashfs-tools uidmap xz-utils   # LXD containers
  graphviz                                   # the dot program (invoke graph)
  # the Vagrant substrate: VMs under libvirt/QEMU on an OVS host switch, reached over SSH
  vagrant vagrant-libvirt libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 qemu-utils openvswitch-switch nftables openssh-server openssh-client sudo
  openssl                                    # the lab's LXD client certificate
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  # Packages must not start their daemons on this machine: the lab starts its own, per node.
  guard=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  trap '[ $guard = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: Python environment in .venv"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
echo "setup: ready"
