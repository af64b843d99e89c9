"""Names of the host's interfaces (the kernel takes 15 bytes at most)."""

from __future__ import annotations

import hashlib

IFNAMSIZ = 15


def ifname(name: str) -> str:
    """`name` if it fits; else its first 10 characters, '-' and 4 hex digits of a hash of the
    whole name: two long names that share their beginning (two labs' ports) stay apart."""
    if len(name) <= IFNAMSIZ:
        return name
    return f"{name[:IFNAMSIZ - 5]}-{hashlib.sha1(name.encode()).hexdigest()[:4]}"
