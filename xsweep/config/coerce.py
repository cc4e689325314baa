"""Typed conversion: plain data (parsed YAML) into the schema's dataclasses, strictly.

`build` walks a dataclass's type hints: an unknown key is an error listing the valid ones (and
the close matches), a value of the wrong type an error naming the expected type. Numbers are
not guessed from strings, except that a float field takes a numeric string (PyYAML reads `1e-3`,
without a dot, as a string). `where` names a key's file and line in every error.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from typing import Any, Literal

from xsweep.errors import XsweepError


def where(source: str, lines: dict[str, int], key: str) -> str:
    """`exp.yaml:12 (optim.lr)`, or `exp.yaml (optim.lr)` for a key without a line (an override)."""
    line = lines.get(key)
    return f"{source}:{line} ({key})" if line else f"{source} ({key})"


def build(cls: type, raw: Any, prefix: str, source: str, lines: dict[str, int]) -> Any:
    """An instance of dataclass `cls` from the mapping `raw` (its keys under dotted `prefix`)."""
    section = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise XsweepError(f"{section} must be a mapping, got {type(raw).__name__}",
                          where=where(source, lines, prefix.rstrip(".")),
                          fix=f"write {section} as `key: value` lines")
    hints = _type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise XsweepError(f"unknown key {dotted!r}", where=where(source, lines, dotted),
                              fix=f"{hint}valid keys in {section}: {', '.join(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build(hint, value, dotted + ".", source, lines)
        else:
            kwargs[key] = coerce(value, hint, dotted, source, lines)
    return cls(**kwargs)


def type_name(hint: Any) -> str:
    """How an error names a type: `'layer' | 'input'`, `int or null`, `list of str`."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        return " or ".join(type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return f"list of {type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def coerce(value: Any, hint: Any, key: str, source: str, lines: dict[str, int]) -> Any:
    """`value` as type `hint`, or an XsweepError naming the key and the type it must be."""
    ok, result = try_coerce(value, hint)
    if ok:
        return result
    raise XsweepError(f"{key} must be {type_name(hint)}, got {value!r} ({type(value).__name__})",
                      where=where(source, lines, key),
                      fix=f"set {key} to {type_name(hint)}")


def try_coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(True, value as type `hint`) or (False, None)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin is Literal:
        return (value in args, value)
    if origin is typing.Union or (origin is not None and type(hint).__name__ == "UnionType"):
        for arg in args:
            ok, result = try_coerce(value, arg)
            if ok:
                return True, result
        return False, None
    if hint is type(None):
        return value is None, None
    if origin is list:
        if not isinstance(value, list):
            return False, None
        items = [try_coerce(v, args[0]) for v in value]
        return (all(ok for ok, _ in items), [v for _, v in items])
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        items = {str(k): try_coerce(v, args[1]) for k, v in value.items()}
        return (all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()})
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool), value)
    if hint is float:
        # PyYAML reads `1e-3` (no dot) as a string; accept numeric strings for float fields.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's resolved field types; resolving them (string annotations) costs more than the
    rest of a build, and planning a sweep builds a config per trial."""
    return typing.get_type_hints(cls)
