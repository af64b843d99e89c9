"""Built artefacts cached on this machine (the container image, the Vagrant box): each is
keyed by a hash of its recipe, built once under a lock, in a staging dir next to the cache,
then renamed into place, so an entry in the cache is always whole and an interrupted or failed
build leaves nothing behind (mmdebstrap's bind mounts included)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from lab.host.mounts import remove_tree


def recipe_key(recipe: dict) -> str:
    """A recipe's hash: the cache key of what it makes (part of the entry's name)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


@contextlib.contextmanager
def locked(cache: Path) -> Iterator[None]:
    """Held by one builder at a time: a second one waits, then finds the entry built."""
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(entry: Path, make: Callable[[Path], Path], *, others: str,
          built: Callable[[], bool] | None = None, force: bool = False) -> bool:
    """Make `entry` (a file or a dir in its cache dir) unless it is built; whether it was made.

    make(staging) builds in an empty dir on the cache's filesystem and returns what becomes
    the entry (renamed: atomic). Afterwards the cache's other entries (glob `others`: older
    recipes, hundreds of MB each) are removed. `built` says whether the entry is whole (its
    existence by default); `force` builds it again anyway.
    """
    built = built or entry.exists
    if built() and not force:
        return False
    cache = entry.parent
    cache.mkdir(parents=True, exist_ok=True)
    with locked(cache):
        if built() and not force:
            return False
        for stale in cache.glob(".build-*"):  # of a build killed mid-way
            remove_tree(stale)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            made = make(staging)
            if entry.exists():
                remove_tree(entry)  # force: replace the old build of this recipe
            os.rename(made, entry)
        finally:
            remove_tree(staging)
        for old in cache.glob(others):
            if old != entry:
                remove_tree(old)
    return True
