"""Benchmark of big embedded labs: N clients per tenant, light containers (driver netns).

    .venv/bin/python tests/bench_scale.py [--clients 10 50 100] [--runs 1] [--json FILE]

For each N: nothing -> converged, down, memory, and the cost of one more client (the slope
from the smallest N: Mininet's anchor is +21 ms per host for plumbing alone). Targets (issue
#16, 2 cores): 100 clients per tenant converged <= 30 s, down <= 5 s, memory <= 1 GiB. Uses
the lab name `vxscale` (others' labs are left alone) and a DHCP range wide enough for every
client. Prints figures; asserts nothing (speed is not a test)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_embedded import memory_mib  # noqa: E402

from lab import model  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402

TARGETS = {"up_s": 30.0, "down_s": 5.0, "memory_mib": 1024.0}  # at 100 clients per tenant
# .10-.219: every address of 192.0.2.0/24 below the SVIs, the VIP and the DHCP servers
RANGE_LAST = "192.0.2.219"


class Spent:
    """Keeps `up`'s last note: where its time went."""

    line = ""

    def note(self, msg: str) -> None:
        self.line = msg

    def stage(self, msg: str) -> None:
        pass

    def close(self) -> None:
        pass


def scale_lab(clients: int) -> EmbeddedLab:
    sets = ["name=vxscale", "containers.driver=netns", f"dhcp.range.last={RANGE_LAST}",
            *(f"tenants.{t}.clients={clients}" for t in ("blue", "green"))]
    return EmbeddedLab(model.load(model.DEFAULT_LAB, sets), "netns")


def pss_mib(elab: EmbeddedLab) -> float:
    """Proportional set size of the lab's processes: shared libraries counted once in all,
    not once per process as RSS does (200 dhclients share one libc)."""
    import subprocess

    kib = 0
    for ns in elab.net.vm_namespaces() + elab.net.light_namespaces():
        for p in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            try:
                for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        kib += int(line.split()[1])
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass
    return kib / 1024


def run(clients: int, runs: int) -> dict:
    elab = scale_lab(clients)
    elab.down()
    out: dict[str, list] = {"up_s": [], "down_s": [], "memory_mib": [], "pss_mib": [], "spent": []}
    for i in range(runs):
        spent = Spent()
        t = time.monotonic()
        elab.up(report=spent, timeout=300)
        out["up_s"].append(time.monotonic() - t)
        out["spent"].append(spent.line.partition("where the time went: ")[2])
        out["memory_mib"].append(memory_mib(elab))
        out["pss_mib"].append(pss_mib(elab))
        t = time.monotonic()
        elab.down()
        out["down_s"].append(time.monotonic() - t)
        print(f"  {clients} clients per tenant, run {i + 1}: up {out['up_s'][-1]:.1f} s "
              f"({out['spent'][-1]}), down {out['down_s'][-1]:.1f} s, memory "
              f"{out['memory_mib'][-1]:.0f} MiB (PSS {out['pss_mib'][-1]:.0f} MiB)", flush=True)
    return out


def stats(xs: list[float]) -> str:
    return f"{min(xs):7.1f} {statistics.median(xs):7.1f} {max(xs):7.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 50, 100],
                    help="clients per tenant, one lab size each")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    sizes = sorted(args.clients)
    results = {n: run(n, args.runs) for n in sizes}
    print(f"\n{'clients per tenant':20}{'':12}{'min':>7} {'median':>7} {'max':>7}   target at 100")
    for n, r in results.items():
        for key, label in (("up_s", "up (s)"), ("down_s", "down (s)"), ("memory_mib", "memory (MiB)"),
                           ("pss_mib", "PSS (MiB)")):
            target = f"<= {TARGETS[key]:.0f}" if key in TARGETS else ""
            print(f"{n:<20}{label:12}{stats(r[key])}   {target}")
    base = sizes[0]
    for n in sizes[1:]:
        more = 2 * (n - base)  # two tenants
        for key, label, unit, scale in (("up_s", "up", "ms", 1000), ("down_s", "down", "ms", 1000),
                                        ("memory_mib", "memory", "MiB", 1), ("pss_mib", "PSS", "MiB", 1)):
            per = (statistics.median(results[n][key]) - statistics.median(results[base][key])) / more
            print(f"per client ({base}->{n} per tenant): {label} {per * scale:+.2f} {unit}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
