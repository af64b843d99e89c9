"""Benchmark of the embedded lab: bring-up to converged, teardown, and memory, per driver.

    .venv/bin/python tests/bench_embedded.py [--runs 3] [--driver netns|lxd|both] [--json FILE]
        [--name LAB] [--log FILE]

Targets on a 2-core machine (issue 16): LXD driver <= 8 s to converged with the image
cached, netns driver <= 4 s, teardown <= 5 s. Uses the lab name `vxbench` (or --name), so a
running `vxlab` is left alone. Prints figures and each up's stages (where the time went; the
whole timeline of every up with --log); asserts nothing (speed is not a test)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import model  # noqa: E402
from lab.containers.image import ensure_image  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402
from lab.host.cgroups import container_cgroups  # noqa: E402
from lab.host.mounts import mounts  # noqa: E402
from lab.ui import Plain  # noqa: E402

TARGETS = {"netns": 4.0, "lxd": 8.0, "down": 5.0}  # issue 16


def bench_lab(driver: str, name: str = "vxbench") -> EmbeddedLab:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = name
    return EmbeddedLab(model.parse(yaml.safe_dump(data)), driver)


def memory_mib(elab: EmbeddedLab) -> float:
    """RSS of every process in the lab's namespaces, plus LXD: daemons, containers' cgroups
    and LXD_DIR if it is a tmpfs (it held the containers' file systems until they moved to a
    btrfs on disk)."""
    kib = 0
    pids: set[int] = set()
    for ns in elab.net.vm_namespaces() + elab.net.light_namespaces():
        out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout
        pids |= {int(p) for p in out.split()}
    if elab.driver == "lxd":
        from lab.containers.daemon import processes_using

        for tenant in elab.lab.tenants:
            pids |= set(processes_using(elab.lxd(tenant).daemon.lxd_dir))
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        except FileNotFoundError:
            pass
    mib = kib / 1024
    names = [f"{elab.lab.name}-{n.name}" for n in elab.lab.nodes() if n.is_container]
    for cg in container_cgroups(names):  # the containers' memory: cgroup v2 or v1's memory controller
        for f in ("memory.current", "memory.usage_in_bytes"):
            if (cg / f).exists() and "payload" in cg.name:
                mib += int((cg / f).read_text()) / 2**20
    tmpfs = {target for _, target, fstype, _ in mounts() if fstype == "tmpfs"}
    for tenant in elab.lab.tenants if elab.driver == "lxd" else ():
        d = elab.lxd(tenant).daemon.lxd_dir
        if str(d) not in tmpfs:
            continue
        df = subprocess.run(["df", "--output=used", "-k", str(d)], capture_output=True, text=True)
        mib += int(df.stdout.split()[-1]) / 1024
    return mib


class Timeline(Plain):
    """up's notes, to a log file if one is given; keeps the last one (where the time went)."""

    def __init__(self, log: TextIO) -> None:
        super().__init__(log)
        self.last = ""

    def note(self, msg: str) -> None:
        self.last = msg
        super().note(msg)

    stage = note


def run(driver: str, runs: int, name: str = "vxbench", log: TextIO | None = None) -> dict:
    elab = bench_lab(driver, name)
    elab.down()
    if driver == "lxd":
        ensure_image(progress=lambda m: print(f"  image: {m}"))  # the targets assume it cached
    ups, downs, mems = [], [], []
    for i in range(runs):
        timeline = Timeline(log or io.StringIO())
        print(f"--- {driver} run {i + 1}", file=timeline.out)
        t = time.monotonic()
        elab.up(timeline, timeout=180)
        ups.append(time.monotonic() - t)
        mems.append(memory_mib(elab))
        for tenant in elab.lab.tenants if driver == "lxd" and log else ():  # gone after down
            lxd_log = elab.lxd(tenant).daemon.log_file
            print(f"--- {lxd_log}\n{lxd_log.read_text(errors='replace')}", file=log, flush=True)
        t = time.monotonic()
        elab.down()
        downs.append(time.monotonic() - t)
        print(f"  {driver} run {i + 1}: up {ups[-1]:.1f} s, down {downs[-1]:.1f} s, "
              f"memory {mems[-1]:.0f} MiB", flush=True)
        print(f"    {timeline.last.split('] ', 1)[-1]}", flush=True)
    return {"up_s": ups, "down_s": downs, "memory_mib": mems}


def stats(xs: list[float]) -> str:
    return f"{min(xs):6.1f} {statistics.median(xs):6.1f} {max(xs):6.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--driver", choices=["netns", "lxd", "both"], default="both")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--name", default="vxbench", help="the lab's name (default vxbench)")
    ap.add_argument("--log", help="append every up's timeline to this file")
    args = ap.parse_args()
    drivers = ["netns", "lxd"] if args.driver == "both" else [args.driver]
    with open(args.log, "a") if args.log else contextlib.nullcontext() as log:
        results = {d: run(d, args.runs, args.name, log) for d in drivers}
    print(f"\n{'':22}{'min':>6} {'median':>6} {'max':>6}   target")
    for d, r in results.items():
        print(f"{d + ' up (s)':22}{stats(r['up_s'])}   <= {TARGETS[d]:.0f}")
        print(f"{d + ' down (s)':22}{stats(r['down_s'])}   <= {TARGETS['down']:.0f}")
        print(f"{d + ' memory (MiB)':22}{stats(r['memory_mib'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
