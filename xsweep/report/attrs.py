"""What a group *is*, read from its resolved config: the axes the paper's tables and plots use.

Tables and plots are declared as "sections by X, rows by Y"; this module says how to read X and Y
from a group, how to order their values, and how to label them.
"""

from __future__ import annotations

from typing import Any

from xsweep.selection import GroupSummary

# Attribute -> (where in the resolved config). Order is the order labels are composed in.
ATTRIBUTES = ("dataset", "classifier", "method", "alignment", "prompt", "length", "shots", "backbone")
PROMPT_ATTRIBUTES = ("prompt", "length")
METHOD_ORDER = {"ft": 0, "pt": 1, "apt": 2}


def group_attrs(summary: GroupSummary) -> dict[str, Any]:
    """Attribute -> value of a group. `shots` None means all data; `length` None means no prompt;
    `alignment` None means no aligned prompt (or none whose data can be read)."""
    cfg = summary.config
    prompt = cfg.get("prompt", {})
    kind = prompt.get("kind")
    return {
        "dataset": cfg.get("data", {}).get("dataset"),
        "classifier": cfg.get("head", {}).get("kind"),
        "method": cfg.get("method"),
        "alignment": summary.aligned_on if cfg.get("method") == "apt" else None,
        "prompt": kind,
        "length": None if kind in (None, "none") else prompt.get("length"),
        "shots": cfg.get("data", {}).get("shots"),
        "backbone": cfg.get("backbone", {}).get("name"),
    }


def label(attr: str, value: Any) -> str:
    """How the paper writes a value: `5-shots`, `all`, `APT`, `NLI-based`, `P=16`, `on xsgd`;
    an empty string for a value that needs no mention (no alignment)."""
    if attr == "alignment":
        return "" if value is None else f"on {value}"
    if attr == "shots":
        return "all" if value is None else f"{value}-shots"
    if attr == "method":
        return str(value).upper()
    if attr == "classifier":
        return {"nli": "NLI-based", "vanilla": "vanilla", "slot": "slot"}.get(value, str(value))
    if attr == "length":
        return "no prompt" if value is None else f"P={value}"
    return str(value)


def sort_key(attr: str, value: Any) -> tuple:
    """Order of values on an axis: shots 5 < 15 < all; FT < PT < APT; lengths ascending."""
    if attr == "shots" or attr == "length":
        return (value is None, value if value is not None else 0)
    if attr == "method":
        return (METHOD_ORDER.get(value, len(METHOD_ORDER)), str(value))
    return (0, str(value))


def varying(summaries: list[GroupSummary], exclude: tuple[str, ...] = ()) -> list[str]:
    """Attributes whose value differs between the groups (the ones a label must mention)."""
    values = [group_attrs(s) for s in summaries]
    out = []
    for a in ATTRIBUTES:
        seen = values
        if a in PROMPT_ATTRIBUTES:
            # A group without a prompt (FT) differs in prompt by its method already: compare the
            # prompt attributes among prompted groups only, so FT beside PT does not split tables.
            seen = [v for v in values if v["length"] is not None]
        elif a == "alignment":  # likewise, only APT groups have an alignment corpus
            seen = [v for v in values if v["alignment"] is not None]
        if a not in exclude and len({repr(v[a]) for v in seen}) > 1:
            out.append(a)
    return out


def describe(summary: GroupSummary, attrs: list[str]) -> str:
    """A short label from the given attributes, e.g. `PT · 5-shots`; the group name if none."""
    values = group_attrs(summary)
    parts = [text for text in (label(a, values[a]) for a in attrs) if text]
    return " · ".join(parts) if parts else summary.group_name


def short_locale(locale: str, all_locales: list[str]) -> str:
    """`ja-JP` -> `ja` as in the paper; Chinese keeps its script region (`zh-CN`), as does any
    language with two locales."""
    lang = locale.split("-")[0]
    shared = sum(1 for loc in all_locales if loc.split("-")[0] == lang) > 1
    return locale if shared or lang == "zh" else lang
