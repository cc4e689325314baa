"""The trial record: one JSON file per trial, read by resume, reports and TensorBoard.

A record says which configuration group the trial belongs to (a stable hash of the resolved
config without learning rate and seed, plus a readable form), its learning rate and seed, how it
ended, its English dev history and best score, and its per-language test scores once evaluated.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from xsweep.atomic import write_json
from xsweep.errors import XsweepError

Status = Literal["running", "paused", "completed", "diverged", "failed", "stopped", "pruned"]
STATUSES: tuple[str, ...] = ("running", "paused", "completed", "diverged", "failed", "stopped", "pruned")
"""`paused`: stopped at a pruning milestone (`sweep.pruning`), to be continued from its checkpoint;
`pruned`: its learning rate was pruned at a milestone, so it is never continued."""
RECORD_FILE = "record.json"

# Keys that say how or where a trial runs, not what it trains: they stay out of the checks that
# a checkpoint belongs to its trial, and out of the group key.
_NOT_TRAINING = ("name", "description", "sweep", "resources", "storage")


@dataclass
class DevPoint:
    step: int
    """Optimiser steps taken when dev was evaluated."""
    epoch: int
    """Epochs completed when dev was evaluated."""
    score: float
    """English dev metric (accuracy for intents)."""
    train_loss: float
    """Mean training loss since the previous evaluation."""


@dataclass
class TrialRecord:
    trial_id: str
    group_key: str
    """Stable hash of the resolved config without learning rate and seed."""
    group_name: str
    """Readable form of the group: task, method, prompt, shots, backbone."""
    lr: float
    seed: int
    status: Status = "running"
    metric: str = "accuracy"
    dev_history: list[DevPoint] = field(default_factory=list)
    best_dev: float | None = None
    best_step: int | None = None
    best_epoch: int | None = None
    test_scores: dict[str, float] = field(default_factory=dict)
    """Locale -> test metric of the best checkpoint; empty until evaluated."""
    error: str | None = None
    """Why a trial failed or diverged."""
    train_seconds: float = 0.0
    """Wall-clock seconds of training and evaluation inside the worker."""
    eval_seconds: float = 0.0
    """Wall-clock seconds the evaluation stage spent testing this trial's checkpoint."""
    config: dict[str, Any] = field(default_factory=dict)
    """The trial's resolved config (lr and seed included)."""
    resumed_at: list[int] = field(default_factory=list)
    """Optimiser steps at which the trial resumed from its checkpoint after an interruption."""
    worker: str | None = None
    """`host:pid` of the process that last ran the trial (which machine to look at); on a worker
    group, rank 0's."""
    workers: int = 1
    """How the trial last ran: 1 in one process (a Tune actor), W on a Ray Train worker group of W
    data-parallel workers (`resources.num_workers`)."""
    pruned_at_epoch: int | None = None
    """The pruning milestone at which the sweep stopped this trial's learning rate (status `pruned`)."""
    padding_ratio: float | None = None
    """Training: token positions fed to the model / real tokens, over the batches this trial's last
    run trained on (1.0: no padding); `optim.bucket_by_length` lowers it."""
    precision: str | None = None
    """`fp32`, `bf16` or `fp16`: what the trial computed in (`optim.precision`, `auto` resolved)."""
    matmul_tf32: bool = False
    """fp32 on CUDA: matmuls were allowed TF32 tensor cores."""
    aligned_on: str | None = None
    """APT: the parallel data its starting prompt was aligned on (`xsgd`, `tatoeba`, a .tsv's name);
    None for FT and PT, or for a prompt given by hand whose alignment run says nothing of its data."""

    def add_dev(self, point: DevPoint) -> bool:
        """Append a dev evaluation; return True if it is a new best (ties keep the earlier)."""
        self.dev_history.append(point)
        if self.best_dev is None or point.score > self.best_dev:
            self.best_dev, self.best_step, self.best_epoch = point.score, point.step, point.epoch
            return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrialRecord":
        data = dict(data)
        data["dev_history"] = [DevPoint(**p) for p in data.get("dev_history", [])]
        return cls(**data)


def write_record(record: TrialRecord, trial_dir: Path) -> Path:
    path = Path(trial_dir) / RECORD_FILE
    write_json(path, record.to_dict())
    return path


