"""dsw-host, the seed's Host switch: plumbing made by the substrate (bridges per VLAN in a
namespace, or the host's Open vSwitch); no files, no daemons of its own."""

from __future__ import annotations

from lab.roles.target import Target
from lab.substrate.base import Service

TEMPLATES: tuple[str, ...] = ()
DAEMONS: dict[str, str] = {}


def services(t: Target) -> list[Service]:
    return []


def apply(t: Target) -> None:
    pass
