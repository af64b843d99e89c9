"""Processes of this machine, by pid only (never by name): is it alive, is it the program
we think, stop it.

A process vxlab starts detaches from it; PID 1 reaps it, and on this kind of machine PID 1 is
not systemd and may be slow: a dead, unreaped process (a zombie) counts as gone everywhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import psutil

from lab.host.wait import until


def alive(pid: int) -> bool:
    """Running: it exists and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def zombie(pid: int, program: str | None = None) -> bool:
    """Dead but not yet reaped (of `program`, if given: its pid may have been reused)."""
    try:
        p = psutil.Process(pid)
        return p.status() == psutil.STATUS_ZOMBIE and (program is None or _named(p, program))
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def runs(pid: int, program: str, netns: str | None = None) -> bool:
    """pid is a live process of `program` (its argv[0]'s base name), inside the named network
    namespace if given (guards against pid reuse)."""
    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE or not _named(p, program):
            return False
        return netns is None or os.stat(f"/proc/{pid}/ns/net").st_ino == _netns_inode(netns)
    except (psutil.NoSuchProcess, psutil.AccessDenied, FileNotFoundError, ProcessLookupError):
        return False


def _named(p: psutil.Process, program: str) -> bool:
    base = os.path.basename(program)
    try:
        argv0 = p.cmdline()[:1]
    except (psutil.ZombieProcess, psutil.AccessDenied):
        argv0 = []
    if argv0:
        return os.path.basename(argv0[0]) == base
    return base.startswith(p.name())  # a zombie has no cmdline; comm is cut to 15 bytes


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return None


def terminate(pids: Iterable[int], timeout: float = 5, first: int = 15) -> list[int]:
    """Signal `first` (SIGTERM), wait up to `timeout`, then SIGKILL what is left and wait
    again; returns the pids that were still alive after all (normally none)."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))
    for sig in (first, 9):
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        # Not psutil.wait_procs: it counts a zombie as alive, and waits for PID 1's reaping.
        until(lambda left=procs: not any(alive(p.pid) for p in left), timeout)
        procs = [p for p in procs if alive(p.pid)]
        if not procs:
            break
    return [p.pid for p in procs]


def environ(pid: int) -> dict[str, str]:
    """A process's environment ({} if it is gone, a zombie or a kernel thread)."""
    try:
        return psutil.Process(pid).environ()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}


def where(match: Callable[[psutil.Process], bool]) -> list[int]:
    """Live processes other than this one for which match(process) holds; one that goes
    while it is looked at is left out."""
    found = []
    for p in psutil.process_iter():
        if p.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if match(p) and alive(p.pid):
                found.append(p.pid)
    return found


def with_env(name: str, value: str) -> list[int]:
    """Live processes whose environment has name=value (those a daemon spawned inherit it)."""
    return where(lambda p: p.environ().get(name) == value)


def pid_in(pidfile: Path) -> int | None:
    """The pid a pid file names (first word), or None."""
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
