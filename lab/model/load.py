"""Loading: lab.yaml read with unique keys, validated, and refused with every problem, its line
and, for a mistyped key, the key meant."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from lab.model import overrides, shorthands
from lab.model.rules import Problem, check
from lab.model.types import Hypervisor, Lab, Ssh, Tenant

# The package's lab.yaml: in a checkout a link to the top-level lab.yaml that users edit (resolved,
# so messages name that file); in an installed wheel the copy the wheel carries.
DEFAULT_LAB = (Path(__file__).parents[1] / "lab.yaml").resolve()


# Bounds on what a lab description may make the loader do (the default lab: 6 KiB, nested 6
# deep, some 250 values): an alias bomb or a deep nesting is refused before it is expanded.
MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 20_000


class LabError(Exception):
    """Invalid lab description: every problem found, each with its field path."""

    def __init__(self, file: Path | str, problems: list[Problem], lines: dict[str, int | str] | None = None):
        self.file = str(file)
        self.problems = problems
        self.lines = lines or {}
        super().__init__(str(self))

    def __str__(self) -> str:
        out = []
        for p in self.problems:
            line = p.line or _line_of(self.lines, p.path)
            if isinstance(line, str):  # a --set made it
                same = line in (p.path, f"--set {p.path}")
                out.append(f"{line}: {p.message}" if same else f"{line}: {p.path}: {p.message}")
                continue
            where = f"{self.file}:{line}" if line else self.file
            out.append(f"{where}: {p.path or '(top)'}: {p.message}")
        return "\n".join(out)


def _line_of(lines: dict[str, int | str], path: str) -> int | str | None:
    while path:
        if path in lines:
            return lines[path]
        path = path.rpartition(".")[0]
    return None


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one), nesting
    deeper than MAX_DEPTH (PyYAML recurses), and values Python cannot build (a day that does
    not exist, an integer of thousands of digits), each with its line."""

    def __init__(self, text: str):
        super().__init__(text)
        self.depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (ValueError, TypeError, OverflowError) as e:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read this value: {e}", node.start_mark) from None


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, list | dict | set):
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or a mapping", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _bounded(root: yaml.Node) -> None:
    """Refuse aliases that expand the document past MAX_VALUES or MAX_DEPTH, or into itself.
    Counted on the composed graph, where an alias is the node it names: nothing is expanded."""
    known: dict[int, tuple[int, int]] = {}  # node -> (values, depth) once expanded
    open_: set[int] = set()

    def refuse(node: yaml.Node, why: str):
        return yaml.composer.ComposerError(None, None, why, node.start_mark)

    def walk(node: yaml.Node) -> tuple[int, int]:
        if id(node) in known:
            return known[id(node)]
        if id(node) in open_:
            raise refuse(node, "an alias names a value that contains it (recursive aliases)")
        open_.add(id(node))
        children = ([x for kv in node.value for x in kv] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        values, depth = 1, 1
        for child in children:
            v, d = walk(child)
            values, depth = values + v, max(depth, d + 1)
            if values > MAX_VALUES:
                raise refuse(node, f"its aliases expand it to more than {MAX_VALUES} values "
                                   "(a lab needs a few hundred)")
            if depth > MAX_DEPTH:
                raise refuse(node, f"its aliases nest it deeper than {MAX_DEPTH} levels")
        open_.discard(id(node))
        known[id(node)] = values, depth
        return values, depth

    walk(root)


def _lines(node: yaml.Node, prefix: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Map each field path to the line it is written on (for error messages)."""
    out = {} if out is None else out
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            path = f"{prefix}.{k.value}" if prefix else str(k.value)
            out[path] = k.start_mark.line + 1
            _lines(v, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            path = f"{prefix}.{i}"
            out[path] = v.start_mark.line + 1
            _lines(v, path, out)
    return out


def load(path: Path | str = DEFAULT_LAB, sets: list[str] | tuple[str, ...] = ()) -> Lab:
    """Read, parse and validate a lab description, with `--set` changes applied, or raise
    LabError naming every problem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)  # bounded: /dev/zero is a file too
    except OSError as e:
        raise LabError(path, [Problem("", f"cannot read: {e.strerror}")]) from None
    if len(data) > MAX_BYTES:
        raise LabError(path, [Problem("", f"larger than {MAX_BYTES // 1024} KiB: not a lab "
                                          "description (they take a few KiB)")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise LabError(path, [Problem("", f"not UTF-8 text: byte 0x{data[e.start]:02x} ({e.reason})",
                                      line)]) from None
    return parse(text, path, sets)


def parse(text: str, file: Path | str = "<lab>", sets: list[str] | tuple[str, ...] = ()) -> Lab:
    if len(text) > MAX_BYTES:
        raise LabError(file, [Problem("", f"larger than {MAX_BYTES // 1024} KiB: not a lab "
                                          "description (they take a few KiB)")])
    loader = None
    try:
        loader = _Loader(text)  # its reader refuses characters YAML does not allow
        node = loader.get_single_node()
        if node is not None:
            _bounded(node)
        data = loader.construct_document(node) if node is not None else None
        lines = _lines(node) if node is not None else {}
    except yaml.YAMLError as e:
        raise LabError(file, [_yaml_problem(e, text)]) from None
    except RecursionError:  # not expected within MAX_DEPTH: still a reason, not a traceback
        raise LabError(file, [Problem("", "malformed YAML: nested too deeply to read")]) from None
    finally:
        if loader:
            loader.dispose()
    if not isinstance(data, dict):
        raise LabError(file, [Problem("", "the lab description must be a mapping")])
    try:
        data, changed = overrides.apply(data, sets)
    except overrides.SetError as e:
        raise LabError(file, [e.problem], {e.problem.path: e.problem.path}) from None
    for key in changed:  # problems under a key given on the command line are said to come from there
        lines = {k: v for k, v in lines.items() if k != key and not k.startswith(key + ".")}
        lines[key] = f"--set {key}"
    data, problems = shorthands.expand(data)
    if problems:
        raise LabError(file, problems, lines)
    try:
        lab = Lab.model_validate(data)
    except ValidationError as e:
        raise LabError(file, _problems(e, data, lines), lines) from None
    problems = list(check(lab))
    if problems:
        raise LabError(file, problems, lines)
    return lab


def _yaml_problem(e: yaml.YAMLError, text: str) -> Problem:
    """One line: the line and column, and PyYAML's reason (its own text spans several lines)."""
    if isinstance(e, yaml.reader.ReaderError):  # a character YAML does not allow
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, str) else chr(e.character)
        return Problem("", f"malformed YAML: character U+{ord(char):04X} is not allowed in YAML text",
                       line)
    mark = getattr(e, "problem_mark", None)
    where = f", column {mark.column + 1}" if mark else ""
    reason = getattr(e, "problem", None) or str(e)
    return Problem("", f"malformed YAML{where}: {' '.join(reason.split())}", mark.line + 1 if mark else None)


def _shown(value) -> str:
    """A value as a message shows it: on one line, and short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:56] + "...'"


def _where(loc: tuple, data, missing: bool) -> tuple[list, bool]:
    """The path of an error in the lab file, and whether it went through a union (pydantic's
    loc also names the member of a union it tried, e.g. "IPv4Interface", and "[key]")."""
    path, node, union = [], data, False
    for i, x in enumerate(loc):
        if ((isinstance(node, dict) and x in node)
                or (isinstance(node, list) and isinstance(x, int) and 0 <= x < len(node))):
            path.append(x)
            node = node[x]
        elif missing and i == len(loc) - 1:
            path.append(x)
        elif x != "[key]":
            union = True
    return path, union


def _problems(e: ValidationError, data: dict, lines: dict[str, int]) -> list[Problem]:
    """pydantic's errors in words, one problem per field: of a union's members, the one that
    fits says why (an IPv6 VIP with a zone is no IPv4 address either: that goes unsaid)."""
    found: dict[str, list[tuple[str, bool]]] = {}
    raw: dict[str, str] = {}
    for err in e.errors():
        parts, union = _where(err["loc"], data, err["type"] == "missing")
        path = ".".join(p if re.fullmatch(r"[\w.-]{1,60}", p) else _shown(p) for p in map(str, parts))
        raw[path] = ".".join(map(str, parts))
        found.setdefault(path, []).append((_message(err, "[key]" in err["loc"]),
                                           union and err["type"] == "value_error"))
    out = []
    for path, msgs in found.items():
        fits = [m for m, member_fits in msgs if member_fits] or [m for m, _ in msgs]
        out.append(Problem(path, "; ".join(dict.fromkeys(fits)), _line_of(lines, raw[path])))
    return out


def _message(err: dict, key: bool) -> str:
    """pydantic's message, and the value it refused unless the path names it (a key)."""
    if err["type"] == "extra_forbidden":
        return f"unknown key{_did_you_mean(err)}"
    if err["type"] == "missing":
        return "missing"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    shown = value is not None and not isinstance(value, dict | list) and not key
    if shown and not msg.startswith(repr(value)):
        msg += f" (got {_shown(value)})"
    return msg


def _did_you_mean(err: dict) -> str:
    at = tuple(str(x) for x in err["loc"][:-1])
    if at[:1] == ("hosts",) and len(at) > 1:  # a mapping too: any host's fields
        at = ("hosts", "*", *at[2:])
    ctx_fields = _FIELDS_AT.get(at)
    if not ctx_fields:
        return ""
    close = difflib.get_close_matches(str(err["loc"][-1]), ctx_fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_fields(model: type[BaseModel], prefix: tuple = ()) -> Iterator[tuple[tuple, list[str]]]:
    yield prefix, list(model.model_fields)
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _known_fields(ann, (*prefix, name))


_FIELDS_AT: dict[tuple, list[str]] = dict(_known_fields(Lab))
for _t in ("blue", "green"):  # tenants are a mapping: offer their fields under any name
    _FIELDS_AT.update({("tenants", _t, *k): v for k, v in _known_fields(Tenant)})
_FIELDS_AT.update({("hosts", "*", *k): v for k, v in _known_fields(Hypervisor)})
_FIELDS_AT[("hosts", "*", "ssh")] = list(Ssh.model_fields)  # optional: not found by _known_fields
