"""Several commands in one `Node.run`: on an emulated VM or in its containers a command costs
seconds, mostly to start, so reading a node's state takes one command, not one per fact.

Each command runs under its own timeout; its output and errors come back framed by markers,
its exit status after the output's end marker, so each gets a `Result` of its own."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

from lab.substrate.base import Node, Result

MARK = "@@vxlab-batch"
TIMED_OUT = 124  # timeout(1)'s status


def script(commands: Sequence[tuple[Sequence[str], float]]) -> str:
    lines = []
    for i, (argv, timeout) in enumerate(commands):
        cmd = " ".join(shlex.quote(a) for a in argv)
        lines.append(f"echo '{MARK} {i}'; echo '{MARK} {i}' >&2; timeout {timeout:g} {cmd} </dev/null; "
                     f"rc=$?; echo; echo '{MARK} {i} end' \"$rc\"; echo >&2; echo '{MARK} {i} end' >&2")
    return "\n".join(lines) + "\n"


def _sections(text: str) -> dict[int, tuple[str, str]]:
    """index -> (what was written between its markers, what follows its end marker)."""
    found = re.finditer(rf"^{MARK} (\d+)\n(.*?)\n{MARK} \1 end ?(\S*)$", text, re.S | re.M)
    return {int(m.group(1)): (m.group(2), m.group(3)) for m in found}


def run_many(node: Node, commands: Sequence[tuple[Sequence[str], float]]) -> list[Result]:
    """Run (argv, timeout) pairs in order on the node, in one command. A command the batch did
    not reach, or a node that fails us (gone, unreachable), gives rc -1 and the reason."""
    try:
        r = node.run(["sh", "-c", script(commands)], check=False,
                     timeout=sum(t for _, t in commands) + 30)
        out, err, why = _sections(r.out), _sections(r.err), (r.err or r.out).strip()[-300:]
    except Exception as e:  # noqa: BLE001 - whatever the substrate raises, each command fails with it
        out, err, why = {}, {}, f"{type(e).__name__}: {e}"
    results = []
    for i, (argv, timeout) in enumerate(commands):
        if i not in out:
            results.append(Result(tuple(argv), -1, "", f"not run: {why or 'no output'}"))
            continue
        text, rc = out[i]
        status = int(rc) if rc.isdigit() else -1
        errors = err.get(i, ("", ""))[0] or (f"timed out after {timeout:g} s" if status == TIMED_OUT else "")
        results.append(Result(tuple(argv), status, text, errors))
    return results
