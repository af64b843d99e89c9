"""A systemd container of an LXD, through pylxd: launched, run in, copied to, deleted.

The LXD may be a daemon of ours in a namespace (lab/containers/daemon.py) or one in a VM
(lab/vagrant/lxd.py); a busy one refuses or answers late for a while, so what is safe to ask
again is asked again.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

import pylxd
import pylxd.exceptions
import requests
from tenacity import (
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    wait_incrementing,
)

TRANSIENT = (  # LXD errors worth a retry: its database refused for a moment
    "deadline exceeded", "database is locked", "transaction has already been committed or rolled back")


def _transient(e: BaseException) -> bool:
    return isinstance(e, pylxd.exceptions.LXDAPIException) and any(m in str(e) for m in TRANSIENT)


def _again_if_transient(call: Callable, tries: int = 4):
    """call(), again a bit later (1, 3, 5 s) while an overloaded LXD refuses for a moment (its
    database); only for calls that are safe to repeat."""
    retrying = Retrying(retry=retry_if_exception(_transient), stop=stop_after_attempt(tries),
                        wait=wait_incrementing(start=1, increment=2), reraise=True)
    try:
        return retrying(call)
    except pylxd.exceptions.LXDAPIException as e:  # the tasks say it in one line, not a traceback
        raise RuntimeError(f"LXD refused: {e}") from e


def _await(operation, timeout: float, tries: int = 3) -> dict:
    """An operation's outcome once it ends. Asking again is safe (a wait reads, it runs
    nothing), and needed: an LXD in a busy emulated VM was once more than 90 s late with the
    outcome of a command that its own `timeout` had ended long before."""
    retrying = Retrying(retry=retry_if_exception_type(requests.exceptions.ReadTimeout),
                        stop=stop_after_attempt(tries), reraise=True)
    reply = retrying(operation.wait.get, params={"timeout": round(timeout + 15)}, timeout=timeout + 30)
    return reply.json()["metadata"]


def prune(api: LxdApi, wanted: set[str]) -> list[str]:
    """Delete this LXD's instances that are not wanted (containers taken out of the lab's
    description; every instance of a lab's LXD is the lab's); returns their names."""
    stale = [i.name for i in api.client().instances.all() if i.name not in wanted]
    for name in stale:
        LxdContainer(api, name).delete()
    return stale


class LxdApi(Protocol):
    """Any LXD a container can live in: a daemon of ours on a unix socket (LxdDaemon), or one
    in a VM over HTTPS (lab/vagrant/lxd.py). Containers only need its pylxd client."""

    # How many commands it runs at once: beyond a few, an LXD in an emulated VM times out its
    # own database transactions ("context deadline exceeded").
    execs: threading.BoundedSemaphore

    def client(self) -> pylxd.Client: ...


class LxdContainer:
    """A systemd container of one daemon. Names must be unique across daemons (cgroups)."""

    def __init__(self, daemon: LxdApi, name: str) -> None:
        self.daemon = daemon
        self.name = name

    def _instance(self) -> pylxd.models.Instance:
        return self.daemon.client().instances.get(self.name)

    def launch(self, image_alias: str = "vxlab", hwaddr: str | None = None, mtu: int | None = None) -> None:
        """Create (if missing) and start (if not running); the hostname is the name.

        hwaddr and mtu override the profile's eth0 for this container; they apply at creation.
        Idempotent, so an overloaded LXD's transient refusal is met by trying again.
        """
        self.create(image_alias, hwaddr, mtu)
        self.start()

    def create(self, image_alias: str = "vxlab", hwaddr: str | None = None, mtu: int | None = None) -> None:
        """Create it (if missing), stopped: its NIC's parent need not exist yet, and the
        first container of a daemon unpacks the image into the pool (seconds) meanwhile."""
        _again_if_transient(lambda: self._create(image_alias, hwaddr, mtu))

    def start(self) -> None:
        """Start it if it is not running."""
        def start() -> None:
            instance = self._instance()
            if instance.status != "Running":
                instance.start(wait=True)

        _again_if_transient(start)

    def _create(self, image_alias: str, hwaddr: str | None, mtu: int | None) -> None:
        client = self.daemon.client()
        if not client.instances.exists(self.name):
            devices = {}
            if hwaddr or mtu:  # override the profile's eth0 with the same NIC plus these keys
                eth0 = dict(client.profiles.get("default").devices["eth0"])
                eth0.update({"hwaddr": hwaddr} if hwaddr else {})
                eth0.update({"mtu": str(mtu)} if mtu else {})
                devices["eth0"] = eth0
            client.instances.create(
                {
                    "name": self.name,
                    "type": "container",
                    "devices": devices,
                    "source": {"type": "image", "alias": image_alias},
                },
                wait=True,
            )

    def wait_booted(self, timeout: float = 60) -> str:
        """Wait for systemd to finish booting; returns its state ("running", "degraded", ...).

        Right after start systemctl cannot reach systemd yet ("Failed to connect to bus",
        empty output): retry until it answers, then `--wait` covers the rest of the boot.
        """
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            left = max(1, round(deadline - time.monotonic()))
            state = self.run(["systemctl", "is-system-running", "--wait"], timeout=left)[1].strip()
            if state and state not in ("initializing", "starting"):
                break
            time.sleep(0.1)
        return state

    def run(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float = 60
    ) -> tuple[int, str, str]:
        """Run argv in the container; (exit code, stdout, stderr). Exit 124 means timeout.

        LXD records the output to log files instead of pylxd's websockets: pylxd's ws4py
        thread races its own teardown ("I/O operation on closed epoll object"). The price:
        no stdin stream, so `input` goes through a file, unlinked before argv starts.
        Coreutils' `timeout` bounds the run, and each API request is bounded too.
        """
        command = ["timeout", "--kill-after=5", str(timeout), *argv]
        if input is not None:
            stdin = f"/run/vxlab-stdin-{uuid.uuid4().hex}"
            self.put(stdin, input, mode=0o600)
            command = ["sh", "-c", 'exec <"$0" && rm -f "$0" && exec "$@"', stdin, *command]
        with self.daemon.execs:
            return self._exec(command, timeout)

    def _exec(self, command: list[str], timeout: float) -> tuple[int, str, str]:
        client = self.daemon.client()
        api = client.api.instances[self.name]
        request = {"command": command, "environment": {}, "interactive": False,
                   "wait-for-websocket": False, "record-output": True}
        # Refused before anything ran: safe to ask again.
        response = _again_if_transient(lambda: api.exec.post(json=request, timeout=60))
        # Every request bounded by the command's own timeout: a busy LXD (in an emulated VM)
        # once left a reply hanging for many minutes.
        op_id = response.json()["operation"].rsplit("/", 1)[1]
        operation = _await(client.api.operations[op_id], timeout)
        if operation.get("status") != "Success":
            raise RuntimeError(f"{self.name}: LXD could not run {command[3:]}: "
                               f"{operation.get('err') or operation.get('status')}")
        result = operation["metadata"]
        outputs = []
        for fd in ("1", "2"):
            log = api.logs[result["output"][fd].rsplit("/", 1)[1]]
            # The raw body: pylxd's get() takes any JSON body for an API reply, and a command's
            # output can be JSON (`ip -j ...`).
            body = log.session.get(log._api_endpoint, timeout=timeout + 10)
            body.raise_for_status()
            outputs.append(body.content.decode(errors="replace"))
            # Else they pile up in LXD_DIR/logs. Best effort, bounded: a busy LXD in an
            # emulated VM once left this reply hanging for minutes.
            with contextlib.suppress(requests.RequestException):
                log.session.delete(log._api_endpoint, timeout=30)
        return result["return"], outputs[0], outputs[1]

    def put(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._instance().files.put(path, data, mode=mode)

    def get(self, path: str) -> bytes:
        return self._instance().files.get(path)

    def state(self) -> str:
        """LXD's status ("Running", "Stopped", ...), or "Absent"."""
        try:
            return self._instance().status
        except pylxd.exceptions.NotFound:
            return "Absent"

    def stop(self, force: bool = True) -> None:
        """Forced by default: the lab throws containers away, no clean shutdown needed."""
        with contextlib.suppress(pylxd.exceptions.NotFound):
            instance = self._instance()
            if instance.status != "Stopped":
                instance.stop(force=force, wait=True)

    def delete(self) -> None:
        self.stop()
        with contextlib.suppress(pylxd.exceptions.NotFound):
            self._instance().delete(wait=True)
