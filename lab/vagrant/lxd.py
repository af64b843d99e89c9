"""LXD inside a tenant VM, driven through pylxd over LXD's HTTPS API on the VM's management
address, with a client certificate of the lab that provisioning makes trusted.

Only the bootstrap (start LXD, listen on the management address, trust our certificate,
import the box's image) goes over SSH, since it needs LXD's unix socket; everything else
(pool, profile, containers, exec, files) is the same pylxd code as the embedded lab's.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pylxd
import urllib3
from pylxd.client import get_session_for_url

from lab import model
from lab.containers.container import LxdContainer, prune
from lab.containers.lxd_nodes import LxdNode
from lab.substrate.vagrant import VagrantNode

PORT = 8443
POOL = "default"
POOL_SIZE = "4GiB"  # a btrfs loop file on the VM's sparse 8 GB disk: each container a snapshot
IMAGE = "/var/lib/vxlab/images/vxlab.tar"  # baked into the box (lab/vagrant/box.py)
ALIAS = "vxlab"


class ClientCert:
    """The lab's LXD client certificate: made once, kept outside the repository."""

    def __init__(self, directory: Path) -> None:
        self.crt = directory / "lxd-client.crt"
        self.key = directory / "lxd-client.key"

    def ensure(self) -> ClientCert:
        if self.crt.exists() and self.key.exists():
            return self
        self.crt.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:secp384r1", "-nodes", "-days", "3650", "-subj", "/CN=vxlab",
                        "-keyout", str(self.key), "-out", str(self.crt)],
                       check=True, capture_output=True)
        self.key.chmod(0o600)
        return self


class VmLxd:
    """The LXD daemon of one tenant VM, as pylxd sees it (an `LxdApi` for LxdContainer)."""

    def __init__(self, vm: VagrantNode, cert: ClientCert) -> None:
        self.vm = vm
        self.cert = cert
        self._client: pylxd.Client | None = None
        self.execs = threading.BoundedSemaphore(3)  # see LxdApi: more and LXD times out

    @property
    def endpoint(self) -> str:
        return f"https://{self.vm.endpoint.hostname}:{PORT}"

    def client(self) -> pylxd.Client:
        if self._client is None:
            # The server's certificate is LXD's self-signed one, for its host name, not for
            # the address: not verified (the management network is the host's, isolated), and
            # urllib3 would warn on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            session = get_session_for_url(self.endpoint, verify=False,
                                          cert=(str(self.cert.crt), str(self.cert.key)))
            # requests lets REQUESTS_CA_BUNDLE (set on many machines, CI here) override
            # verify=False, and would take proxies from the environment: neither applies.
            session.trust_env = False
            # Long: under emulation the first container unpacks the image (minutes); waits block.
            self._client = pylxd.Client(endpoint=self.endpoint, session=session, timeout=1200)
        return self._client

    def bootstrap(self) -> None:
        """LXD running, listening on the management address, our certificate trusted."""
        run = self.vm.run
        run(["systemctl", "start", "lxd.service"], timeout=180)  # socket-activated otherwise
        run(["lxd", "waitready", "--timeout", "120"], timeout=150)
        address = f"{self.vm.endpoint.hostname}:{PORT}"
        if run(["lxc", "config", "get", "core.https_address"]).out.strip() != address:
            run(["lxc", "config", "set", "core.https_address", address])
        if self._trusted():
            return
        self.vm.put("/root/vxlab-lxd-client.crt", self.cert.crt.read_text(), 0o600)
        run(["lxc", "config", "trust", "add", "/root/vxlab-lxd-client.crt"], check=False)
        run(["rm", "-f", "/root/vxlab-lxd-client.crt"])
        self._client = None
        if not self._trusted():
            raise RuntimeError(f"{self.vm.name}: LXD does not trust {self.cert.crt}")

    def _trusted(self) -> bool:
        try:
            return bool(self.client().trusted)
        except Exception:  # not listening yet: pylxd raises ClientConnectionFailed
            self._client = None
            return False

    def init(self, bridge: str, mtu: int) -> None:
        """Pool, default profile (eth0 on `bridge`, as the seed) and the box's image; idempotent."""
        client = self.client()
        if not client.storage_pools.exists(POOL):
            client.storage_pools.create({"name": POOL, "driver": "btrfs", "config": {"size": POOL_SIZE}})
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
