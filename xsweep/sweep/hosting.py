"""What a downstream trial's process keeps between trials: the frozen backbone, loaded once.

Tune reuses a trial's actor for the next trial (`reuse_actors=True`), so a process runs many
trials one after another. Under PT and APT the backbone is frozen and only read (the prompt and
head are new per trial), so the process keeps one loaded copy, keyed by where it was loaded from,
its attention implementation and its dtype (`optim.precision`), and every later trial skips
reading it from disk. FT trains the backbone's weights, so FT trials always load their own.

The trial passes `backbone_loader(method)` to the downstream loop as its `load_backbone`. A trial that
finds its encoder here gets bit-identical weights to one loaded from disk: loading draws no
random numbers, so the trial's results do not depend on which trial ran before it.

It also says what a trial asks Tune for (`trial_placement`): its actor's share of a CPU or GPU,
or, for a trial on a worker group (`resources.num_workers` > 1, sweep/workers.py), almost nothing
for its driver, whose workers ask for the trial's resources themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

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
    On a worker group (`resources.num_workers` > 1) these are each worker's."""
    wanted = {"cpu": resources.cpus_per_trial}
    if resources.gpus_per_trial > 0:
        wanted["gpu"] = resources.gpus_per_trial
    return wanted


DRIVER_CPUS = 0.01
"""What the Tune trial of a worker-group trial holds: its driver only waits on the TorchTrainer,
whose workers ask Ray for the trial's resources themselves."""


def workers_of(spec: Any) -> int:
    """`resources.num_workers` of a trial (a `TrialSpec`, or one as a dict)."""
    config = spec["config"] if isinstance(spec, dict) else spec.config
    return int(config.get("resources", {}).get("num_workers", 1))


def trial_placement(config: dict[str, Any]):
    """`tune.with_resources`' callable: the Tune trial's own resources, from its first spec's
    config (a grid may vary `resources`): the trial's, for a trial in an actor; almost nothing for
    the driver of a worker group."""
    from ray.tune import PlacementGroupFactory

    spec = config["specs"][0]
    if workers_of(spec) > 1:
        return PlacementGroupFactory([{"CPU": DRIVER_CPUS}])
    wanted = trial_resources(ResourcesConfig(**spec["config"]["resources"]))
    return PlacementGroupFactory([{key.upper(): value for key, value in wanted.items()}])


def group_concurrency(specs: list[Any], cluster: dict[str, float]) -> int | None:
    """How many worker-group trials fit on `cluster` (Ray's resources) at once, or None when every
    trial runs in an actor (Tune then starts as many as fit). A driver holds almost nothing, so
    without this limit Tune would start a driver process per trial, each waiting for workers."""
    grouped = [s.config["resources"] for s in specs if workers_of(s) > 1]
    if not grouped:
        return None
    fits = []
    for res in grouped:
        need = {"CPU": res["cpus_per_trial"] * res["num_workers"], "GPU": res["gpus_per_trial"] * res["num_workers"]}
        fits.append(min(int(cluster.get(key, 0) // amount) for key, amount in need.items() if amount > 0))
    return max(1, min(fits))
