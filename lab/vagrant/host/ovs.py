"""The host's Open vSwitch: userspace datapath (this kernel has no openvswitch module), its
two daemons ours by pid file, and one bridge, the seed's switch `dsw-host`."""

from __future__ import annotations

from pathlib import Path

from lab.host.run import sh
from lab.substrate.base import Result
from lab.vagrant.host.daemons import Daemon

OVS_RUN = Path("/var/run/openvswitch")  # libvirt runs ovs-vsctl on the default socket
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


class Ovs:
    """OVS serving OVS_RUN's socket, its database, logs and pid files under `run`."""

    def __init__(self, run: Path, bridge: str, mtu: int) -> None:
        self.run, self.bridge, self.mtu = run, bridge, mtu
        self.ovsdb = Daemon("ovsdb-server", (
            "ovsdb-server", str(run / "ovs/conf.db"), f"--remote=punix:{OVS_RUN}/db.sock",
            f"--pidfile={run / 'ovsdb-server.pid'}", f"--log-file={run / 'ovs/ovsdb-server.log'}",
            f"--unixctl={run / 'ovs/ovsdb-server.ctl'}", "--detach"), run / "ovsdb-server.pid")
        self.vswitchd = Daemon("ovs-vswitchd", (
            "ovs-vswitchd", f"unix:{OVS_RUN}/db.sock", f"--pidfile={run / 'ovs-vswitchd.pid'}",
            f"--log-file={run / 'ovs/ovs-vswitchd.log'}", f"--unixctl={run / 'ovs/ovs-vswitchd.ctl'}",
            "--detach"), run / "ovs-vswitchd.pid")
        self.daemons = (self.ovsdb, self.vswitchd)

    def start(self) -> None:
        """The daemons and the bridge, unless there; refuses an OVS that is not ours."""
        if not self.ovsdb.pid() and (OVS_RUN / "db.sock").exists() and self.vsctl("show", check=False).ok:
            raise RuntimeError(f"another Open vSwitch serves {OVS_RUN}/db.sock: not ours, not touched")
        (self.run / "ovs").mkdir(parents=True, exist_ok=True)
        OVS_RUN.mkdir(parents=True, exist_ok=True)
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

    def vsctl(self, *args: str, check: bool = True) -> Result:
        return sh(["ovs-vsctl", f"--db=unix:{OVS_RUN}/db.sock", "--timeout=10", *args], check=check)

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
