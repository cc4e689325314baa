"""The sweep grid: its points in file order, and the dotted keys one grid value sets."""

from __future__ import annotations

from typing import Any

from xsweep.config.schema import ExperimentConfig


def grid_points(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """The cross product of the sweep grid, in file order: a list of {dotted key: value}."""
    points: list[dict[str, Any]] = [{}]
    for key, values in cfg.sweep.grid.items():
        points = [{**point, **axis_value(key, value)} for point in points for value in values]
    return points


def axis_value(key: str, value: Any) -> dict[str, Any]:
    """The dotted keys one grid value sets: itself, or a mapping's keys set together."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {key: value}
