"""Benchmark of a classroom: N embedded labs side by side, brought up one after another.

    .venv/bin/python tests/bench_labs.py [--labs 10] [--driver netns|lxd] [--prefix NAME] [--json FILE]

Each lab (`vxroom0`, `vxroom1`, ..., or --prefix's: others' labs are left alone) is brought up
with `invoke up` as a student would type it, then checked with `invoke test.connectivity`; then, while lab 0
runs an uplink drill (`invoke failover.green --mode uplink`), every container of lab 1 pings
the lab's Internet every 50 ms and the probes it lost are counted; then every lab is taken
down. Prints each lab's up time and the memory of all labs together (RSS of their processes,
their containers' cgroups and LXD's file systems, as tests/bench_embedded.py counts it).
Targets (issue 16, 2 cores): 10 light labs each converged and passing test.connectivity,
memory <= 1.5 GiB in all; 4 LXD labs side by side converge and pass; 0 probes lost in lab B
during lab A's drill. Prints figures; asserts nothing (speed is not a test)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_embedded import memory_mib  # noqa: E402

from lab import model  # noqa: E402
from lab.drills.probes import parse_ping, pinger  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str) -> tuple[int, str, float]:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labs", type=int, default=10)
    ap.add_argument("--driver", choices=["netns", "lxd"], default="netns")
    ap.add_argument("--prefix", default="vxroom", help="the labs' names: PREFIX0, PREFIX1, ...")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    figures: dict = {"driver": args.driver, "labs": args.labs, "up_s": [], "checks_ok": []}
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(args.labs):
            data = yaml.safe_load(model.DEFAULT_LAB.read_text())
            data["name"], data["containers"]["driver"] = f"{args.prefix}{i}", args.driver
            f = Path(tmp) / f"{args.prefix}{i}.yaml"
            f.write_text(yaml.safe_dump(data, sort_keys=False))
            files.append(f)
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        labs = [EmbeddedLab(model.load(f)) for f in files]
        try:
            for lab in labs:
                lab.down()
            for i, f in enumerate(files):
                rc, out, took = invoke("up", "--lab", str(f))
                figures["up_s"].append(round(took, 1))
                rc_checks, checks, _ = invoke("test.connectivity", "--lab", str(f))
                figures["checks_ok"].append(rc == 0 and rc_checks == 0)
                print(f"  {args.prefix}{i}: up {took:.1f} s (rc {rc}), test.connectivity rc {rc_checks}",
                      flush=True)
                if rc or rc_checks:
                    print("\n".join((out + checks).splitlines()[-10:]), flush=True)
            figures["memory_mib"] = round(sum(memory_mib(lab) for lab in labs))
            if len(labs) > 1:
                figures["lost_in_b"] = drill_beside(labs[1], files[0], args.prefix)
        finally:
            t = time.monotonic()
            for lab in labs:
                lab.down()
            figures["down_all_s"] = round(time.monotonic() - t, 1)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    ups = figures["up_s"]
    print(f"\n{args.labs} {args.driver} labs side by side: up min/median/max "
          f"{min(ups):.1f} / {statistics.median(ups):.1f} / {max(ups):.1f} s "
          f"(first {ups[0]:.1f} s, last {ups[-1]:.1f} s); "
          f"{sum(figures['checks_ok'])} of {args.labs} converged and passed test.connectivity")
    print(f"memory of all labs: {figures.get('memory_mib', '-')} MiB; down of all: {figures['down_all_s']} s")
    if "lost_in_b" in figures:
        print(f"probes lost in {args.prefix}1 while {args.prefix}0 ran an uplink drill: "
              f"{figures['lost_in_b']}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


def drill_beside(b: EmbeddedLab, a_file: Path, prefix: str = "vxroom") -> dict[str, int]:
    """Lab A's uplink drill, with every container of lab B pinging B's Internet meanwhile:
    the probes each lost (container IPv4/IPv6 -> lost)."""
    res, interval = b.lab.internet.resolver, 0.05
    probes = {(c.name, fam): pinger(b.node(c.name), str(res.ipv4 if fam == "4" else res.ipv6), fam, interval)
              for c in b.lab.nodes() if c.is_container for fam in ("4", "6")}
    t0 = time.time()
    for p in probes.values():
        p.start()
    try:
        rc, out, took = invoke("failover.green", "--mode", "uplink", "--lab", str(a_file))
        print(f"  {prefix}0's uplink drill: rc {rc}, {took:.0f} s", flush=True)
    finally:
        for p in probes.values():
            p.stop()
    lost = {}
    for (c, fam), p in probes.items():
        series = parse_ping(p.output(), t0, interval)
        lost[f"{c} IPv{fam}"] = sum(not probe.replied for probe in series)
        p.remove()
    return lost


if __name__ == "__main__":
    main()
