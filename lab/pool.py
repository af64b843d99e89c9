"""Side by side: the same work on several nodes at once (a command on an emulated VM costs
seconds; nodes are independent machines, so waiting on them in turn wastes that time)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def pmap(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """[fn(item) for item in items], side by side, in order; the first failure is raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=len(items))
    try:
        out = list(pool.map(fn, items))
    except KeyboardInterrupt:  # Ctrl-C: no waiting for the others' commands to end
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        pool.shutdown()
        raise
    pool.shutdown()
    return out


def parallel(fn: Callable[[T], object], items: Iterable[T]) -> None:
    """fn(item) for every item, side by side; the first failure is raised."""
    pmap(fn, items)
