"""The tasks' command lines: every task that reads the lab description takes --set, repeatable."""

import inspect
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_task_with_a_lab_takes_set_many_times():
    sys.path.insert(0, str(ROOT))
    import tasks

    every = [t for coll in (tasks.ns, *tasks.ns.collections.values()) for t in coll.tasks.values()]
    with_lab = [t for t in every if "lab" in inspect.signature(t.body).parameters]
    assert len(with_lab) > 20
    for t in with_lab:
        assert "set_" in t.iterable, t.name


def test_set_given_twice_reaches_the_description_as_two_changes():
    p = subprocess.run([sys.executable, "-m", "invoke", "render", "--out", "/nonexistent/x",
                        "--set", "name=alice", "--set", "tenants.blu.vlan=3"], cwd=ROOT,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "--set tenants.blu.vlan: tenants.blu is not in" in p.stderr
