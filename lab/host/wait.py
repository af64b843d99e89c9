"""Waiting with a deadline: the one loop every wait of vxlab uses."""

from __future__ import annotations

import time
from collections.abc import Callable


def until(cond: Callable[[], object], timeout: float, pause: float = 0.05, paced: bool = False) -> bool:
    """Poll cond() until it is true or `timeout` seconds have passed; whether it held.

    `paced`: sleep at least as long as the last poll took, so that polling a slow node (an
    emulated VM) keeps it busy half the time at most."""
    end = time.monotonic() + timeout
    while True:
        began = time.monotonic()
        if cond():
            return True
        if began >= end:
            return False
        time.sleep(max(pause, time.monotonic() - began) if paced else pause)


def wait_until(problems: Callable[[], list[str]], timeout: float, what: str, pause: float = 0.25) -> None:
    """Poll until problems() is empty; TimeoutError naming what is still wrong."""
    last: list[str] = []

    def settled() -> bool:
        last[:] = problems()
        return not last

    if not until(settled, timeout, pause):
        raise TimeoutError(f"{what} did not converge within {timeout:.0f} s:\n  " + "\n  ".join(last))
