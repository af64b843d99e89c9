"""host.up and host.down on every host of a lab with `hosts:`: this machine's side in this process
(lab.vagrant.host), each other host's over SSH with Fabric, all at once (a thread per host). On a
remote host the same vxlab runs, at the same path as here, given the lab description on its
standard input: validated here, and again there (`python -m lab.vagrant.hosts up|down HOST`).

A remote host gets Open vSwitch, its dsw-host and the stitch to the others (Host.prepare_switch);
its libvirt networks, management network and upstream come with the VMs' placement.

SSH as `hosts.<name>.ssh` says, with the user's keys and agent, or `Reach.identity`; the host's
key must be known already (the user's known_hosts, or `Reach.known_hosts`): never accepted blindly.
"""

from __future__ import annotations

import io
import shlex
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml
from fabric import Config, Connection
from paramiko import RejectPolicy

from lab import model
from lab.model.load import MAX_BYTES
from lab.vagrant import host as hostmod

ROOT = Path(__file__).resolve().parents[2]  # this checkout: vxlab's path on every host
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Reach:
    """How to log in to the remote hosts (None: the user's own SSH setup)."""

    identity: Path | None = None  # a private key, alone: no agent, no other key, no ssh config
    known_hosts: Path | None = None  # else ~/.ssh/known_hosts
    root: str = str(ROOT)  # where vxlab is on each host (its .venv inside)
    timeout: float = 300  # seconds one host's command may take


USERS_SSH = Reach()


def remote_hosts(lab: model.Lab) -> list[str]:
    return [n for n, h in (lab.hosts or {}).items() if not h.local]


def connect(lab: model.Lab, name: str, reach: Reach) -> Connection:
    ssh = lab.hosts[name].ssh
    only_key = reach.identity is not None
    conn = Connection(ssh.address, user=ssh.user, port=ssh.port, connect_timeout=20,
                      config=Config(overrides={"load_ssh_configs": not only_key}),
                      connect_kwargs=({"key_filename": [str(reach.identity)], "look_for_keys": False,
                                       "allow_agent": False} if only_key else {}))
    if reach.known_hosts is not None:
        conn.client.load_host_keys(str(reach.known_hosts))
    else:
        conn.client.load_system_host_keys()
    conn.client.set_missing_host_key_policy(RejectPolicy())  # Fabric's default adds any key
    return conn


def description(lab: model.Lab) -> str:
    """The lab as validated here (--set changes applied), for the other hosts."""
    return yaml.safe_dump(lab.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _remote(lab: model.Lab, name: str, action: str, reach: Reach, say: Progress) -> None:
    ssh = lab.hosts[name].ssh
    command = (f"cd {shlex.quote(reach.root)} && exec .venv/bin/python -m lab.vagrant.hosts "
               f"{action} {name}")  # `name` and `action`: a host name in the lab, up or down
    with connect(lab, name, reach) as conn:
        r = conn.run(command, in_stream=io.StringIO(description(lab)), hide=True, warn=True,
                     timeout=reach.timeout)
    for line in r.stdout.splitlines():
        say(f"{name}: {line}")
    if r.failed:
        why = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or [f"exit {r.exited}"]
        raise RuntimeError(f"host {name} ({ssh.user}@{ssh.address}:{ssh.port}): host.{action} "
                           f"failed: {why[0]}")


def _everywhere(lab: model.Lab, action: str, local: Callable[[], object], reach: Reach,
                say: Progress) -> None:
    """`local` here and `action` on each remote host, at once; every failure said together."""
    jobs: dict[str, Callable[[], object]] = {n: (lambda n=n: _remote(lab, n, action, reach, say))
                                             for n in remote_hosts(lab)}
    if lab.local_host() is not None:
        jobs = {lab.local_host(): local, **jobs}
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {n: pool.submit(fn) for n, fn in jobs.items()}
    failed = []
    for n, f in futures.items():
        e = f.exception()
        if e is not None:
            failed.append(str(e) if str(e).startswith("host ") else f"host {n}: {e}")
    if failed:
        raise RuntimeError("\n".join(failed))


def up(lab: model.Lab, progress: Progress = print, driver: str | None = None,
       upstream: str = "simulated", reach: Reach = USERS_SSH) -> None:
    _everywhere(lab, "up", lambda: hostmod.prepare(lab, progress, driver, upstream), reach, progress)


def down(lab: model.Lab, progress: Progress = print, reach: Reach = USERS_SSH) -> list[str]:
    """What was removed: this host's, then each remote host's lines (`HOST: ...`)."""
    removed: list[str] = []
    _everywhere(lab, "down", lambda: removed.extend(hostmod.cleanup(lab, progress)), reach,
                removed.append)
    return removed


def main(argv: list[str]) -> int:
    """On a remote host: `up HOST` or `down HOST`, the lab description on stdin."""
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print("usage: python -m lab.vagrant.hosts up|down HOST < lab.yaml", file=sys.stderr)
        return 2
    action, name = argv
    try:
        lab = model.parse(sys.stdin.read(MAX_BYTES + 1), "<lab description from SSH>")
    except model.LabError as e:
        print(f"invalid lab description:\n{e}", file=sys.stderr)
        return 2
    if name not in (lab.hosts or {}) or lab.hosts[name].local:
        print(f"{name!r} is no host of lab {lab.name!r} reached over SSH", file=sys.stderr)
        return 2
    h = hostmod.Host(lab, print, host=name)
    try:
        if action == "up":
            h.prepare_switch()
        else:
            print("\n".join(h.cleanup()) or "nothing to remove")
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
