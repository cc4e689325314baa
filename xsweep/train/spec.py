"""What one downstream trial is: `TrialSpec`, the unit the sweep plans and the worker loops run.

It sits below the loops (train/downstream.py, train/member.py, train/evaluate.py) and the sweep
(sweep/), which both import it; it imports nothing of either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

Reporter = Callable[[dict[str, Any]], None]
"""report(metrics): called by a loop after each evaluation (Ray Tune's report, a list's append, ...)."""


@dataclass
class TrialSpec:
    """Everything a worker needs to run one trial; plain data, so it crosses process boundaries."""

    trial_id: str
    trial_dir: str
    """Folder of this trial's record, sampled ids, label map and best checkpoint."""
    tensorboard_dir: str
    """Folder of this trial's TensorBoard event files."""
    config: dict[str, Any]
    """The trial's resolved experiment config (lr and seed set)."""
    backbone_path: str
    """Local directory of the backbone (built-in models are built before the sweep starts)."""
    data_dir: str
    """Local data folder: MASSIVE `<locale>.jsonl` files, or SGD's `train/ dev/ test/` (data.dataset)."""
    eval_locales: list[str]
    """Locales evaluated on test with the best checkpoint; empty: English dev only, no test."""
    group_key: str
    group_name: str
    hparams: dict[str, Any] = field(default_factory=dict)
    """This trial's values of the keys its sweep varies (dotted key -> number or string): its
    HParams in TensorBoard, whose table shows these and the metrics; `config` is its text summary.
    Empty (a spec made by hand): the seed alone."""
    extra_meta: dict[str, Any] = field(default_factory=dict)
    test_at_every_evaluation: bool = False
    """Also test every locale of `eval_locales` at each dev evaluation, into TensorBoard as
    `test_curve/<locale>/<metric>` (the test score over training, for analysis; and the naive
    protocol of bench/bench_sweep.py's baseline). The kept best is still tested at the end."""
    aligned_on: str | None = None
    """APT: the parallel data its starting prompt (`prompt.init_from`) was aligned on; the record says so."""
    stop_after_epoch: int | None = None
    """Pause after the dev evaluation (and checkpoint) at this epoch, untested, with status
    `paused`; run again with a later stop, or None, to continue (sweep.pruning's milestones)."""
