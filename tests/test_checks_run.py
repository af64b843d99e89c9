"""The check runner: one command per node and round, results framed and split back per check,
failures retried until the deadline, the report in the checks' order."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab import checks
from lab.substrate.base import Result


class LocalNode:
    """A node that runs commands here, counting them."""

    def __init__(self, name: str) -> None:
        self.name, self.root, self.commands = name, "", 0

    def run(self, argv, *, input=None, check=True, timeout=60) -> Result:
        self.commands += 1
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        return Result(tuple(argv), p.returncode, p.stdout, p.stderr)


class GoneNode:
    name, root = "gone", ""

    def run(self, argv, **_) -> Result:
        raise ConnectionError("no route to the VM")


def check(name: str, node: str, *argv: str, holds=checks.succeeds, timeout: float = 20) -> checks.Check:
    return checks.Check(name, node, argv, holds, f"{name} holds", timeout)


def test_a_batch_gives_each_check_its_own_output_errors_and_status():
    node = LocalNode("n")
    results = checks.run_batch(lambda _: node, "n", [
        check("a.echo", "n", "echo", "hi"),
        check("a.fails", "n", "sh", "-c", "printf 'no newline'; echo oops >&2; exit 3"),
        check("a.blank", "n", "printf", "a\n\nb\n\n"),
        check("a.quoting", "n", "echo", "it's $HOME; `true`"),
        check("a.slow", "n", "sleep", "5", timeout=0.5),
    ])
    assert [(r.rc, r.out, r.err) for r in results] == [
        (0, "hi\n", ""),
        (3, "no newline", "oops\n"),
        (0, "a\n\nb\n\n", ""),
        (0, "it's $HOME; `true`\n", ""),
        (124, "", "timed out after 0.5 s"),
    ]
    assert node.commands == 1


def test_a_node_that_fails_fails_its_checks_with_the_reason():
    (r,) = checks.run_batch(lambda _: GoneNode(), "gone", [check("a.x", "gone", "true")])
    assert r.rc == -1 and "no route to the VM" in r.err


def test_failing_checks_are_retried_until_they_pass_or_the_deadline(tmp_path: Path):
    flag = tmp_path / "converged"
    nodes = {n: LocalNode(n) for n in ("a", "b", "router")}
    later = f"[ -e {flag} ] || {{ touch {flag}.seen; [ -e {flag}.seen ] && touch {flag}; exit 1; }}"
    report = checks.run([
        check("router.first", "router", "true"),          # listed first, runs last
        check("g.late", "a", "sh", "-c", later),          # fails once, then passes
        check("g.never", "b", "false"),
        check("g.ok", "b", "true"),
    ], nodes.__getitem__, wait=2)
    assert [(o.check.name, o.ok) for o in report.outcomes] == [
        ("router.first", True), ("g.late", True), ("g.never", False), ("g.ok", True)]
    by_name = {o.check.name: o for o in report.outcomes}
    assert by_name["g.late"].tries == 3 and by_name["g.ok"].tries == 2  # and read again at the end
    assert by_name["g.never"].tries > 2 and by_name["g.never"].found.startswith("exit 1")
    assert not report.ok


def test_a_check_that_held_early_is_read_again_when_the_lab_moved(tmp_path: Path):
    flag = tmp_path / "read"
    nodes = {n: LocalNode(n) for n in ("a", "b")}
    once = f"[ -e {flag} ] && exit 1; touch {flag}"  # holds on the first reading only
    report = checks.run([check("g.once", "a", "sh", "-c", once), check("g.ok", "a", "true"),
                         check("g.never", "b", "false")], nodes.__getitem__, wait=1)
    by_name = {o.check.name: o for o in report.outcomes}
    assert not by_name["g.once"].ok and by_name["g.once"].found.startswith("held at first, then: exit 1")
    assert by_name["g.ok"].ok and by_name["g.ok"].tries == 2
    again = f"rm -f {flag}; {once}"
    still = checks.run([check("g.still", "a", "sh", "-c", again)], nodes.__getitem__, wait=1)
    assert still.ok and still.outcomes[0].tries == 1  # a lab that stood still is read once


def test_a_big_labs_checks_summed_up_one_line_per_check(tmp_path: Path):
    nodes = {f"c{i}": LocalNode(f"c{i}") for i in range(8)}
    report = checks.run([check("addressing.lease", n, "true" if n != "c3" else "false") for n in nodes]
                        + [check("internet.ping4", n, "true") for n in nodes], nodes.__getitem__, wait=0)
    assert report.summary() == [f"FAIL {'addressing.lease':24} 1 of 8 nodes: c3",
                                f"ok   {'internet.ping4':24} 8 of 8 nodes"]
