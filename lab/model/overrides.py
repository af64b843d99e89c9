"""`--set KEY=VALUE`: a change to the lab description made on the command line, applied to the
parsed file before validation, so that every rule holds for the result as for the file.

KEY is a dotted path (`tenants.blue.clients`; a list's items by index: `tenants.blue.clients.0`),
VALUE a YAML value (`100`, `false`, `[blueC0, blueC1]`, `alice`). A key may be new only where
the description holds a mapping; validation then says whether the model knows it.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from lab.model.rules import Problem

MAX = 4096  # characters of one --set: a value, not a second lab file


class SetError(ValueError):
    """A --set that cannot apply: its problem names the key."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(f"{problem.path}: {problem.message}")


def parse(text: str) -> tuple[str, Any]:
    """'a.b=VALUE' -> ('a.b', the YAML value)."""
    key, eq, value = text.partition("=")
    where = f"--set {key.strip() or text}"
    if not eq or not key.strip():
        raise SetError(Problem(where, "give KEY=VALUE, e.g. --set tenants.blue.clients=100"))
    if len(text) > MAX:
        raise SetError(Problem(where, f"longer than {MAX} characters"))
    parts = key.strip().split(".")
    if any(not p for p in parts):
        raise SetError(Problem(where, "a dotted path without empty parts, e.g. tenants.blue.vlan"))
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError as e:
        raise SetError(Problem(where, f"not a YAML value: {getattr(e, 'problem', None) or e}")) from None
    return ".".join(parts), parsed


def apply(data: Any, sets: list[str] | tuple[str, ...]) -> tuple[Any, list[str]]:
    """The description with every --set applied, in order; and the paths they set."""
    data = copy.deepcopy(data)
    for text in sets:
        path, value = parse(text)
        _set(data, path.split("."), value, f"--set {path}", "")
    return data, [parse(text)[0] for text in sets]


def _set(node: Any, parts: list[str], value: Any, where: str, above: str) -> None:
    if isinstance(node, list):
        i = _index(node, parts[0], where)
        if len(parts) == 1:
            node[i] = value
        else:
            _set(node[i], parts[1:], value, where, f"{above}{parts[0]}.")
        return
    if not isinstance(node, dict):
        raise SetError(Problem(where, f"{above.rstrip('.') or 'the description'} holds a value, not keys"))
    # keys may hold dots themselves (sysctl's net.ipv4.ip_forward): the longest that is there
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in node:
            if n == len(parts):
                node[key] = value
            else:
                _set(node[key], parts[n:], value, where, f"{above}{key}.")
            return
    if len(parts) == 1 or any("." in str(k) for k in node):  # a new key of a mapping
        node[".".join(parts)] = value
        return
    known = ", ".join(map(str, node)) or "none"
    raise SetError(Problem(where, f"{above}{parts[0]} is not in the lab description (there: {known})"))


def _index(items: list, part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise SetError(Problem(where, f"{part!r} is not an index of a list of {len(items)}"))
    return int(part)
