"""Commands on this machine, as the substrates' `Result`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from lab.substrate.base import CommandError, Result


def sh(argv: Sequence[str], *, input: str | None = None, check: bool = True,
       timeout: float = 60, node: str = "host") -> Result:
    """Run argv (no shell); a timeout is exit 124. CommandError if `check` and it failed."""
    try:
        p = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
        r = Result(tuple(argv), p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as e:
        r = Result(tuple(argv), 124, _text(e.stdout), _text(e.stderr) + f"\ntimed out after {timeout} s")
    if check and not r.ok:
        raise CommandError(node, r)
    return r


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def run_to_end(argv: list[str]) -> None:
    """subprocess.run(check=True), except on Ctrl-C or another error: subprocess.run would
    SIGKILL the child after 0.25 s, leaving mmdebstrap's bind mounts of /dev and /sys in the
    rootfs; SIGTERM lets it undo them first."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    try:
        returncode = proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    if returncode:
        raise subprocess.CalledProcessError(returncode, argv)
