"""A namespace's daemons as the netns substrate supervises them: by pid, with the daemon's
after-exit command run however it ends (killed too), and never after a new instance started."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid

import pytest
from conftest import needs_root

from lab.host.wait import until
from lab.substrate.base import Service
from lab.substrate.netns import NetnsNode


@pytest.fixture
def node(tmp_path):
    ns = f"vxtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    n = NetnsNode("box", ns, str(tmp_path))
    try:
        yield n
    finally:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], check=True)


def sleeper(node: NetnsNode) -> Service:
    # the after-exit command appends a line: how many times it ran is what the tests read
    return Service("sleeper", ("sleep", "600"),
                   after_exit=("sh", "-c", f"echo gone >> {node.path('/released')}"))


def released(node: NetnsNode) -> int:
    return len((node.read("/released") or "").splitlines())


@needs_root("ip", "tail")
def test_after_exit_runs_when_the_daemon_is_killed(node):
    svc = sleeper(node)
    node.start(svc)
    assert node.running(svc) and released(node) == 0
    os.kill(node.pid(svc), signal.SIGKILL)
    # how soon is the drills' figure (vips_on_both_s); here: that it runs, once
    assert until(lambda: released(node) == 1, 5), "the after-exit command did not run"
    assert not node.running(svc)


@needs_root("ip", "tail")
def test_after_exit_of_a_stopped_daemon_runs_before_it_starts_again(node):
    svc = sleeper(node)
    node.start(svc)
    node.start(svc, restart=True)  # stop, the old instance's command, then the new one
    assert released(node) == 1 and node.running(svc)
    node.stop(svc)
    assert until(lambda: released(node) == 2, 5)
