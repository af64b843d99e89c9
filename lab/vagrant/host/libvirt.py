"""libvirt on the host: its daemons (started by hand, by pid file), the two networks the
Vagrantfile names, qemu.conf; the removal of what `vagrant up` left in it, and of the chains
and tables libvirt leaves in netfilter."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lab import model
from lab.host.run import sh
from lab.host.wait import until
from lab.substrate.base import Result
from lab.vagrant import spec as specs
from lab.vagrant.host.daemons import Daemon
from lab.vagrant.host.undo import Backups

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
NET_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart")
QEMU_LOGS = Path("/var/log/libvirt/qemu")
VIRSH = ("virsh", "-q", "-c", "qemu:///system")
LIBVIRT_CHAINS = {  # (table, builtin chain) -> libvirt's chain hooked into it
    ("filter", "INPUT"): "LIBVIRT_INP", ("filter", "OUTPUT"): "LIBVIRT_OUT",
    ("filter", "FORWARD"): ("LIBVIRT_FWX", "LIBVIRT_FWI", "LIBVIRT_FWO"),
    ("nat", "POSTROUTING"): "LIBVIRT_PRT", ("mangle", "POSTROUTING"): "LIBVIRT_PRT",
}
TABLES = ("filter", "nat", "mangle")  # the iptables tables libvirt puts chains in
# iptables here is its nf_tables flavour: libvirt's first chain in a table makes the table.
IPTABLES_TABLES = tuple((family, table) for family in ("ip", "ip6") for table in TABLES)


class Libvirt:
    """The lab's side of libvirt: what it makes there, and the daemons if they are ours."""

    def __init__(self, lab: model.Lab, run: Path, backups: Backups, say: Callable[[str], None]) -> None:
        self.lab, self.run, self.backups, self.say = lab, run, backups, say
        self.switch = specs.switch_network(lab)
        self.mgmt = specs.management(lab)
        self.daemons = [Daemon(n, (n, "-d", "-p", str(run / f"{n}.pid")), run / f"{n}.pid")
                        for n in ("virtlogd", "virtlockd", "libvirtd")]

    def up(self) -> bool:
        """libvirtd answers (ours or not)."""
        return sh([*VIRSH, "uri"], check=False, timeout=20).ok

    def ours(self) -> bool:
        """One of its daemons is ours (started by prepare) and runs."""
        return any(d.pid() for d in self.daemons)

    def start(self) -> None:
        if self.up() and self.daemons[-1].pid() is None:
            self.say("libvirtd: using the one already running (not ours: cleanup leaves it)")
            return
        for d in self.daemons:
            if d.start():
                self.say(f"{d.name} started (pid {d.pid()})")
        if not until(self.up, 30, pause=0.2):
            raise RuntimeError("libvirtd does not answer on qemu:///system")

    def stop(self) -> list[str]:
        return [f"{d.name} stopped" for d in reversed(self.daemons) if d.stop()]

    def virsh(self, *args: str, check: bool = True) -> Result:
        return sh([*VIRSH, *args], check=check, timeout=120)

    def names(self, *args: str) -> list[str]:
        """What a virsh listing prints, a name a line."""
        return [n.strip() for n in self.virsh(*args).out.splitlines() if n.strip()]

    def pools(self) -> list[str]:
        return self.names("pool-list", "--all", "--name")

    # -- prepare --------------------------------------------------------------------------

    def qemu_conf(self, driver: str) -> None:
        """Where /dev/kvm exists but cannot run the VMs, libvirt re-probes QEMU on every call
        (virsh define: 44 s) unless QEMU runs as root: say so in qemu.conf."""
        if driver != "qemu" or not Path("/dev/kvm").exists():
            return
        text = QEMU_CONF.read_text()
        if '\nuser = "root"' in text:
            return
        self.backups.save(QEMU_CONF)
        QEMU_CONF.write_text(text + '\n# vxlab: TCG on a host with an unusable /dev/kvm\n'
                                    'user = "root"\ngroup = "root"\n')
        self.say("qemu.conf: QEMU runs as root (recorded; cleanup restores it)")

    def no_autostart(self) -> None:
        """libvirtd would start autostart networks, and a NAT one turns on forwarding."""
        if not NET_AUTOSTART.is_dir():
            return
        for link in NET_AUTOSTART.iterdir():
            self.backups.save(link)
            link.unlink()
            self.say(f"libvirt network autostart {link.name}: off while the lab's libvirtd runs")

    def network_xml(self) -> dict[str, str]:
        """The two networks, as libvirt XML. Transient (net-create): nothing under /etc."""
        sw, mg = self.switch, self.mgmt
        groups = []
        for name, vlans in sw.portgroups.items():
            tags = "".join(f"<tag id='{v}'/>" for v in vlans)
            trunk = " trunk='yes'" if len(vlans) > 1 else ""
            groups.append(f"  <portgroup name={quoteattr(name)}><vlan{trunk}>{tags}</vlan></portgroup>")
        switch = "\n".join([
            "<network>", f"  <name>{sw.name}</name>", "  <forward mode='bridge'/>",
            f"  <bridge name={quoteattr(sw.bridge)}/>", "  <virtualport type='openvswitch'/>",
            *groups, "</network>", ""])
        host = specs.mgmt_host_address(self.lab)
        first, last = list(host.network.hosts())[1], list(host.network.hosts())[-1]
        # No <forward>: isolated. Ports isolated: VMs reach the host's SSH client, not each
        # other (the lab's traffic goes through routerVM only). No DNS: nothing to resolve.
        mgmt = "\n".join([
            "<network>", f"  <name>{mg.name}</name>", "  <bridge stp='off' delay='0'/>",
            "  <port isolated='yes'/>", "  <dns enable='no'/>",
            f"  <ip address='{host.ip}' netmask='{host.netmask}'>",
            f"    <dhcp><range start='{first}' end='{last}'/></dhcp>", "  </ip>", "</network>", ""])
        return {sw.name: switch, mg.name: mgmt}

    def networks(self, xmls: dict[str, str]) -> None:
        """Create those of these networks that are not active."""
        active = set(self.names("net-list", "--name"))
        for name, xml in xmls.items():
            if name in active:
                continue
            path = self.run / f"net-{name}.xml"
            path.write_text(xml)
            self.virsh("net-create", str(path))
            self.say(f"libvirt network {name} created")

    # -- cleanup --------------------------------------------------------------------------

    def remove_objects(self, networks: tuple[str, ...], pools_before: list[str]) -> list[str]:
        """The lab's domains (left by an interrupted up or a missing destroy), these networks,
        the boxes' volumes and the QEMU logs; the pool `default` if we made it."""
        done = []
        prefix = specs.domain_prefix(self.lab)
        for dom in self.names("list", "--all", "--name"):
            if dom.startswith(prefix):
                self.virsh("destroy", dom, check=False)
                self.virsh("undefine", dom, "--nvram", "--remove-all-storage", check=False)
                done.append(f"domain {dom}")
        active = set(self.names("net-list", "--all", "--name"))
        for name in networks:
            if name in active:
                self.virsh("net-destroy", name, check=False)
                self.virsh("net-undefine", name, check=False)  # if someone made it persistent
                done.append(f"libvirt network {name}")
        # vagrant-libvirt uploads each box into the pool `default` (and makes the pool):
        # our boxes' volumes go, and the pool if it was not there before us.
        if "default" in self.pools():
            for vol in self.names("vol-list", "default"):
                name = vol.split()[0]
                if name.startswith(("vxlab-VAGRANTSLASH-", prefix)):
                    self.virsh("vol-delete", "--pool", "default", name, check=False)
                    done.append(f"volume {name}")
            if self.ours() and "default" not in pools_before:
                self.virsh("pool-destroy", "default", check=False)
                self.virsh("pool-undefine", "default", check=False)
                done.append("storage pool default")
        for log in QEMU_LOGS.glob(f"{prefix}*.log"):
            log.unlink()
        return done


