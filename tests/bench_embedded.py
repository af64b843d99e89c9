"""Benchmark of the embedded lab: bring-up to converged, teardown, and memory, per driver.

    .venv/bin/python tests/bench_embedded.py [--runs 3] [--driver netns|lxd|both] [--json FILE]

Targets on a 2-core machine (issue #3): LXD driver <= 20 s to converged with the image
cached, netns driver <= 10 s, teardown <= 5 s. Uses the lab name `vxbench`, so a running
`vxlab` is left alone. Prints figures; asserts nothing (speed is not a test)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab import model  # noqa: E402
from lab.containers.image import ensure_image  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402
from lab.host.cgroups import container_cgroups  # noqa: E402
from lab.host.mounts import mounts  # noqa: E402

TARGETS = {"netns": 10.0, "lxd": 20.0, "down": 5.0}


def bench_lab(driver: str) -> EmbeddedLab:
    data = yaml.safe_load(model.DEFAULT_LAB.read_text())
    data["name"] = "vxbench"
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


def run(driver: str, runs: int) -> dict:
    elab = bench_lab(driver)
    elab.down()
    if driver == "lxd":
        ensure_image(progress=lambda m: print(f"  image: {m}"))  # the targets assume it cached
    ups, downs, mems = [], [], []
    for i in range(runs):
        t = time.monotonic()
        elab.up(timeout=180)
        ups.append(time.monotonic() - t)
        mems.append(memory_mib(elab))
        t = time.monotonic()
        elab.down()
        downs.append(time.monotonic() - t)
        print(f"  {driver} run {i + 1}: up {ups[-1]:.1f} s, down {downs[-1]:.1f} s, "
              f"memory {mems[-1]:.0f} MiB", flush=True)
    return {"up_s": ups, "down_s": downs, "memory_mib": mems}


def stats(xs: list[float]) -> str:
    return f"{min(xs):6.1f} {statistics.median(xs):6.1f} {max(xs):6.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--driver", choices=["netns", "lxd", "both"], default="both")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    drivers = ["netns", "lxd"] if args.driver == "both" else [args.driver]
    results = {d: run(d, args.runs) for d in drivers}
    print(f"\n{'':22}{'min':>6} {'median':>6} {'max':>6}   target")
    for d, r in results.items():
        print(f"{d + ' up (s)':22}{stats(r['up_s'])}   <= {TARGETS[d]:.0f}")
        print(f"{d + ' down (s)':22}{stats(r['down_s'])}   <= {TARGETS['down']:.0f}")
        print(f"{d + ' memory (MiB)':22}{stats(r['memory_mib'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
