"""The seal: the host's own stack kept off the switch's ports, by an nft table of ours."""

from __future__ import annotations

import json

from lab.host.run import sh
from lab.substrate.netns import link_exists
from lab.vagrant.host.ovs import Ovs
from lab.vagrant.host.undo import Ledger


class SealTable:
    """A netdev table with a chain per port of the bridge, dropping what the port receives."""

    def __init__(self, name: str, ovs: Ovs, ledger: Ledger, nics: tuple[str, ...] = ()) -> None:
        self.name, self.ovs, self.ledger = name, ovs, ledger
        # The stitch's NIC too: only Open vSwitch speaks on the network between the hosts (the
        # host's stack would answer ARP there for the endpoint, with the NIC's own MAC).
        self.nics = nics
        self.record = f"netdev {name}"

    def apply(self) -> list[str]:
        """Keep the host's own stack off the switch's ports (the upstream's veth, the VMs'
        taps): no IPv6 link-local address on them, and every frame they receive dropped at
        netfilter's ingress hook. OVS's userspace datapath reads the ports through packet
        sockets, which get their copy before that hook: the lab's frames are switched, and
        the host neither answers nor learns anything from them.
        Also the lab's MTU on each port: libvirt takes no <mtu> for a bridge-mode network,
        and a tap left at 1500 drops the underlay's jumbo frames.
        Idempotent; run it again after `vagrant up` has made the VMs' taps. Returns the ports."""
        sealed = []
        if not self.ledger.get("nft", self.record):
            if sh(["nft", "list", "table", "netdev", self.name], check=False).ok:
                raise RuntimeError(f"nft table {self.record} exists and is not the lab's: not touched")
            self.ledger.add("nft", self.record)
        sh(["nft", "add", "table", "netdev", self.name])
        listing = json.loads(sh(["nft", "-j", "list", "table", "netdev", self.name]).out)
        chains = {i["chain"]["name"] for i in listing["nftables"] if "chain" in i}
        ports = [p for p in (*self.ovs.ports(), *self.nics) if link_exists(None, p)]
        for chain in chains - {f"in_{p}" for p in ports}:  # of taps gone with their VMs
            sh(["nft", "delete", "chain", "netdev", self.name, chain], check=False)
        for port in ports:
            if port not in self.nics:  # a NIC's MTU is its network's (hosts.<name>.underlay_mtu)
                self.ovs.vsctl("set", "interface", port, f"mtu_request={self.ovs.mtu}")
            sh(["ip", "link", "set", port, "addrgenmode", "none"], check=False)
            sh(["ip", "-6", "addr", "flush", "dev", port, "scope", "link"], check=False)
            # Anew each time: a tap of a destroyed VM may come back under the same name.
            chain = f"in_{port}"
            sh(["nft", "delete", "chain", "netdev", self.name, chain], check=False)
            sh(["nft", f"add chain netdev {self.name} {chain} {{ type filter hook ingress "
                       f'device "{port}" priority 0 ; policy drop ; }}'])
            sealed.append(port)
        return sealed

    def remove(self) -> list[str]:
        if not self.ledger.get("nft", self.record):
            return []
        done = []
        if sh(["nft", "delete", "table", "netdev", self.name], check=False).ok:
            done.append(f"nft table {self.record}")
        self.ledger.drop("nft", self.record)
        return done
