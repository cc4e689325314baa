"""Nested config dicts as dotted keys (`optim.lr`), the names the override grammar and grids use."""

from __future__ import annotations

from typing import Any


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
