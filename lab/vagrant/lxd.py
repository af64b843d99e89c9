"""LXD inside a tenant VM, driven through pylxd over LXD's HTTPS API on the VM's management
address, with a client certificate of the lab that provisioning makes trusted for the project
`default` only, and LXD's own server certificate pinned (read over SSH, whose host key is
checked: lab.substrate.vagrant.KnownHosts).

Only the bootstrap (start LXD, listen on the management address, pin its certificate, trust
ours, make the storage pool, import the box's image) goes over SSH, since it needs LXD's unix
socket or more than the project; everything else (profile, containers, exec, files) is the same
pylxd code as the embedded lab's.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pylxd
from pylxd.client import get_session_for_url

from lab import model
from lab.containers.container import LxdContainer, prune
from lab.containers.lxd_nodes import LxdNode
from lab.substrate.vagrant import VagrantNode
from lab.vagrant import state

PORT = 8443
POOL = "default"
POOL_SIZE = "4GiB"  # a btrfs loop file on the VM's sparse 8 GB disk: each container a snapshot
IMAGE = "/var/lib/vxlab/images/vxlab.tar"  # baked into the box (lab/vagrant/box.py)
ALIAS = "vxlab"
PROJECT = "default"  # the lab's containers, profile and image: all the certificate may reach
SERVER_CERT = "/var/lib/lxd/server.crt"
DAYS = 365  # made anew a day before it ends (then provisioning trusts the new one)


class ClientCert:
    """The lab's LXD client certificate, in the lab's private state dir (KEEP/<lab>/lxd), with
    the server certificates pinned there."""

    _making = threading.Lock()  # tenants are provisioned side by side: one pair, not two halves

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.dir = state.KEEP / lab / "lxd"
        self.crt = self.dir / "client.crt"
        self.key = self.dir / "client.key"

    def ensure(self) -> ClientCert:
        with self._making:
            return self._ensure()

    def _ensure(self) -> ClientCert:
        state.keep_dir(self.lab, "lxd")
        if self.key.exists() and subprocess.run(
                ["openssl", "x509", "-checkend", "86400", "-noout", "-in", str(self.crt)],
                capture_output=True).returncode == 0:
            return self
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:secp384r1", "-nodes", "-days", str(DAYS),
                        "-subj", f"/CN=vxlab-{self.lab}", "-keyout", str(self.key), "-out", str(self.crt)],
                       check=True, capture_output=True)  # in a 0700 dir: private as it is written
        self.key.chmod(0o600)
        return self

    def server(self, vm: str) -> Path:
        """Where a VM's LXD server certificate is pinned."""
        return self.dir / f"server-{vm}.crt"


