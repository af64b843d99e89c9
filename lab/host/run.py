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
