"""Lab files for property tests, drawn from the model's own field types.

A lab file is the default lab with a few of its fields (or a tenant's name, or a sysctl key)
given another value: one of the field's type (its pattern, its bounds, its address family;
for an address also one in the default's own network, so that it may be accepted), or a
hostile one (an injection, any text, a value of another type). The strategies read the
pydantic model, so a field added to it is drawn too, with nothing written here.
"""

from __future__ import annotations

import copy
import ipaddress
import types
import typing
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network
from typing import Annotated, Literal

import yaml
from annotated_types import Ge, Le, MaxLen
from hypothesis import strategies as st
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo

from lab import model
from lab.model import sysctl
from lab.model.types import Kind, Lab, _sysctl_key

DEFAULT = yaml.safe_load(model.DEFAULT_LAB.read_text())

# What an attacker writes into a field: text that would add a line, run a command, read as an
# option or a reserved name if it got through.
INJECTIONS = ["x\nup reboot", "1\nkernel.core_pattern=|/bin/sh", "fe80::1%x\n}\nvrrp_script x {",
              "a;reboot", "$(reboot)", "`reboot`", '"; reboot; "', "'; reboot; '", "--all", "-x",
              "..", ".", "all", "main", "default", "lo", "", " ", "\t", "x" * 300, "a\u2028b", "a\x00b",
              "a\rb", "%", "a/b", "a:b", "{{ 7*7 }}", "{% raw %}", "# x", "\\", "net.ipv4.ip_forward"]
SUFFIXES = ["\nup reboot", "%x", "%x\nreboot", ";reboot", " x", "\n", "\r", "/64", "."]


def _split(tp) -> tuple[object, list]:
    """A type and its metadata (bounds, validators), Annotated and Field() unwrapped."""
    meta: list = []
    while typing.get_origin(tp) is Annotated:
        tp, *more = typing.get_args(tp)
        meta = more + meta
    flat = []
    for m in meta:
        flat += m.metadata if isinstance(m, FieldInfo) else [m]
    return tp, flat


def _network(ip, length: int) -> str:
    return str(ipaddress.ip_network(f"{ip}/{length}", strict=False))


