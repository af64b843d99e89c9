"""Soak of a timing profile: the embedded lab (light containers) runs for N minutes while
`invoke test.connectivity` runs in a loop, as a user would; then the VRRP transitions of that
time (issue 15's target for the fast profile: none, its sub-second timers must not flap under
the checks' load) and what the tenants' daemons cost in CPU (the fast profile's uplink probers:
a ping every 10 ms per family, counted by a shell loop).

    .venv/bin/python tests/bench_soak.py [--minutes 10] [--profile fast|seed]

Uses the lab name `vxsoak`, so a running `vxlab` is left alone. Run it under the e2e lock on a
shared machine; the load average is printed before and after. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402
import yaml  # noqa: E402

from lab import model  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402
from lab.host.process import pid_in  # noqa: E402
from lab.roles import tenant  # noqa: E402
from lab.ui import plain_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def lab_file(profile: str, where: Path) -> Path:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"], data["containers"]["driver"], data["vrrp"]["profile"] = "vxsoak", "netns", profile
    f = where / "lab.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    return f


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children, living and reaped."""
    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def daemons(elab: EmbeddedLab) -> dict[tuple[str, str], int]:
    """(tenant VM, daemon) -> its pid, for every daemon of the tenants."""
    out = {}
    for t in elab.lab.tenants.values():
        node = elab.node(t.vm)
        for name, pidfile in tenant.daemon_pids(elab.lab).items():
            pid = pid_in(Path(node.path(pidfile)))
            if pid:
                out[(t.vm, name)] = pid
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--profile", choices=["seed", "fast"], default="fast")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f = lab_file(args.profile, Path(tmp))
        elab = EmbeddedLab(model.load(f))
        elab.down()
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        try:
            print(f"up: {elab.up(timeout=180):.1f} s", flush=True)
            pids = daemons(elab)
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            t0, began = time.time(), time.monotonic()
            runs = failed = 0
            while time.monotonic() - began < args.minutes * 60:
                p = subprocess.run([sys.executable, "-m", "invoke", "test.connectivity", "--lab", str(f)],
                                   cwd=ROOT, capture_output=True, text=True)
                runs, failed = runs + 1, failed + (p.returncode != 0)
                if p.returncode:
                    print(f"  run {runs} failed:\n" + "\n".join(p.stdout.splitlines()[-8:]), flush=True)
                elif runs % 10 == 0:
                    print(f"  {runs} runs, {time.monotonic() - began:.0f} s", flush=True)
            elapsed = time.monotonic() - began
            now = daemons(elab)
            after = {k: cpu_seconds(p) for k, p in now.items() if pids.get(k) == p}  # not restarted
            seen = {t.vm: elab.node(t.vm).read(tenant.TRANSITIONS) or "" for t in elab.lab.tenants.values()}
        finally:
            elab.down()
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\n{args.profile} profile, {elapsed / 60:.1f} min: test.connectivity ran {runs} times, "
          f"{failed} failed")
    transitions = {vm: tenant.transitions(text, t0) for vm, text in seen.items()}
    print(f"VRRP transitions during the soak: {sum(map(len, transitions.values()))}")
    for vm, ts in transitions.items():
        for t, state in ts:
            print(f"  {vm} enters {state} at {t - t0:.1f} s")
    rows = []
    for vm, name in sorted(pids):
        if (vm, name) in after:
            rows.append((vm, name, f"{100 * (after[(vm, name)] - before[(vm, name)]) / elapsed:.2f}"))
        else:
            rows.append((vm, name, "restarted during the soak"))
    print("\nCPU of each daemon (and its children) over the soak, % of one core:")
    print(plain_table(("tenant", "daemon", "CPU %"), rows))


if __name__ == "__main__":
    main()
