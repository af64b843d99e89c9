"""Daemons of the host that vxlab starts itself (no systemd here): each detaches and writes
its pid file, and only the pid that file names, running the daemon's program, is signalled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab.host import process
from lab.host.run import sh
from lab.host.wait import until


@dataclass(frozen=True)
class Daemon:
    name: str  # its program, as started (argv[0])
    argv: tuple[str, ...]  # detaches, writing pidfile
    pidfile: Path

    def pid(self) -> int | None:
        """Its pid while it runs (a zombie has stopped: PID 1 reaps it when it will)."""
        pid = process.pid_in(self.pidfile)
        return pid if pid is not None and process.runs(pid, self.name) else None

    def start(self, timeout: float = 20) -> bool:
        """Start unless running; True if we started it."""
        if self.pid() is not None:
            return False
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        sh(self.argv, timeout=timeout)
        if not until(lambda: self.pid() is not None, timeout):
            raise RuntimeError(f"{self.name} did not start (no live pid in {self.pidfile})")
        return True

    def stop(self, timeout: float = 10) -> bool:
        """SIGTERM, then SIGKILL; True if it was running."""
        pid = self.pid()
        if pid is not None:
            process.terminate([pid], timeout)
        self.pidfile.unlink(missing_ok=True)
        return pid is not None
