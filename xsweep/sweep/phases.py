"""A grid with `sweep.pruning` runs in phases: to a milestone, decide, mark the pruned, go on.

Each phase runs the trials that sweep/pruning.py says have somewhere to go, each stopping at its
group's next milestone (`TrialSpec.stop_after_epoch`) or running to its end, through the runner's
usual path (Tune, reused actors, retries, the budget). Then the records decide the next phase. A
paused trial continues from its checkpoint exactly as if it had never stopped, so a pruned sweep's
surviving trials are the trials a sweep without pruning would have run.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from xsweep.config import ExperimentConfig
from xsweep.record import RECORD_FILE, TrialRecord, read_record, write_record
from xsweep.trial_log import TrialWriter
from xsweep.sweep.pruning import FINISHED, Candidate, Decision, plan_pruning, reached
from xsweep.train.spec import TrialSpec

Log = Callable[[str], None]
RunBatch = Callable[[list[TrialSpec]], list[str]]
"""run(specs) -> ids of the trials that failed."""


def run_in_phases(cfg: ExperimentConfig, specs: list[TrialSpec], run: RunBatch, *, log: Log,
                  marked: Callable[[TrialSpec], None] = lambda spec: None) -> list[str]:
    """Run the grid `specs` with pruning; return the ids of failed trials. A trial that does not get
    where it was sent (failed, or not started under a budget) is left for `--resume`, and with it
    its group's decision. `marked(spec)` follows each trial marked pruned (a bucket run pushes what
    the mark wrote into the driver's copy)."""
    by_id = {s.trial_id: s for s in specs}
    first_seed_first = {s.trial_id: (cfg.sweep.seeds.index(s.config["seed"]), i) for i, s in enumerate(specs)}
    candidates = [Candidate(s.trial_id, s.group_key, s.group_name, s.config["optim"]["lr"], s.config["seed"])
                  for s in specs]
    failed: list[str] = []
    left: set[str] = set()
    logged: set[tuple[str, int]] = set()
    while True:
        plan = plan_pruning(candidates, records_of(specs), cfg.sweep.pruning.milestones, cfg.sweep.pruning.keep)
        for decision in plan.decisions:  # on --resume, the decisions made before are told again once
            if (decision.group_key, decision.epoch) not in logged:
                logged.add((decision.group_key, decision.epoch))
                log(describe_decision(decision))
        for trial_id, epoch in plan.to_prune.items():
            mark_pruned(by_id[trial_id], epoch)
            marked(by_id[trial_id])
        # Seed-major: with few trials at a time, every rate gets a seed before any gets a second.
        batch = sorted((replace(s, stop_after_epoch=plan.targets[s.trial_id]) for s in specs
                        if s.trial_id in plan.targets and s.trial_id not in left),
                       key=lambda s: first_seed_first[s.trial_id])
        if not batch:
            break
        log(f"pruning: {len(batch)} trial(s) to run {_where_to(batch)}")
        failed += run(batch)
        records = records_of(batch)
        short = {s.trial_id for s in batch if not ended_as_asked(records.get(s.trial_id), s)}
        if short == {s.trial_id for s in batch}:
            break  # nothing moved (e.g. the budget is spent): running it again would not either
        left |= short
    if left:
        log(f"pruning: {len(left)} trial(s) did not reach their milestone or end; `--resume` continues them "
            "and their groups' decisions")
    return list(dict.fromkeys(failed))


def ended_as_asked(record: TrialRecord | None, spec: TrialSpec) -> bool:
    """The trial ended, or paused at the milestone its spec stopped it at."""
    if record is None:
        return False
    if record.status in FINISHED:
        return True
    return record.status == "paused" and spec.stop_after_epoch is not None and reached(record, spec.stop_after_epoch)


def records_of(specs: list[TrialSpec]) -> dict[str, TrialRecord]:
    """Trial id -> record, for the trials that have one."""
    paths = {s.trial_id: Path(s.trial_dir) / RECORD_FILE for s in specs}
    return {trial_id: read_record(path) for trial_id, path in paths.items() if path.is_file()}


def mark_pruned(spec: TrialSpec, epoch: int) -> None:
    """The record says the trial was pruned: it is never continued (its checkpoint stays)."""
    record = read_record(Path(spec.trial_dir) / RECORD_FILE)
    record.status, record.pruned_at_epoch = "pruned", epoch
    write_record(record, Path(spec.trial_dir))
    with TrialWriter(Path(spec.tensorboard_dir)) as writer:  # the dashboard shows it ended, aborted
        writer.end_session("pruned")


def describe_decision(decision: Decision) -> str:
    def rates(scores: dict[float, float | None]) -> str:
        return ", ".join(f"{lr:g} ({'no score' if dev is None else f'{dev:.3f}'})" for lr, dev in scores.items())
    return (f"pruning {decision.group_name} at epoch {decision.epoch} (mean dev over seeds): kept lr "
            f"{rates(decision.kept)}; pruned lr {rates(decision.pruned)}")


def _where_to(batch: list[TrialSpec]) -> str:
    milestones = sorted({s.stop_after_epoch for s in batch if s.stop_after_epoch is not None})
    where = [f"up to epoch {', '.join(map(str, milestones))}"] if milestones else []
    where += ["to their end"] if any(s.stop_after_epoch is None for s in batch) else []
    return " or ".join(where)
