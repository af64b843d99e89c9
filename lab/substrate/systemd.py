"""Services of nodes that run systemd (the VMs, the LXD containers): started through their
units, alive when the daemon's own pid file names a live process. systemd's word is not
enough: an LSB service (bookworm's isc-dhcp-server) stays "active" after its daemon died."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Protocol

from lab.substrate.base import Result, Service


def pid_alive(pidfile: str) -> str:
    """A shell test: the pid file names a live process (the one way vxlab tells a daemon runs)."""
    return f'kill -0 "$(cat {shlex.quote(pidfile)} 2>/dev/null)" 2>/dev/null'


class _Runs(Protocol):
    def run(self, argv: Sequence[str], *, input: str | None = None, check: bool = True,
            timeout: float = 60) -> Result: ...


class SystemdServices:
    """running/start/stop/log for a node with systemd; the node supplies `run`."""

    def running(self: _Runs, service: Service) -> bool:
        if service.pidfiles:
            return self.run(["sh", "-c", pid_alive(service.pidfiles[0])], check=False).ok
        return self.run(["systemctl", "is-active", "--quiet", service.unit or service.name], check=False).ok

    def start(self, service: Service, restart: bool = False) -> None:
        if self.running(service) and not restart:
            return
        unit = service.unit or service.name
        # enabled, so that it comes back when the node restarts (`enable --now` does not start
        # a SysV service); restarted, since a dead LSB daemon's unit still counts as active
        self.run(["systemctl", "enable", unit], check=False)  # type: ignore[attr-defined]
        self.run(["systemctl", "restart", unit])  # type: ignore[attr-defined]

    def units_changed(self: _Runs) -> None:
        self.run(["systemctl", "daemon-reload"])

    def stop(self: _Runs, service: Service) -> None:
        self.run(["systemctl", "stop", service.unit or service.name], check=False)

    def log(self: _Runs, service: Service, lines: int = 50) -> str:
        # a daemon without a unit of its own (ifupdown's dhclient) logs under its name
        which = ["-u", service.unit] if service.unit else ["-t", service.name]
        return self.run(["journalctl", *which, "--no-pager", "-n", str(lines)], check=False).out
