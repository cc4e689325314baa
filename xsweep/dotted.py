"""Nested config dicts as dotted keys (`optim.lr`), the names the override grammar and grids use."""

from __future__ import annotations

from typing import Any

from xsweep.errors import XsweepError


def flatten(tree: dict[str, Any], *, keep_whole: tuple[str, ...] = (), prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value. Non-empty mappings are descended into, except those whose dotted
    key starts with one of `keep_whole` (e.g. `sweep.grid`, whose own keys are dotted already),
    which stay one value; an empty mapping is a leaf."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and not (keep_whole and name.startswith(keep_whole)):
            flat.update(flatten(value, keep_whole=keep_whole, prefix=name + "."))
        else:
            flat[name] = value
    return flat


def set_dotted(raw: dict, key: str, value: Any, *, where: str) -> None:
    """Set `a.b.c` in a nested dict, creating levels; the checks happen in `from_dict`."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise XsweepError(f"cannot set {key!r}: {part!r} is not a section", where=where,
                              fix=f"check the key; {part!r} holds a value, not sub-keys")
        node = child
    node[parts[-1]] = value