def values(tp, meta: typing.Sequence = ()) -> st.SearchStrategy:
    """Valid values of a field type, as a YAML lab file writes them."""
    tp, more = _split(tp)
    meta = [*meta, *more]
    funcs = [m.func for m in meta if isinstance(m, AfterValidator)]
    kinds = [f for f in funcs if isinstance(f, Kind)]
    if kinds:
        kind = kinds[0]
        return st.from_regex(kind.pattern, fullmatch=True).filter(lambda s: s not in dict(kind.reserved))
    if _sysctl_key in funcs:  # the subtrees the kernel gives a namespace, then any name
        return st.builds(lambda sub, rest: f"net.{sub}.{rest}", st.sampled_from(sorted(sysctl.SUBTREES)),
                         st.from_regex(r"[a-z0-9_]{1,12}(\.[a-z0-9_]{1,12}){0,2}", fullmatch=True)
                         ).filter(lambda k: sysctl.host_only(k) is None)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([st.none() if a is type(None) else values(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        most = min([m.max_length for m in meta if isinstance(m, MaxLen)] + [4])
        return st.lists(values(args[0]), max_size=most)
    if origin is dict:
        return st.dictionaries(values(args[0]), values(args[1]), max_size=3)
    if tp is bool:
        return st.booleans()
    if tp is int:
        lo = max([m.ge for m in meta if isinstance(m, Ge)], default=-(2**64))
        hi = min([m.le for m in meta if isinstance(m, Le)], default=2**64)
        return st.integers(lo, hi)
    if tp is str:
        return st.text(max_size=20)
    family = {IPv4Address: 4, IPv4Interface: 4, IPv4Network: 4, IPv6Address: 6, IPv6Interface: 6,
              IPv6Network: 6}.get(tp)
    if family:
        bits = 32 if family == 4 else 128
        ips, lengths = st.ip_addresses(v=family), st.integers(0, bits)
        if tp in (IPv4Address, IPv6Address):
            return ips.map(str)
        if tp in (IPv4Interface, IPv6Interface):
            return st.builds(lambda ip, n: f"{ip}/{n}", ips, lengths)
        return st.builds(_network, ips, lengths)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return st.fixed_dictionaries({n: values(f.annotation, f.metadata)
                                      for n, f in tp.model_fields.items()})
    raise TypeError(f"no strategy for {tp!r}: teach tests/labs.py the model's new type")


ADDRESSES = {IPv4Address, IPv4Interface, IPv6Address, IPv6Interface}


def near(default: str) -> st.SearchStrategy:
    """An address in the default's own network (and prefix), so that the lab may accept it."""
    try:
        iface = ipaddress.ip_interface(default)
    except ValueError:  # no address any more: an earlier change put text there
        return st.nothing()
    net = iface.network
    size = min(net.num_addresses, 2**16)
    hosts = st.integers(0, size - 1).map(lambda i: net.network_address + i)
    if "/" in default:
        return hosts.map(lambda ip: f"{ip}/{net.prefixlen}")
    return hosts.map(str)


def hostile(tp, meta: typing.Sequence = ()) -> st.SearchStrategy:
    """What the field's type must refuse, or quote: injections, any text, a valid value with
    text after it, a value of another type."""
    return st.one_of(
        st.sampled_from(INJECTIONS),
        st.text(max_size=20),
        st.builds(lambda v, s: f"{v}{s}", values(tp, meta), st.sampled_from(SUFFIXES)),
        st.one_of(st.integers(), st.floats(), st.booleans(), st.none(),
                  st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                      max_size=2)),
    )


@dataclass(frozen=True)
class Field:
    path: tuple
    annotation: object
    metadata: tuple


def fields(model_type: type[BaseModel] = Lab, data: dict = DEFAULT, path: tuple = ()) -> list[Field]:
    """Every field of the default lab, at every depth (a part, and each of its fields)."""
    out = []
    for name, f in model_type.model_fields.items():
        if name not in data:
            continue
        here = (*path, name)
        out.append(Field(here, f.annotation, tuple(f.metadata)))
        tp = _split(f.annotation)[0]
        parts = [a for a in typing.get_args(tp) if isinstance(a, type) and issubclass(a, BaseModel)]
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out += fields(tp, data[name], here)
        elif parts:  # VrrpTiming | None
            out += fields(parts[0], data[name], here)
        elif typing.get_origin(tp) is dict and isinstance(typing.get_args(tp)[1], type):
            for key in data[name]:  # the tenants
                out += fields(typing.get_args(tp)[1], data[name][key], (*here, key))
        elif typing.get_origin(tp) is tuple:
            out += [Field((*here, i), typing.get_args(tp)[0], ()) for i in range(len(data[name]))]
    return out


FIELDS = fields()
TENANT_NAME, _ = typing.get_args(Lab.model_fields["tenants"].annotation)
SYSCTL_KEY, SYSCTL_VALUE = typing.get_args(Lab.model_fields["sysctl"].annotation)


def _at(data, path: tuple):
    for p in path:
        data = data[p]
    return data


def _set(data, path: tuple, value) -> None:
    _at(data, path[:-1])[path[-1]] = value


def _rename(mapping: dict, old, new) -> None:
    items = [(new if k == old else k, v) for k, v in mapping.items()]
    mapping.clear()
    mapping.update(items)


@st.composite
def lab_files(draw, hostile_values: bool = True, sysctl_keys: st.SearchStrategy | None = None,
              sysctl_values: st.SearchStrategy | None = None, changes: int = 3,
              given: dict[tuple, st.SearchStrategy] | None = None) -> dict:
    """The default lab's data with 1..changes of its fields given other values; `given`: the
    values of some fields, where the node decides what is valid (a user it has)."""
    data = copy.deepcopy(DEFAULT)
    keys = values(SYSCTL_KEY) if sysctl_keys is None else sysctl_keys
    ints = values(SYSCTL_VALUE) if sysctl_values is None else sysctl_values

    def maybe_hostile(strategy: st.SearchStrategy, tp, meta=()) -> st.SearchStrategy:
        return st.one_of(strategy, hostile(tp, meta)) if hostile_values else strategy

    for _ in range(draw(st.integers(1, changes))):
        what = draw(st.sampled_from(["field"] * 8 + ["tenant", "sysctl"]))
        if what == "tenant":
            old = draw(st.sampled_from(sorted(data["tenants"])))
            new = draw(maybe_hostile(values(TENANT_NAME), TENANT_NAME))
            if isinstance(new, str) and new not in data["tenants"]:
                _rename(data["tenants"], old, new)
        elif what == "sysctl":
            key = draw(maybe_hostile(keys, SYSCTL_KEY))
            key = key if isinstance(key, str | int | float | bool | None) else repr(key)  # YAML keys
            data["sysctl"][key] = draw(maybe_hostile(ints, SYSCTL_VALUE))
        else:
            f = draw(st.sampled_from(FIELDS))
            try:
                old = _at(data, f.path)
            except (KeyError, IndexError, TypeError):  # a tenant renamed, a part replaced
                continue
            tp = _split(f.annotation)[0]
            if typing.get_origin(tp) is dict:
                continue  # tenants and sysctl: their keys are drawn above, their fields one by one
            strategy = (given or {}).get(f.path, values(f.annotation, f.metadata))
            if isinstance(old, str) and ADDRESSES & {tp, *(_split(a)[0] for a in typing.get_args(tp))}:
                strategy = st.one_of(strategy, near(old))
            _set(data, f.path, draw(maybe_hostile(strategy, f.annotation, f.metadata)))
    return data
