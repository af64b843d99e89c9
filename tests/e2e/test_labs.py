"""A classroom on one machine: two labs made from one description with `--set` (one with light
containers, one with LXD), brought up at the same time, listed by `invoke ls`, each acted on by
name; an uplink drill in one costs the other not one ping, and `down` of one leaves the other as
it was. Through the CLI, as typed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_root

pytestmark = [needs_root("keepalived", "dhcpd", "radvd", "ifup", "dnsmasq", "lxd"), pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB = "vxalice", "vxbob"
LIGHT, LXD = ("--set", "containers.driver=netns"), ("--set", "containers.driver=lxd")


def invoke(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=ROOT, capture_output=True, text=True)
    assert not check or p.returncode == 0, f"invoke {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(p: subprocess.Popen) -> str:
    out, _ = p.communicate(timeout=300)
    assert p.returncode == 0, f"{p.args}: {p.returncode}\n{out}"
    return out


def listed() -> dict[str, dict]:
    return {x["lab"]: x for x in json.loads(invoke("ls", "--json").stdout)}


def namespaces(name: str) -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [n.split()[0] for n in out.splitlines() if n.startswith(f"{name}-")]


@pytest.fixture
def two_labs():
    for name in (ALICE, BOB):
        invoke("down", "--set", f"name={name}")
    yield
    for name in (ALICE, BOB):
        invoke("down", "--set", f"name={name}")


def test_two_labs_side_by_side(two_labs):
    ups = [start("up", "--set", f"name={ALICE}", *LIGHT),
           start("up", "--set", f"name={BOB}", *LXD, "--set", "tenants.blue.clients=[blueC0]")]
    for p in ups:
        assert "is up and converged" in finish(p)
    labs = listed()
    for name, driver in ((ALICE, "netns"), (BOB, "lxd")):
        assert labs[name]["substrate"] == "embedded" and labs[name]["driver"] == driver
        assert labs[name]["state"] == "converged", labs[name]
    # bob runs as it was built: its one blue client, whatever the file now says
    bob = json.loads(invoke("status", "--json", "--set", f"name={BOB}").stdout)
    assert "blueC1" not in {n["node"] for n in bob["nodes"]} and bob["converged"]

    drill = start("failover.green", "--set", f"name={ALICE}", "--mode", "uplink")
    # while alice's green loses its uplink and blue takes over: bob's client pings every 50 ms
    pings = invoke("exec", "--set", f"name={BOB}", "blueC0", "--", "ping", "-q", "-i", "0.05", "-c", "200",
                   "9.9.9.9")
    assert " 0% packet loss" in pings.stdout, pings.stdout
    assert "PASS" in finish(drill)
    checks = invoke("test.connectivity", "--set", f"name={BOB}", "--wait", "30")
    assert "0 failed" in checks.stdout, checks.stdout

    invoke("down", "--set", f"name={ALICE}")
    assert namespaces(ALICE) == [] and namespaces(BOB)
    labs = listed()
    assert ALICE not in labs and labs[BOB]["state"] == "converged"


BIG = "vxbig"


@pytest.fixture
def big_lab():
    invoke("down", "--set", f"name={BIG}")
    yield
    invoke("down", "--set", f"name={BIG}")


def test_a_tenant_of_50_clients(big_lab):
    assert "is up and converged" in finish(start("up", "--set", f"name={BIG}", *LIGHT,
                                                 "--set", "tenants.blue.clients=50"))
    checks = invoke("test.connectivity", "--set", f"name={BIG}", "--wait", "30")
    # one line per check over all its nodes: 50 blue clients and green's 2
    assert f"ok   {'addressing.lease':24} 52 of 52 nodes" in checks.stdout, checks.stdout
    assert "0 failed" in checks.stdout and len(checks.stdout.splitlines()) < 40, checks.stdout
    status = invoke("status", "--set", f"name={BIG}").stdout
    assert "50 clients of blue" in status and "blueC17" not in status, status
