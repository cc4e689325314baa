"""Pruning of learning rates within a group (`sweep.pruning`): successive halving at fixed epochs.

ASHA's rule, made deterministic so that it rests on the trial loop's exact resume: every trial of a
group runs to the first milestone epoch and pauses there (`TrialSpec.stop_after_epoch`); each
learning rate is scored by the mean over its seeds of their best English dev score up to that
epoch; the best `keep` fraction of the group's rates go on to the next milestone, and the trials of
the others, on every seed, are marked `pruned` and never continued. After the last milestone the
survivors run to their end. Groups (the record's `group_key`) are never compared with each other.

Everything here is a pure function of the trial records, so `--resume` recomputes the same
decisions: a dev history up to an epoch never changes once that epoch is reached.

- A trial that finished before a milestone (early stopping) takes part with its final history; one
  that diverged before it leaves its rate without a score, ranked below every scored rate (such a
  rate can never be selected).
- A group is decided at a milestone only once every trial of its remaining rates has reached it or
  finished; until then those trials are what it runs next.
- A milestone where nothing can be pruned (one rate left, or `keep` keeps them all) is skipped.
- A rate whose every seed had already finished keeps its records (`completed`), even if pruned: it
  has all its seeds either way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xsweep.record import TrialRecord
from xsweep.selection import TIE_TOLERANCE

FINISHED = ("completed", "diverged")
"""Statuses of a trial that ended by itself: its record is final and it is never run again."""


@dataclass(frozen=True)
class Candidate:
    """One trial of the sweep as pruning sees it."""

    trial_id: str
    group_key: str
    group_name: str
    lr: float
    seed: int


@dataclass
class Decision:
    """What a group's milestone kept and pruned: learning rate -> mean dev up to the milestone
    (None: a seed diverged before it), best first."""

    group_key: str
    group_name: str
    epoch: int
    kept: dict[float, float | None]
    pruned: dict[float, float | None]


@dataclass
class PruningPlan:
    decisions: list[Decision] = field(default_factory=list)
    """Every milestone decision the records allow, per group in milestone order."""
    targets: dict[str, int | None] = field(default_factory=dict)
    """Trial id -> where its next run stops: a milestone epoch, or None for its end. Trials absent
    here have nothing to run now (finished, pruned, or waiting for their group)."""
    to_prune: dict[str, int] = field(default_factory=dict)
    """Trial id -> milestone epoch, for trials of pruned rates whose record does not say so yet."""


def plan_pruning(candidates: list[Candidate], records: dict[str, TrialRecord], milestones: list[int],
                 keep: float) -> PruningPlan:
    """Decide every milestone the records allow and say what each trial runs next.

    `records`: trial id -> its record, for trials that have one.
    """
    plan = PruningPlan()
    groups: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        groups.setdefault(candidate.group_key, []).append(candidate)
    for members in groups.values():
        _plan_group(members, records, milestones, keep, plan)
    return plan


def _plan_group(members: list[Candidate], records: dict[str, TrialRecord], milestones: list[int], keep: float,
                plan: PruningPlan) -> None:
    alive = sorted({m.lr for m in members})
    for epoch in milestones:
        if kept_count(len(alive), keep) == len(alive):
            continue  # nothing to prune here: no reason to pause
        running = [m for m in members if m.lr in alive]
        waiting = [m for m in running if not reached(records.get(m.trial_id), epoch)]
        if waiting:
            plan.targets.update({m.trial_id: epoch for m in waiting})
            return
        scores = {lr: lr_score([records[m.trial_id] for m in running if m.lr == lr], epoch) for lr in alive}
        kept = survivors(scores, keep)
        ranked = rank(scores)
        plan.decisions.append(Decision(
            group_key=members[0].group_key, group_name=members[0].group_name, epoch=epoch,
            kept={lr: scores[lr] for lr in ranked if lr in kept},
            pruned={lr: scores[lr] for lr in ranked if lr not in kept}))
        for m in running:
            record = records[m.trial_id]
            if m.lr not in kept and record.status not in (*FINISHED, "pruned"):
                plan.to_prune[m.trial_id] = epoch
        alive = sorted(kept)
    for m in members:
        record = records.get(m.trial_id)
        if m.lr in alive and (record is None or record.status not in FINISHED):
            plan.targets[m.trial_id] = None


def reached(record: TrialRecord | None, epoch: int) -> bool:
    """Whether the trial's standing at `epoch` is known: it evaluated dev at or after it, or ended."""
    if record is None:
        return False
    return record.status in FINISHED or any(point.epoch >= epoch for point in record.dev_history)


def seed_score(record: TrialRecord, epoch: int) -> float | None:
    """Best English dev score up to `epoch`; None if the trial diverged before it."""
    if record.status == "diverged" and not any(point.epoch >= epoch for point in record.dev_history):
        return None
    scores = [point.score for point in record.dev_history if point.epoch <= epoch]
    return max(scores) if scores else None


def lr_score(seeds: list[TrialRecord], epoch: int) -> float | None:
    """Mean over a learning rate's seeds of their best dev score up to `epoch`; None if a seed has none."""
    scores = [seed_score(record, epoch) for record in seeds]
    if not scores or any(score is None for score in scores):
        return None
    return math.fsum(scores) / len(scores)  # exact before rounding: no dependence on seed order


def kept_count(alive: int, keep: float) -> int:
    """How many of `alive` learning rates a milestone keeps: `keep` of them rounded up, at least one."""
    return max(1, math.ceil(round(keep * alive, 9)))  # round: 0.3 x 10 is 3.0000000000000004 in floats


def rank(scores: dict[float, float | None]) -> list[float]:
    """Learning rates best first: highest mean dev, ties (as selection.py sees them) to the
    smaller rate; rates without a score last, smaller first."""
    left = sorted(lr for lr, score in scores.items() if score is not None)
    order = []
    while left:
        top = max(scores[lr] for lr in left)
        best = min(lr for lr in left if top - scores[lr] <= TIE_TOLERANCE)
        order.append(best)
        left.remove(best)
    return order + sorted(lr for lr, score in scores.items() if score is None)


def survivors(scores: dict[float, float | None], keep: float) -> set[float]:
    """The learning rates a milestone keeps."""
    return set(rank(scores)[:kept_count(len(scores), keep)])
