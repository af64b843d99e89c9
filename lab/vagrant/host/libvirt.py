"""libvirt on the host: its daemons (started by hand, by pid file, if none runs), the two networks
the Vagrantfile names, the storage pool vagrant-libvirt uses, qemu.conf; each thing made recorded
in the lab's Ledger first, and removed by that record only: the lab's domains, their disks and
the box's volume `vagrant up` makes, what libvirtd writes for the lab's networks, the chains and
tables libvirt leaves in netfilter."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import quoteattr

from lab import model
from lab.host.run import sh
from lab.host.wait import until
from lab.substrate.base import Result
from lab.vagrant import box as boxes
from lab.vagrant import spec as specs
from lab.vagrant.host.daemons import Daemon
from lab.vagrant.host.undo import Backups, DaemonStart, Ledger, add_path

QEMU_CONF = Path("/etc/libvirt/qemu.conf")
NET_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart")
QEMU_LOGS = Path("/var/log/libvirt/qemu")
NET_RUN = Path("/run/libvirt/network")  # a network's state while it runs (and some after)
DNSMASQ = Path("/var/lib/libvirt/dnsmasq")  # a DHCP network's files, some kept after it stops
CAPS_CACHE = Path("/var/cache/libvirt/qemu/capabilities")  # libvirtd's probe of each QEMU binary
EMULATORS = "/usr/bin/qemu-system-*"
IMAGES = Path("/var/lib/libvirt/images")
POOL = "default"  # the storage pool vagrant-libvirt puts boxes and disks in
BOX_VOLUMES = "vxlab-VAGRANTSLASH-"  # vagrant-libvirt's volume of a vxlab/... box (any)
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

    def __init__(self, lab: model.Lab, run: Path, backups: Backups, ledger: Ledger,
                 say: Callable[[str], None]) -> None:
        self.lab, self.run, self.backups, self.ledger, self.say = lab, run, backups, ledger, say
        self.switch = specs.switch_network(lab)
        self.mgmt = specs.management(lab)
        self.domains = specs.domains(lab)
        self.daemons = [Daemon(n, (n, "-d", "-p", str(run / f"{n}.pid")), run / f"{n}.pid")
                        for n in ("virtlogd", "virtlockd", "libvirtd")]

    def up(self) -> bool:
        """libvirtd answers (ours or not)."""
        return sh([*VIRSH, "uri"], check=False, timeout=20).ok

    def ours(self) -> bool:
        """One of its daemons is ours (started by prepare) and runs."""
        return any(d.pid() for d in self.daemons)

    def start(self) -> None:
        if self.up():
            if self.daemons[-1].pid() is None:
                self.say("libvirtd: using the one already running (not ours: cleanup leaves it)")
            return
        footprint = DaemonStart(self.ledger, self.backups)
        before = footprint.before()
        self.ledger.add("daemon", "libvirtd")  # its files, chains and tables are ours to remove
        for d in self.daemons:
            if d.start():
                self.say(f"{d.name} started (pid {d.pid()})")
        if not until(self.up, 30, pause=0.2):
            raise RuntimeError("libvirtd does not answer on qemu:///system")
        made = footprint.after(before)
        self.say(f"libvirtd: {len(made)} paths its start made or rewrote (recorded)")
        # Its probe of each QEMU binary, cached when first needed (file named by the binary's path)
        add_path(self.ledger, CAPS_CACHE)
        for emulator in sorted(Path("/").glob(EMULATORS.lstrip("/"))):
            add_path(self.ledger, CAPS_CACHE / f"{hashlib.sha256(str(emulator).encode()).hexdigest()}.xml")

    def stop(self) -> list[str]:
        return [f"{d.name} stopped" for d in reversed(self.daemons) if d.stop()]

    def virsh(self, *args: str, check: bool = True) -> Result:
        return sh([*VIRSH, *args], check=check, timeout=120)

    def names(self, *args: str) -> list[str]:
        """What a virsh listing prints, a name a line."""
        return [n.strip() for n in self.virsh(*args).out.splitlines() if n.strip()]

    def pools(self, *flags: str) -> list[str]:
        return self.names("pool-list", "--name", *flags)

    def volumes(self, pool: str = POOL) -> dict[str, str]:
        """The pool's volumes: name -> path."""
        out = {}
        for line in self.virsh("vol-list", "--pool", pool).out.splitlines():
            if line.strip():
                name, path = line.split(maxsplit=1)
                out[name] = path.strip()
        return out

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
        self.backups.left(QEMU_CONF)
        self.say("qemu.conf: QEMU runs as root (recorded; cleanup restores it)")

    def no_autostart(self) -> None:
        """libvirtd would start autostart networks, and a NAT one turns on forwarding."""
        if not NET_AUTOSTART.is_dir():
            return
        for link in NET_AUTOSTART.iterdir():
            self.backups.save(link)
            link.unlink()
            self.backups.left(link)
            self.say(f"libvirt network autostart {link.name}: off while the lab's libvirtd runs")

    def network_xml(self) -> dict[str, tuple[str, str]]:
        """The two networks, as libvirt XML, with their bridges. Transient (net-create): nothing
        under /etc."""
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
        # Each VM's address is fixed by its MAC (sshd listens there); the range is for others.
        vms = specs.vms(self.lab)
        first, last = host.network.network_address + 100, host.network.broadcast_address - 1
        hosts = [f"      <host mac='{vm.mgmt_mac}' name={quoteattr(vm.name)} ip='{vm.mgmt_address}'/>"
                 for vm in vms]
        # No <forward>: isolated. Ports isolated: VMs reach the host's SSH client, not each
        # other (the lab's traffic goes through routerVM only). No DNS: nothing to resolve.
        mgmt = "\n".join([
            "<network>", f"  <name>{mg.name}</name>",
            f"  <bridge name={quoteattr(mg.bridge)} stp='off' delay='0'/>",
            "  <port isolated='yes'/>", "  <dns enable='no'/>",
            f"  <ip address='{host.ip}' netmask='{host.netmask}'>",
            f"    <dhcp>\n      <range start='{first}' end='{last}'/>", *hosts, "    </dhcp>",
            "  </ip>", "</network>", ""])
        return {sw.name: (switch, sw.bridge), mg.name: (mgmt, mg.bridge)}

    def networks(self, xmls: dict[str, tuple[str, str]]) -> None:
        """Create those of these networks that are not active (name -> XML, bridge); refuse a
        network of the same name that is not the lab's."""
        active = set(self.names("net-list", "--name"))
        defined = set(self.names("net-list", "--all", "--name"))
        for name, (xml, bridge) in xmls.items():
            if name in defined and not self.ledger.get("network", name):
                raise RuntimeError(f"libvirt network {name} exists and is not lab "
                                   f"{self.lab.name}'s: not touched")
            if name in active:
                continue
            self.ledger.add("network", name)
            # what libvirtd writes for it, some of which stays after it stops
            for path in (NET_RUN / f"{name}.xml", NET_RUN / f"{name}.pid", DNSMASQ,
                         *(DNSMASQ / f"{name}.{ext}" for ext in ("conf", "hostsfile", "addnhosts")),
                         *(DNSMASQ / f"{bridge}.{ext}" for ext in ("status", "macs"))):
                add_path(self.ledger, path)
            add_path(self.ledger, NET_RUN / name, tree=True)
            path = self.run / f"net-{name}.xml"
            path.write_text(xml)
            self.virsh("net-create", str(path))
            self.say(f"libvirt network {name} created")

    def pool(self) -> None:
        """vagrant-libvirt's storage pool, unless there: made transient (nothing under /etc)."""
        if POOL in self.pools("--all"):
            return
        self.ledger.add("pool", POOL)
        add_path(self.ledger, IMAGES)
        self.virsh("pool-create-as", POOL, "dir", "--target", str(IMAGES), "--build")
        self.say(f"libvirt storage pool {POOL} created ({IMAGES})")

    def expect_vms(self) -> None:
        """Record what `vagrant up` will make for the lab, where it is not there yet (what is
        there is not ours): its domains, their disks and QEMU logs, and the box's volume."""
        defined = set(self.names("list", "--all", "--name"))
        volumes = self.volumes() if POOL in self.pools() else {}
        for dom in self.domains:
            if self.ledger.get("domain", dom):
                continue
            if dom in defined:
                self.say(f"domain {dom} exists and is not the lab's: vagrant up will refuse it, "
                         "host.down leaves it")
                continue
            self.ledger.add("domain", dom)
            add_path(self.ledger, QEMU_LOGS / f"{dom}.log")
            if f"{dom}.img" not in volumes:
                self.ledger.add("volume", f"{dom}.img")
        box = boxes.current()  # the one `vagrant up` will upload (any vxlab box if none is built)
        prefix = box_volumes(box.name) if box else BOX_VOLUMES
        if not self.ledger.entries("box-volumes"):
            self.ledger.add("box-volumes", prefix, before=sorted(v for v in volumes if v.startswith(prefix)))

    # -- cleanup --------------------------------------------------------------------------

    def remove_vms(self) -> list[str]:
        """The lab's domains (left by an interrupted up or a missing destroy), their disks, and
        the box volumes made since host.up that nothing uses."""
        done = []
        defined = set(self.names("list", "--all", "--name"))
        for dom in self.ledger.names("domain"):
            if dom in defined:
                self.virsh("destroy", dom, check=False)
                self.virsh("undefine", dom, "--nvram", check=False)
                done.append(f"domain {dom}")
            self.ledger.drop("domain", dom)
        if not (self.ledger.entries("volume") or self.ledger.entries("box-volumes")):
            return done
        if POOL not in self.pools() and self.ledger.get("pool", POOL):
            self.pool()  # ours, gone with a libvirtd that died (transient): again, to reach the volumes
        if POOL not in self.pools():
            raise RuntimeError(f"storage pool {POOL} is not active: the lab's volumes in it cannot "
                               f"be removed (virsh pool-start {POOL}, then host.down again)")
        volumes = self.volumes()
        for vol in self.ledger.names("volume"):
            if vol in volumes:
                self.virsh("vol-delete", "--pool", POOL, vol)
                done.append(f"volume {vol}")
            self.ledger.drop("volume", vol)
        for entry in self.ledger.entries("box-volumes"):
            volumes = self.volumes()
            for vol in sorted(v for v in volumes if v.startswith(entry["name"]) and v not in entry["before"]):
                users = self.users_of(volumes[vol])
                if users:
                    done.append(f"volume {vol}: used by {', '.join(users)}, left as it is")
                    continue
                self.virsh("vol-delete", "--pool", POOL, vol)
                done.append(f"volume {vol}")
            self.ledger.drop("box-volumes", entry["name"])
        return done

    def users_of(self, path: str) -> list[str]:
        """The volumes backed by the file `path`, and the domains whose disk it is."""
        users = []
        for pool in self.pools():
            for vol in self.volumes(pool):
                xml = self.virsh("vol-dumpxml", "--pool", pool, vol, check=False).out
                if re.search(rf"<backingStore>\s*<path>{re.escape(path)}</path>", xml):
                    users.append(f"volume {vol}")
        for dom in self.names("list", "--all", "--name"):
            r = self.virsh("domblklist", dom, "--details", check=False)
            if any(line.split()[-1] == path for line in r.out.splitlines() if line.split()):
                users.append(f"domain {dom}")
        return users

    def remove_pool(self) -> list[str]:
        """The storage pool, if we made it and it holds nothing more."""
        if not self.ledger.get("pool", POOL):
            return []
        done = []
        if POOL in self.pools():
            left = sorted(self.volumes())
            if left:
                done.append(f"storage pool {POOL}: holds volumes that are not the lab's "
                            f"({', '.join(left)}), left as it is")
            else:
                self.virsh("pool-destroy", POOL)
                done.append(f"storage pool {POOL}")
        self.ledger.drop("pool", POOL)
        return done

    def remove_networks(self) -> list[str]:
        done = []
        defined = set(self.names("net-list", "--all", "--name"))
        for name in self.ledger.names("network"):
            if name in defined:
                self.virsh("net-destroy", name, check=False)
                self.virsh("net-undefine", name, check=False)  # if someone made it persistent
                done.append(f"libvirt network {name}")
            self.ledger.drop("network", name)
        return done

    def serving_others(self) -> list[str]:
        """What our libvirtd runs that the lab did not make (stopping it would orphan them)."""
        if not (self.ours() and self.up()):
            return []
        ours = set(self.domains) | set(self.ledger.names("network"))
        return ([f"domain {d}" for d in self.names("list", "--name") if d not in ours]
                + [f"network {n}" for n in self.names("net-list", "--name") if n not in ours])


def box_volumes(box: str) -> str:
    """The start of the names vagrant-libvirt gives a box's volumes (then its version)."""
    return f"{box.replace('/', '-VAGRANTSLASH-')}_vagrant_box_image_"


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