# -- what libvirt leaves in netfilter -------------------------------------------------------

def chains() -> list[str]:
    """libvirt's LIBVIRT_* chains, as "tool table chain"."""
    out = []
    for tool in ("iptables", "ip6tables"):
        for table in TABLES:
            r = sh([tool, "-t", table, "-S"], check=False)
            out += [f"{tool} {table} {line.split()[1]}" for line in r.out.splitlines()
                    if line.startswith("-N LIBVIRT_")]
    return out


def remove_chains(before: list[str]) -> list[str]:
    """libvirt leaves its (emptied) LIBVIRT_* chains behind: remove those it made for us."""
    done = []
    for tool in ("iptables", "ip6tables"):
        for (table, builtin), names in LIBVIRT_CHAINS.items():
            for chain in (names,) if isinstance(names, str) else names:
                if f"{tool} {table} {chain}" in before:
                    continue
                if not sh([tool, "-t", table, "-n", "-L", chain], check=False).ok:
                    continue
                while sh([tool, "-t", table, "-D", builtin, "-j", chain], check=False).ok:
                    pass
                sh([tool, "-t", table, "-F", chain], check=False)
                sh([tool, "-t", table, "-X", chain], check=False)
                done.append(f"{tool} -t {table} {chain}")
    return done


def nft_tables() -> list[str]:
    """The host's nftables tables, as "family name"."""
    return [" ".join(line.split()[1:3]) for line in sh(["nft", "list", "tables"]).out.splitlines()
            if line.startswith("table ")]


def remove_tables(before: list[str] | None) -> list[str]:
    """The iptables tables libvirt's chains made: those that were not there before us
    and are empty now (no rule, no chain of their own, every hook accepting)."""
    if before is None:  # prepare() never recorded them: nothing is known to be ours
        return []
    done = []
    for family, table in IPTABLES_TABLES:
        name = f"{family} {table}"
        if name in before:
            continue
        r = sh(["nft", "-j", "list", "table", family, table], check=False)
        if not r.ok:
            continue
        objects = [next(iter(o.items())) for o in json.loads(r.out)["nftables"]]
        if all(kind in ("metainfo", "table") or (kind == "chain" and "hook" in o
                                                  and o.get("policy") == "accept")
               for kind, o in objects):
            sh(["nft", "delete", "table", family, table])
            done.append(f"nft table {name} (empty)")
    return done
