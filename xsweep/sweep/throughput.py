"""Measured training throughput (FLOP/s) and the device-hours it gives a cost projection.

bench/bench_step.py stores what it measured on this machine (`store_measurement`), each figure
naming the backbone widths, precision and device it was measured for; a projection uses a stored
figure only for trials of the same widths, precision and device kind (`matching_measurement`), or
the rate given with `--throughput`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from xsweep.paths import cache_dir
from xsweep.sweep.cost import BackboneSize, DataSize, Projection, backbone_size

THROUGHPUT_FILE = "throughput.json"
"""Written into xsweep's cache (`$XSWEEP_CACHE`) by bench/bench_step.py: `{"measurements": [...]}`,
one FLOP/s figure per (backbone width, precision, device) measured on this machine."""

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_THROUGHPUT = re.compile(r"^\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGTP]?)\s*(flop/s|flops|tok/s|tokens/s)?\s*$",
                         re.IGNORECASE)


def parse_throughput(text: str) -> tuple[float, str]:
    """`1e14`, `100T`, `100TFLOP/s` -> (FLOP/s, "flop/s"); `5000tok/s`, `5k tok/s` -> (tokens/s, "tok/s")."""
    from xsweep.errors import XsweepError

    match = _THROUGHPUT.match(text)
    if not match or float(match.group(1)) <= 0:
        raise XsweepError(f"cannot read the throughput {text!r}", where="--throughput",
                          fix="give FLOP/s (`1e14`, `100T`, `100TFLOP/s`) or forward tokens/s (`5000tok/s`)")
    unit = (match.group(3) or "flop/s").lower()
    return float(match.group(1)) * _SI[match.group(2)], "tok/s" if unit.startswith("tok") else "flop/s"


def stored_measurements() -> list[dict[str, Any]]:
    """The FLOP/s figures bench/bench_step.py stored on this machine, each naming what it measured:
    `backbone_name`, its `hidden` and `intermediate` widths, `precision`, `device`. A file written
    before measurements said so (one `flop_per_s` at its top) is read as what bench_step then
    measured, fp32 on the CPU, of the backbone it names (minilm when none), marked `legacy`."""
    path = cache_dir() / THROUGHPUT_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(stored, dict):
        return []
    if "measurements" in stored:
        entries = [m for m in stored["measurements"] if isinstance(m, dict)]
    else:
        arg = str(stored.get("backbone", "minilm"))
        name = "all-MiniLM-L6-v2" if arg == "minilm" else arg
        size = backbone_size(name)
        entries = [{**stored, "backbone_name": name, "hidden": size and size.hidden,
                    "intermediate": size and size.intermediate, "precision": "fp32", "device": "cpu", "legacy": True}]
    return [m for m in entries if isinstance(m.get("flop_per_s"), (int, float)) and m["flop_per_s"] > 0]


def store_measurement(measurement: dict[str, Any]) -> Path:
    """Add a measurement to THROUGHPUT_FILE, replacing the one of the same width, precision and
    device (bench/bench_step.py calls this); an older file's single figure is kept as an entry."""
    from xsweep.atomic import write_json

    def key(m: dict[str, Any]) -> tuple:
        return m.get("hidden"), m.get("intermediate"), m.get("precision"), m.get("device")

    missing = [k for k in ("flop_per_s", "backbone_name", "hidden", "intermediate", "precision", "device")
               if measurement.get(k) is None]
    if missing:
        raise ValueError(f"a throughput measurement must say {missing}")
    kept = [m for m in stored_measurements() if key(m) != key(measurement)]
    path = cache_dir() / THROUGHPUT_FILE
    write_json(path, {"measurements": [*kept, measurement]})
    return path


def matching_measurement(backbone: BackboneSize, device: str, precision: str) -> dict[str, Any] | None:
    """The stored rate measured on `device` in `precision` for a backbone of this one's widths (the
    matrices a FLOP/s rate depends on: hidden and feed-forward; depth only repeats them), or None."""
    return next((m for m in reversed(stored_measurements())
                 if (m.get("device"), m.get("precision"), m.get("hidden"), m.get("intermediate"))
                 == (device, precision, backbone.hidden, backbone.intermediate)), None)


def describe_measurement(m: dict[str, Any]) -> str:
    legacy = "; a file older than precision and device in it, read as fp32 on CPU" if m.get("legacy") else ""
    return (f"{m['flop_per_s']:.2e} FLOP/s measured for {m.get('backbone_name', '?')} (hidden {m.get('hidden')}, "
            f"FFN {m.get('intermediate')}), {m.get('precision')} on {m.get('device')}, "
            f"{m.get('machine', 'this machine')}, {m.get('date', '?')} (bench/bench_step.py{legacy})")



def rates(p: Projection, backbone: BackboneSize, data: DataSize, throughput: str | None
          ) -> tuple[dict[tuple[str, str], tuple[float, str]], list[tuple[str, str]]]:
    """FLOP/s and how it was known for every (device, precision) the trials compute in, and the
    kinds no measurement matches. `--throughput` applies to every kind."""
    kinds = sorted({(device, precision) for _, device, precision in p.flops_by_kind})
    if throughput is not None:
        rate, unit = parse_throughput(throughput)
        if unit == "tok/s":
            rate_flops = rate * backbone.forward_flops(data.mean_tokens) / data.mean_tokens
            said = f"{rate:,.0f} forward tokens/s (--throughput) = {rate_flops:.2e} FLOP/s"
        else:
            rate_flops, said = rate, f"{rate:.2e} FLOP/s (--throughput)"
        return {kind: (rate_flops, said) for kind in kinds}, []
    found, missing = {}, []
    for kind in kinds:
        m = matching_measurement(backbone, *kind)
        if m is None:
            missing.append(kind)
        else:
            found[kind] = (float(m["flop_per_s"]), describe_measurement(m) + "; --throughput overrides")
    return found, missing


def hours_at(p: Projection, found: dict[tuple[str, str], tuple[float, str]],
           fraction: dict[str, float] | None = None) -> float:
    """Device-hours of the projection, training and dev scaled by `fraction[method]` when given."""
    return sum(((fraction[method] if fraction else 1.0) * train_dev + test) / found[(device, precision)][0]
               for (method, device, precision), (train_dev, test) in p.flops_by_kind.items()) / 3600


__all__ = ["THROUGHPUT_FILE", "describe_measurement", "hours_at", "matching_measurement", "parse_throughput", "rates",
           "store_measurement", "stored_measurements"]