def read_record(path: Path) -> TrialRecord:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, ValueError) as exc:
        raise _unreadable(exc, str(path)) from None
    return parse_record(text, str(path))


def parse_record(text: str | bytes, where: str) -> TrialRecord:
    """A trial record from its JSON (`where`: its file, or its URI in a bucket, for the error)."""
    try:
        return TrialRecord.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise _unreadable(exc, where) from None


def _unreadable(exc: Exception, where: str) -> XsweepError:
    return XsweepError(f"cannot read trial record: {exc}", where=where,
                       fix="delete the trial's folder to re-run it, or restore the file")


def read_records(run_dir: Path) -> list[TrialRecord]:
    """Every trial record under `run_dir/trials`, sorted by trial id."""
    return [read_record(p) for p in sorted(Path(run_dir).glob(f"trials/*/{RECORD_FILE}"))]


ADDED_KEYS: dict[str, Any] = {
    # Length-bucketed training batches (on from their introduction; earlier runs drew random batches).
    "optim.bucket_by_length": True,
    # Mixed precision: `auto` is fp32 on CPU, as before; on a GPU it is bf16 (docs/CHANGELOG.md).
    "optim.precision": "auto",
    # Alignment settings fixed in train/align.py until the experiment schema took them (issue 16).
    "align.warmup_ratio": 0.1,
    "align.temperature": 0.05,
    "align.mask_probability": 0.15,
    "align.max_segments": 4,
    # Dev and test subsets (issue 17): off, the whole partitions, as before.
    "data.max_dev_examples": None,
    "data.max_test_examples_per_locale": None,
    # How a sentence is read (issue 17): `<s>`, no prefix, as before.
    "backbone.pooling": "cls",
    "backbone.text_prefix": "",
}
"""Config keys added after group keys were first defined (dotted key -> the default it was added
with). Such a key at that default is left out of the group key, so a run made before the key
existed keeps its group keys and trial ids, and `--resume` reruns nothing. Every new config key
is registered here (tests/test_group_keys.py fails otherwise). A default never changes silently:
changing one is a schema change, named in docs/CHANGELOG.md (runs made under the old default
then form new groups)."""


def training_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """What decides a trial's training, from its resolved config: without where and how it runs,
    its sweep, the languages it is tested on (a sweep resumed with more languages keeps its
    trials), and keys added later that hold their default (ADDED_KEYS)."""
    kept = {k: v for k, v in _without_added_defaults(resolved).items() if k not in _NOT_TRAINING}
    kept["data"] = {k: v for k, v in kept.get("data", {}).items() if k != "eval_locales"}
    return kept


def group_of(resolved: dict[str, Any]) -> tuple[str, str]:
    """(group key, readable group name) of a resolved config given as plain data."""
    keyed = training_config(resolved)
    keyed.pop("seed", None)  # seed and learning rate say which trial of the group it is
    keyed["optim"] = {k: v for k, v in keyed.get("optim", {}).items() if k != "lr"}
    digest = hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]
    prompt = resolved.get("prompt", {})
    data = resolved.get("data", {})
    shots = data.get("shots")
    parts = [
        f"{data.get('dataset', '?')}-{resolved.get('head', {}).get('kind', '?')}",
        str(resolved.get("method", "?")),
        "noprompt" if prompt.get("kind") == "none" else f"{prompt.get('kind')}{prompt.get('length')}",
        f"shots={'all' if shots is None else shots}",
        str(resolved.get("backbone", {}).get("name", "?")),
    ]
    return digest, "/".join(parts)


def _without_added_defaults(resolved: dict[str, Any]) -> dict[str, Any]:
    """`resolved` without the ADDED_KEYS that hold the default they were added with."""
    pruned = copy.deepcopy(resolved)
    for dotted, default in ADDED_KEYS.items():
        *parents, leaf = dotted.split(".")
        section = pruned
        for name in parents:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict) and leaf in section and section[leaf] == default:
            del section[leaf]
    return pruned


def trial_id_of(group_key: str, lr: float, seed: int, index: int) -> str:
    """A stable trial name (no timestamps), so a resumed sweep finds its trials again."""
    return f"t{index:03d}-{group_key[:6]}-lr{lr:g}-s{seed}"
