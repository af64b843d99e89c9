"""Benchmark of repair: the lab broken as a student or a drill breaks it, then `up` on the
running lab; the time from the break to "repaired" (up returns) and to every check green.

    .venv/bin/python tests/bench_repair.py [--runs 5] [--driver netns|lxd|both] [--json FILE]

Uses the lab name `vxbench`, so a running `vxlab` is left alone. Prints figures; asserts only
that each repair happened (speed is not a test: tests/e2e/test_embedded.py proves the repairs)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_embedded import bench_lab, stats  # noqa: E402

from lab import checks  # noqa: E402
from lab.embedded import EmbeddedLab  # noqa: E402
from lab.host.wait import until  # noqa: E402
from lab.ui import Plain  # noqa: E402


def kill_dhcpd(elab: EmbeddedLab) -> None:
    server = elab.node("blueDHCP")
    server.run(["sh", "-c", f"kill $(cat {server.path('/run/dhcpd.pid')})"])


BREAKS = {  # what is broken, and on which node `up` must say it repaired something
    "dhcpd killed": (kill_dhcpd, "blueDHCP"),
    "link down, up": (lambda e: e.node("greenVM").run(
        ["sh", "-c", "ip link set sw-vlan7 down && ip link set sw-vlan7 up"]), "greenVM"),
    "route deleted": (lambda e: e.node("routerVM").run(
        ["ip", "route", "del", "default", "table", "green"]), "routerVM"),
    "NIC down, up": (lambda e: e.node("greenVM").run(
        ["sh", "-c", "ip link set enp0s6 down && ip link set enp0s6 up"]), "greenVM"),
}


def trial(elab: EmbeddedLab, case: str) -> tuple[float, float]:
    brk, node = BREAKS[case]
    brk(elab)
    broken = time.monotonic()
    said = io.StringIO()
    elab.up(Plain(said), timeout=120)
    repaired = time.monotonic() - broken
    if not any(f"] {node}: " in ln and ("repaired" in ln or "restarted" in ln or "started" in ln)
               for ln in said.getvalue().splitlines()):
        raise SystemExit(f"{case}: up did not say it repaired {node}:\n{said.getvalue()}")
    every = checks.build(elab.lab, elab.node)
    if not until(lambda: checks.run(every, elab.node, wait=0).ok, 60, pause=0.2):
        raise SystemExit(f"{case}: checks not green 60 s after the repair")
    return repaired, time.monotonic() - broken


def run(driver: str, runs: int) -> dict:
    elab = bench_lab(driver)
    elab.down()
    elab.up(timeout=180)
    out: dict[str, dict[str, list[float]]] = {}
    try:
        for case in BREAKS:
            for i in range(runs):
                repaired, green = trial(elab, case)
                out.setdefault(case, {"repaired_s": [], "green_s": []})
                out[case]["repaired_s"].append(repaired)
                out[case]["green_s"].append(green)
                print(f"  {driver} {case} {i + 1}: repaired {repaired:.1f} s, checks green {green:.1f} s",
                      flush=True)
    finally:
        elab.down()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--driver", choices=["netns", "lxd", "both"], default="both")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    drivers = ["netns", "lxd"] if args.driver == "both" else [args.driver]
    results = {d: run(d, args.runs) for d in drivers}
    print(f"\n{'':28}{'repaired: min':>14} {'median':>6} {'max':>6}   green: min median    max")
    for d, r in results.items():
        for case, f in r.items():
            print(f"{d + ' ' + case:28}{stats(f['repaired_s']):>27}   {stats(f['green_s'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
