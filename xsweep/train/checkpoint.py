"""A downstream trial's `checkpoint.pt`: written at every dev evaluation, read when the trial runs again.

It holds the trained tensors, the best ones so far, optimiser, scheduler, gradient scaler, every
random-number generator and the record, so a trial started again (a killed worker retried by Ray,
`xsweep run --resume`, a trial paused at a pruning milestone) continues exactly where it stopped.
Each trial has its own, fused or not (train/downstream.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from xsweep.atomic import atomic_path
from xsweep.errors import XsweepError
from xsweep.record import TrialRecord, training_config
from xsweep.train import rng
from xsweep.train.spec import TrialSpec

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def write_checkpoint(path: Path, *, model: torch.nn.Module, best_state: dict[str, torch.Tensor] | None,
                     optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                     order: torch.Generator, epoch: int, step: int, since_best: int, record: TrialRecord,
                     seconds: float) -> None:
    """Everything needed to continue the trial bit for bit, in one file replaced atomically.

    `best_state` None means the best is the current state (stored once, not twice). Only tensors
    and plain Python values go in, so `torch.load(weights_only=True)` reads it without unpickling
    arbitrary objects.
    """
    snapshot = dict(record.to_dict(), train_seconds=seconds)
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(record.config, sort_keys=True),
        "epoch": epoch, "step": step, "since_best": since_best,
        "trainable": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        "best": None if best_state is None else {k: v.detach().cpu() for k, v in best_state.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),  # empty unless fp16
        "rng": rng.capture({"order": order}),
        "record": json.dumps(snapshot),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def read_checkpoint(path: Path, spec: TrialSpec) -> dict[str, Any] | None:
    """The trial's checkpoint, or None if it has none. Read with `weights_only=True`: a file that
    would need arbitrary unpickling is refused, never executed."""
    if not path.is_file():
        return None
    fix = f"delete {path.name} to restart this trial from its beginning"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file gets the same answer
        raise XsweepError(f"cannot read the trial checkpoint safely: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", where=str(path), fix=fix) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise XsweepError("the trial checkpoint is not one this version of xsweep writes", where=str(path), fix=fix)
    if training_config(json.loads(state["config"])) != training_config(spec.config):
        raise XsweepError("the trial checkpoint was written for another configuration", where=str(path), fix=fix)
    return state


def restore_checkpoint(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       scheduler: Any, scaler: torch.amp.GradScaler, order: torch.Generator,
                       record: TrialRecord) -> tuple[int, int, int, dict[str, torch.Tensor], float]:
    """Load a checkpoint into the freshly built trial, every generator included (call it last);
    returns (epoch, step, since_best, best state, seconds spent before)."""
    model.load_state_dict(state["trainable"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    best = state["best"] if state["best"] is not None else {k: v.clone() for k, v in state["trainable"].items()}
    saved = TrialRecord.from_dict(json.loads(state["record"]))
    for name in ("dev_history", "best_dev", "best_step", "best_epoch", "resumed_at"):
        setattr(record, name, getattr(saved, name))
    record.resumed_at.append(state["step"])
    rng.restore(state["rng"], {"order": order})
    return state["epoch"], state["step"], state["since_best"], best, saved.train_seconds


__all__ = ["CHECKPOINT_FILE", "read_checkpoint", "restore_checkpoint", "write_checkpoint"]