class VmLxd:
    """The LXD daemon of one tenant VM, as pylxd sees it (an `LxdApi` for LxdContainer)."""

    def __init__(self, vm: VagrantNode, cert: ClientCert) -> None:
        self.vm = vm
        self.cert = cert
        self._client: pylxd.Client | None = None
        self._error: Exception | None = None
        self.execs = threading.BoundedSemaphore(3)  # see LxdApi: more and LXD times out

    @property
    def endpoint(self) -> str:
        return f"https://{self.vm.endpoint.hostname}:{PORT}"

    def pin(self) -> Path:
        """LXD's server certificate, read from the VM over SSH (its host key checked), pinned:
        every HTTPS request requires exactly this certificate."""
        text = self.vm.read(SERVER_CERT) or ""
        if "-----BEGIN CERTIFICATE-----" not in text:
            raise RuntimeError(f"{self.vm.name}: no LXD server certificate in {SERVER_CERT}")
        path = self.cert.server(self.vm.name)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            self._client = None
        return path

    def client(self) -> pylxd.Client:
        if self._client is None:
            pinned = self.cert.server(self.vm.name)
            if not pinned.exists():
                self.pin()
            # A certificate file as `verify`: pylxd requires its SHA-256 fingerprint of the
            # server (LXD's self-signed certificate names its host, not the address we use).
            session = get_session_for_url(self.endpoint, verify=str(pinned),
                                          cert=(str(self.cert.crt), str(self.cert.key)))
            # requests lets REQUESTS_CA_BUNDLE (set on many machines, CI here) override
            # `verify`, and would take proxies from the environment: neither applies.
            session.trust_env = False
            # Long: under emulation the first container unpacks the image (minutes); waits block.
            self._client = pylxd.Client(endpoint=self.endpoint, session=session, timeout=1200)
        return self._client

    def bootstrap(self) -> None:
        """LXD running, listening on the management address only, its certificate pinned, ours
        trusted (for the project only), the storage pool made."""
        run = self.vm.run
        run(["systemctl", "start", "lxd.service"], timeout=180)  # socket-activated otherwise
        run(["lxd", "waitready", "--timeout", "120"], timeout=150)
        address = f"{self.vm.endpoint.hostname}:{PORT}"
        if run(["lxc", "config", "get", "core.https_address"]).out.strip() != address:
            run(["lxc", "config", "set", "core.https_address", address])
        self.pin()
        # The pool is the server's, not the project's: made here, with LXD's own client.
        if not run(["lxc", "storage", "show", POOL], check=False).ok:
            run(["lxc", "storage", "create", POOL, "btrfs", f"size={POOL_SIZE}"], timeout=120)
        if self._trusted():
            return
        self.vm.put("/root/vxlab-lxd-client.crt", self.cert.crt.read_text(), 0o600)
        run(["lxc", "config", "trust", "add", "--restricted", "--projects", PROJECT,
             "/root/vxlab-lxd-client.crt"], check=False)
        run(["rm", "-f", "/root/vxlab-lxd-client.crt"])
        self._client = None
        if not self._trusted():
            raise RuntimeError(f"{self.vm.name}: LXD does not trust {self.cert.crt}"
                               + (f" ({self._error})" if self._error else ""))

    def _trusted(self) -> bool:
        try:
            return bool(self.client().trusted)
        except Exception as e:  # not listening yet, or not the pinned certificate
            self._client, self._error = None, e
            return False

    def init(self, bridge: str, mtu: int) -> None:
        """Default profile (eth0 on `bridge`, as the seed) and the box's image; idempotent."""
        client = self.client()
        profile = client.profiles.get("default")
        devices = {
            "root": {"type": "disk", "path": "/", "pool": POOL},
            "eth0": {"type": "nic", "name": "eth0", "nictype": "bridged", "parent": bridge, "mtu": str(mtu)},
        }
        if profile.devices != devices:
            profile.devices = devices
            profile.save(wait=True)
        if not client.images.exists(ALIAS, alias=True):
            # From the box's own copy: nothing crosses the management network.
            self.vm.run(["lxc", "image", "import", IMAGE, "--alias", ALIAS], timeout=900)


class VmLxdNode(LxdNode):
    """A container in a tenant VM; an interactive command goes through the VM's `lxc`."""

    def __init__(self, name: str, container: LxdContainer, vm: VagrantNode) -> None:
        super().__init__(name, container)
        self.vm = vm

    def interactive(self, argv: Sequence[str]) -> list[str]:
        return self.vm.interactive(["lxc", "exec", self.container.name, "--", *argv])


class TenantVmLxd:
    """One tenant VM's LXD and that tenant's containers (named as in the seed)."""

    def __init__(self, lab: model.Lab, tenant: str, vm: VagrantNode, cert: ClientCert) -> None:
        self.lab = lab
        self.tenant = tenant
        self.vm = vm
        self.lxd = VmLxd(vm, cert)

    def node(self, name: str) -> VmLxdNode:
        return VmLxdNode(name, LxdContainer(self.lxd, name), self.vm)

    def up(self, progress: Callable[[str], None]) -> None:
        from lab.pool import parallel

        self.lxd.bootstrap()
        self.lxd.init(self.lab.shared_vlan.bridge, self.lab.shared_vlan.mtu)
        progress(f"LXD in {self.vm.name}: pool, profile on {self.lab.shared_vlan.bridge}, image")

        def launch(name: str) -> None:
            node = self.node(name)
            node.container.launch(ALIAS)
            state = node.container.wait_booted(timeout=300)  # systemd under emulation: slow
            if node.put("/etc/hostname", f"{name}\n"):
                node.run(["hostname", name])
            progress(f"{name} running ({state})")

        parallel(launch, list(self.lab.containers_of(self.tenant)))
        for name in prune(self.lxd, set(self.lab.containers_of(self.tenant))):
            progress(f"{name}: removed (no longer in the lab description)")
