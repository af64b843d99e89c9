"""The host's Open vSwitch: userspace datapath (this kernel has no openvswitch module), its
two daemons ours by pid file, and one bridge, the seed's switch `dsw-host`. A test may run one
in a network namespace of its own, on a socket of its own (tests/e2e/test_stitch.py)."""

from __future__ import annotations

from pathlib import Path

from lab.host.run import sh
from lab.substrate.base import Result
from lab.vagrant.host.daemons import Daemon

OVS_RUN = Path("/var/run/openvswitch")  # libvirt runs ovs-vsctl on the default socket
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Ovs:
    """OVS serving `sock`'s db.sock (OVS_RUN's: the one libvirt uses), its database, logs and
    pid files under `run`; its datapath in network namespace `netns` (None: the host's).
    `system_routes` False: tunnels follow only the routes the lab adds (ovs/route/add), as
    when two endpoints of one machine would otherwise take the kernel's local route."""

    def __init__(self, run: Path, bridge: str, mtu: int, sock: Path = OVS_RUN,
                 netns: str | None = None, system_routes: bool = True) -> None:
        self.run, self.bridge, self.mtu, self.sock, self.netns = run, bridge, mtu, sock, netns
        self.ovsdb = Daemon("ovsdb-server", (
            "ovsdb-server", str(run / "ovs/conf.db"), f"--remote=punix:{sock}/db.sock",
            f"--pidfile={run / 'ovsdb-server.pid'}", f"--log-file={run / 'ovs/ovsdb-server.log'}",
            f"--unixctl={run / 'ovs/ovsdb-server.ctl'}", "--detach"), run / "ovsdb-server.pid")
        in_netns = ("ip", "netns", "exec", netns) if netns else ()
        self.vswitchd = Daemon("ovs-vswitchd", (
            *in_netns, "ovs-vswitchd", f"unix:{sock}/db.sock", f"--pidfile={run / 'ovs-vswitchd.pid'}",
            f"--log-file={run / 'ovs/ovs-vswitchd.log'}", f"--unixctl={self.ctl}",
            *(() if system_routes else ("--disable-system-route",)), "--detach"), run / "ovs-vswitchd.pid")
        self.daemons = (self.ovsdb, self.vswitchd)

    def start(self) -> None:
        """The daemons and the bridge, unless there; refuses an OVS that is not ours."""
        if not self.ovsdb.pid() and (self.sock / "db.sock").exists() and self.vsctl("show", check=False).ok:
            raise RuntimeError(f"another Open vSwitch serves {self.sock}/db.sock: not ours, not touched")
        (self.run / "ovs").mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(parents=True, exist_ok=True)
        db = self.run / "ovs/conf.db"
        if not db.exists():
            sh(["ovsdb-tool", "create", str(db), OVS_SCHEMA])
        self.ovsdb.start()
        self.vsctl("--no-wait", "init")
        self.vswitchd.start()
        br = self.bridge
        # netdev: the userspace datapath. The bridge's own port stays down, no address.
        self.vsctl("--may-exist", "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
        self.vsctl("set", "interface", br, f"mtu_request={self.mtu}")

    @property
    def ctl(self) -> Path:
        """ovs-vswitchd's control socket (ovs-appctl -t)."""
        return self.run / "ovs/ovs-vswitchd.ctl"

    def vsctl(self, *args: str, check: bool = True) -> Result:
        return sh(["ovs-vsctl", f"--db=unix:{self.sock}/db.sock", "--timeout=10", *args], check=check)

    def appctl(self, *args: str, check: bool = True) -> Result:
        return sh(["ovs-appctl", "-t", str(self.ctl), "--timeout=10", *args], check=check)

    def ip(self, *args: str, check: bool = True) -> Result:
        """iproute2 where the datapath's devices are (the bridges' own ports)."""
        return sh(["ip", *(("-n", self.netns) if self.netns else ()), *args], check=check)

    def add_access_port(self, port: str, vlan: int) -> None:
        self.vsctl("--may-exist", "add-port", self.bridge, port, "--", "set", "port", port, f"tag={vlan}")

    def ports(self) -> list[str]:
        return self.vsctl("list-ports", self.bridge).out.split()

    def bridge_exists(self) -> bool:
        return self.ovsdb.pid() is not None and self.vsctl("br-exists", self.bridge, check=False).ok

    def remove_bridge(self) -> list[str]:
        if not self.ovsdb.pid():
            return []
        self.vsctl("--if-exists", "del-br", self.bridge)
        return [f"OVS bridge {self.bridge}"]

    def stop(self) -> list[str]:
        """(Even if the bridge could not be deleted: its device goes with ovs-vswitchd, its
        record with the database, which lives in self.run.) OVS_RUN, if start made it, is in
        the lab's Ledger."""
        return [f"{d.name} stopped" for d in (self.vswitchd, self.ovsdb) if d.stop()]
