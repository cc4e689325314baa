"""Which of a sweep's trials run fused (train/downstream.py), and what a fused run is called.

`sweep.fuse: K` puts up to K pending trials of one group (same config but learning rate and seed)
into one Tune trial: one process, one frozen backbone, one forward of every member's batch per
step. Each member keeps its own record, TensorBoard folder, checkpoint files and progress lines,
so the report, the evaluation stage and resume see one trial per configuration; Tune sees one
trial per fused run, whose results carry the member they belong to (`MEMBER_KEY`).
Groups that cannot share a forward (FT trains the backbone; NLI, slot and SGD heads have their
own batches) run one trial at a time as before.
"""

from __future__ import annotations

from typing import Any

from xsweep.config import can_fuse
from xsweep.train.spec import TrialSpec

MEMBER_KEY = "xsweep_trial"
"""Key of a reported result that names the trial it belongs to (Tune's own `trial_id` names the
Tune trial, which for a fused run holds several of ours)."""


def fusable(spec: TrialSpec) -> bool:
    """Whether `spec` may share a forward with its group."""
    cfg = spec.config
    return can_fuse(cfg["method"], cfg["head"]["kind"], cfg["data"]["dataset"], cfg["optim"].get("precision", "auto"))


def fused_chunks(specs: list[TrialSpec], fuse: int) -> list[list[TrialSpec]]:
    """`specs` as the Tune trials that run them: up to `fuse` trials of one fusable group each,
    in the order the groups first appear (so a grid's order is kept), members in their order."""
    chunks: list[list[TrialSpec]] = []
    open_chunk: dict[str, list[TrialSpec]] = {}
    for spec in specs:
        if fuse <= 1 or not fusable(spec):
            chunks.append([spec])
            continue
        chunk = open_chunk.get(spec.group_key)
        if chunk is None or len(chunk) == fuse:
            chunk = open_chunk[spec.group_key] = []
            chunks.append(chunk)
        chunk.append(spec)
    return chunks


def run_name(specs: list[dict[str, Any]]) -> str:
    """Tune's name for the trial running `specs`: the trial's id, or the first member's with a count."""
    first = specs[0]["trial_id"]
    return first if len(specs) == 1 else f"{first}+{len(specs) - 1}fused"
