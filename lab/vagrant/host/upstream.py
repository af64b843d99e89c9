"""The lab's upstream, on the uplink's VLAN (214) of dsw-host, one of two kinds:
- `simulated` (the default): the lab's own Internet (lab/roles/internet.py) in a namespace;
- `nat` (for laptops, never in CI): the real Internet through a libvirt NAT network, the one
  case where the host holds lab addresses, forwards and NATs (the forwarding sysctls are
  recorded before and restored after)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

from lab import model
from lab.host import process
from lab.host.names import ifname
from lab.host.run import sh
from lab.roles import internet
from lab.substrate.netns import NetnsNode, link_exists, namespaces
from lab.vagrant.host.libvirt import Libvirt
from lab.vagrant.host.ovs import Ovs
from lab.vagrant.host.undo import Ledger

# libvirt turns these on for a NAT network and never off: recorded before, restored after.
FORWARDING = (Path("/proc/sys/net/ipv4/ip_forward"), Path("/proc/sys/net/ipv6/conf/all/forwarding"))


class Upstreams:
    """The names and the making of both kinds, for one lab; `run` holds the namespace's files."""

    def __init__(self, lab: model.Lab, run: Path, ovs: Ovs, libvirt: Libvirt, ledger: Ledger,
                 say: Callable[[str], None]) -> None:
        self.lab, self.run, self.ovs, self.libvirt, self.say = lab, run, ovs, libvirt, say
        self.ledger = ledger
        vlan = lab.router.uplink.vlan
        self.ns = f"vag-{lab.name}-internet"  # not vxlab-*: the embedded lab's names
        self.port = ifname(f"up{vlan}-{lab.name}")  # on dsw-host
        self.nat_net = f"{lab.name}-nat"  # the `nat` upstream: a libvirt network,
        self.nat_bridge = ifname(f"vxnat-{lab.name}")  # its Linux bridge,
        self.nat_port = ifname(f"nat{vlan}-{lab.name}")  # the port's peer there

    def _make(self, kind: str, name: str, exists: bool) -> bool:
        """Whether to make `name` (recorded first); refuses one of the lab's names that exists
        and is not the lab's (another lab's, or anyone's)."""
        if not exists:
            self.ledger.add(kind, name)
            return True
        if self.ledger.get(kind, name) is None:
            raise RuntimeError(f"{kind} {name} exists and is not lab {self.lab.name}'s: not touched")
        return False

    def simulated(self) -> None:
        """The lab's Internet in a namespace, its veth's host end an access port of VLAN 214."""
        ns, port = self.ns, self.port
        mtu = str(self.ovs.mtu)
        if self._make("netns", ns, ns in namespaces()):
            sh(["ip", "netns", "add", ns])
        sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0"])  # the namespace's own sysctls, not the host's
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        if self._make("link", port, link_exists(None, port)):
            with contextlib.suppress(RuntimeError):
                sh(["ip", "-n", ns, "link", "del", "eth0"])  # half a pair left by an interruption
            sh(["ip", "link", "add", port, "mtu", mtu, "type", "veth",
                "peer", "name", "eth0", "mtu", mtu, "netns", ns])
        sh(["ip", "link", "set", port, "addrgenmode", "none"])  # before up: no fe80:: address
        sh(["ip", "link", "set", port, "up"])
        # TCP through OVS's userspace datapath needs real checksums from the sender (ping
        # works either way): no checksum offload on the upstream's side.
        sh(["ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off"])
        self.ovs.add_access_port(port, self.lab.router.uplink.vlan)
        internet.provision(self.node(), self.lab)

    def node(self) -> NetnsNode:
        """The simulated upstream's namespace as a lab node."""
        return NetnsNode("internet", self.ns, str(self.run / "internet"))

    def nat_network_xml(self) -> str:
        """The `nat` upstream's network: the lab's Internet gateway addresses on a bridge of
        its own, NAT for IPv4 and IPv6. No DHCP, no DNS (so no dnsmasq): routerVM's uplink is
        static, and the lab uses the resolver of lab.yaml, reached through the NAT."""
        gw = self.lab.internet.gateway
        return "\n".join([
            "<network>", f"  <name>{self.nat_net}</name>",
            "  <forward mode='nat'><nat ipv6='yes'/></forward>",
            f"  <bridge name='{self.nat_bridge}' stp='off' delay='0'/>",
            f"  <mtu size='{self.ovs.mtu}'/>", "  <dns enable='no'/>",
            f"  <ip address='{gw.ipv4.ip}' prefix='{gw.ipv4.network.prefixlen}'/>",
            f"  <ip family='ipv6' address='{gw.ipv6.ip}' prefix='{gw.ipv6.network.prefixlen}'/>",
            "</network>", ""])

    def nat(self) -> None:
        """VLAN 214 bridged, by a veth, to a libvirt NAT network whose bridge holds the lab's
        Internet gateway addresses; the host routes and NATs to its own uplink.
        (libvirt refuses IPv6 forwarding where the host's RA routes would be lost: there
        accept_ra=2 is the user's to set, not ours.)"""
        self.say("nat upstream: the host forwards and NATs for the lab "
                 "(forwarding sysctls recorded; restored by host.down)")
        self.ledger.add("link", self.nat_bridge)  # libvirt's; deleted if it outlives the network
        self.libvirt.networks({self.nat_net: (self.nat_network_xml(), self.nat_bridge)})
        # routerVM's IPv6 default route: the link-local gateway, which libvirt's XML cannot hold
        sh(["ip", "-6", "addr", "replace", str(self.lab.internet.gateway.link_local),
            "dev", self.nat_bridge, "nodad"])
        port, peer, mtu = self.port, self.nat_port, str(self.ovs.mtu)
        if self._make("link", port, link_exists(None, port)):
            if not self._make("link", peer, link_exists(None, peer)):
                sh(["ip", "link", "del", peer])  # ours: half a pair left by an interruption
            sh(["ip", "link", "add", port, "mtu", mtu, "type", "veth", "peer", "name", peer, "mtu", mtu])
        for end in (port, peer):
            sh(["ip", "link", "set", end, "addrgenmode", "none"])  # before up: no fe80:: address
        sh(["ip", "link", "set", peer, "master", self.nat_bridge])
        # As for `simulated`: what enters OVS's userspace datapath carries real checksums.
        sh(["ethtool", "-K", peer, "tx", "off"])
        for end in (peer, port):
            sh(["ip", "link", "set", end, "up"])
        self.ovs.add_access_port(port, self.lab.router.uplink.vlan)

    @staticmethod
    def forwarding() -> list[str]:
        """The forwarding sysctls now (to record before libvirt's NAT network turns them on)."""
        return [p.read_text().strip() for p in FORWARDING]

    # -- cleanup --------------------------------------------------------------------------

    def remove_links(self) -> list[str]:
        """The links recorded as the lab's: the upstream's host ends first (a deleted
        namespace's links go later, asynchronously: the host's end can vanish between a check
        and a delete, 2 in 30 on an idle host), the nat bridge if it outlived its network."""
        done = []
        for name in self.ledger.names("link"):
            done += del_links(name)
            self.ledger.drop("link", name)
        return done

    def remove_namespace(self) -> list[str]:
        if not self.ledger.get("netns", self.ns):
            return []
        if self.ns not in namespaces():
            self.ledger.drop("netns", self.ns)
            return []
        node = self.node()
        for s in internet.services(internet.target(self.lab, node)):
            node.stop(s)
        pids = sh(["ip", "netns", "pids", self.ns], check=False).out.split()
        process.terminate([int(p) for p in pids], first=signal.SIGKILL)  # anything else there is ours
        sh(["ip", "netns", "del", self.ns])
        self.ledger.drop("netns", self.ns)
        return [f"namespace {self.ns}"]

    @staticmethod
    def restore_forwarding(before: list[str] | None) -> list[str]:
        """The `nat` upstream only: the forwarding sysctls as they were before libvirt's NAT
        network (the one place the project writes them). Only those that changed: writing
        one also resets every interface's own setting."""
        done = []
        for path, value in zip(FORWARDING, before or (), strict=False):
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
                done.append(f"restored {path} = {value}")
        return done


def del_links(*names: str) -> list[str]:
    """Delete these links of the host's namespace where they are; say which were. A link
    that vanished meanwhile (its namespace's deletion took it) counts as deleted."""
    done = []
    for name in names:
        if not link_exists(None, name):
            continue
        r = sh(["ip", "link", "del", name], check=False)
        if not r.ok and link_exists(None, name):
            raise RuntimeError(f"`ip link del {name}` failed: {(r.err or r.out).strip()}")
        done.append(f"link {name}")
    return done
