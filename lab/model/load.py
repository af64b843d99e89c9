"""Loading: lab.yaml read with unique keys, validated, and refused with every problem, its line
and, for a mistyped key, the key meant."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from lab.model import overrides, shorthands
from lab.model.rules import Problem, check
from lab.model.types import Lab, Tenant

# The package's lab.yaml: in a checkout a link to the top-level lab.yaml that users edit (resolved,
# so messages name that file); in an installed wheel the copy the wheel carries.
DEFAULT_LAB = (Path(__file__).parents[1] / "lab.yaml").resolve()


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
            line = _line_of(self.lines, p.path)
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


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is given twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
        text = path.read_text()
    except OSError as e:
        raise LabError(path, [Problem("", f"cannot read: {e.strerror}")]) from None
    return parse(text, path, sets)


def parse(text: str, file: Path | str = "<lab>", sets: list[str] | tuple[str, ...] = ()) -> Lab:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
        lines = _lines(yaml.compose(text, Loader=yaml.SafeLoader) or yaml.MappingNode("", []))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise LabError(file, [Problem("", f"malformed YAML: {where}{reason}")]) from None
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
        raise LabError(file, [_problem(err) for err in e.errors()], lines) from None
    problems = list(check(lab))
    if problems:
        raise LabError(file, problems, lines)
    return lab


def _problem(err: dict) -> Problem:
    loc = [str(x) for x in err["loc"]]
    # pydantic names the member of a union it tried (e.g. "IPv4Interface"): drop it.
    loc = [x for x in loc if not x[:1].isupper() and "[" not in x]
    path = ".".join(loc)
    if err["type"] == "extra_forbidden":
        return Problem(path, f"unknown key{_did_you_mean(err)}")
    if err["type"] == "missing":
        return Problem(path, "missing")
    msg = err["msg"]
    if "input" in err and not isinstance(err["input"], dict | list):
        msg += f" (got {err['input']!r})"
    return Problem(path, msg)


def _did_you_mean(err: dict) -> str:
    ctx_fields = _FIELDS_AT.get(tuple(str(x) for x in err["loc"][:-1]))
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
