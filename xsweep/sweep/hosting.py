"""What a downstream trial's process keeps between trials: the frozen backbone, loaded once.

Tune reuses a trial's actor for the next trial (`reuse_actors=True`), so a process runs many
trials one after another. Under PT and APT the backbone is frozen and only read (the prompt and
head are new per trial), so the process keeps one loaded copy, keyed by where it was loaded from,
its attention implementation and its dtype (`optim.precision`), and every later trial skips
reading it from disk. FT trains the backbone's weights, so FT trials always load their own.

The trial passes `backbone_loader(method)` to the downstream loop as its `load_backbone`. A trial that
finds its encoder here gets bit-identical weights to one loaded from disk: loading draws no
random numbers, so the trial's results do not depend on which trial ran before it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from xsweep.config import ResourcesConfig
from xsweep.models.backbone import load_backbone

_loaded: dict[tuple[str, str | None, str], tuple] = {}
"""At most one backbone per process: a sweep uses one, and a second would double the memory."""
_disk_loads = 0


def cached_backbone(name_or_path: str, *, attn_implementation: str | None = None,
                    dtype: torch.dtype | None = None) -> tuple:
    """`load_backbone`, once per process for a given (path, attention implementation, dtype)."""
    global _disk_loads
    path = Path(name_or_path).expanduser()
    key = (str(path.resolve()) if path.is_dir() else name_or_path, attn_implementation, str(dtype))
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = load_backbone(name_or_path, attn_implementation=attn_implementation, dtype=dtype)
        _disk_loads += 1
    return _loaded[key]


def forget_backbones() -> None:
    """Drop the kept backbone (it frees its memory; the next trial loads from disk again)."""
    _loaded.clear()


def backbone_disk_loads() -> int:
    """How many times this process has loaded a backbone from disk (for tests and benchmarks)."""
    return _disk_loads


def backbone_loader(method: str) -> Callable[..., tuple]:
    """The loader a trial of `method` gives the downstream loop: the process's cache for a frozen
    backbone (pt, apt); FT trains the encoder's weights, so a shared copy would carry them over to
    the next trial, and FT loads its own."""
    return load_backbone if method == "ft" else cached_backbone


def trial_resources(resources: ResourcesConfig) -> dict[str, float]:
    """What one trial's process asks Tune for; fractions pack several trials on a CPU or GPU.

    A downstream trial is one process (config validation refuses `resources.num_workers` other
    than 1: alignment pretraining, which has data parallelism, sets its own `align.num_workers`).
    """
    wanted = {"cpu": resources.cpus_per_trial}
    if resources.gpus_per_trial > 0:
        wanted["gpu"] = resources.gpus_per_trial
    return wanted
