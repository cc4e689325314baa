"""Multilingual evaluation as its own stage: only the selected learning rate is tested everywhere.

Testing 52 languages is the largest single cost of the paper's grids (the NLI head scores every
utterance against every intent). Model selection needs English dev only, so PT and APT trials
train and report English dev, keep their best prompt and head, and stop there. Once the grid has
run, each group's learning rate is chosen on English dev exactly as the report chooses it
(`selection.summarise`), and only that rate's trials, all seeds, are evaluated on every
language from their kept checkpoints. The report reads the same records either way, so its
tables are identical to evaluating every trial; `sweep.evaluate: all` tests every trial anyway.

FT trials are the exception: their checkpoint is the whole model, so they test inside the trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from xsweep.config import ExperimentConfig
from xsweep.errors import DISK_FULL_ERRNOS, disk_full_error, real_name
from xsweep.record import RECORD_FILE, read_record
from xsweep.selection import summarise
from xsweep.train.spec import TrialSpec

Log = Callable[[str], None]


def tests_inside_trial(cfg: ExperimentConfig, method: str) -> bool:
    """Whether a trial tests every language itself (rather than in the evaluation stage)."""
    return cfg.sweep.evaluate == "all" or method == "ft"


def to_evaluate(specs: list[TrialSpec], locales: list[str]) -> list[TrialSpec]:
    """The trials of each group's selected learning rate still missing a test language."""
    records = {}
    for spec in specs:
        path = Path(spec.trial_dir) / RECORD_FILE
        if path.is_file():
            records[spec.trial_id] = read_record(path)
    chosen = {(g.group_key, g.chosen_lr) for g in summarise(list(records.values()), locales=locales)
              if g.chosen_lr is not None}
    wanted = []
    for spec in specs:
        record = records.get(spec.trial_id)
        if (record is not None and record.status == "completed" and (record.group_key, record.lr) in chosen
                and not set(locales) <= set(record.test_scores)):
            wanted.append(spec)
    return wanted


def run_evaluation_stage(cfg: ExperimentConfig, specs: list[TrialSpec], locales: list[str], *,
                         start_ray: Callable[[], None], log: Log = print,
                         storage: dict[str, str] | None = None) -> list[str]:
    """Evaluate the selected trials on `locales` as Ray tasks with the trials' resources; returns
    the ids of trials whose evaluation failed. A sweep already evaluated starts nothing. `storage`:
    a bucket run's (sweep.bucket.storage_of), whose tasks test local copies of their trials."""
    import ray

    wanted = to_evaluate(specs, locales)
    if not wanted:
        return []
    start_ray()
    others = len(specs) - len(wanted)
    log(f"evaluation stage: {len(wanted)} trial(s) of the selected learning rates on {len(locales)} languages"
        + (f" (the other {others} report English dev only)" if others else ""))
    resources = {"num_cpus": cfg.resources.cpus_per_trial}
    if cfg.resources.gpus_per_trial > 0:
        resources["num_gpus"] = cfg.resources.gpus_per_trial
    evaluate = ray.remote(**resources)(_evaluate)
    threads = max(1, int(cfg.resources.cpus_per_trial))
    pending = {evaluate.remote(spec, locales, threads, storage): spec for spec in wanted}
    failed = []
    for ref, spec in pending.items():
        try:
            scores = ray.get(ref)
            mean = sum(scores.values()) / len(scores)
            log(f"  tested   {spec.trial_id}: average over {len(scores)} languages {mean:.3f}")
        except Exception as exc:  # noqa: BLE001 - one trial's failure must not hide the others'
            cause = getattr(exc, "cause", exc)  # a RayTaskError carries the task's own exception
            if isinstance(cause, OSError) and cause.errno in DISK_FULL_ERRNOS:
                for other in pending:  # every other one would fail the same way
                    ray.cancel(other)
                raise disk_full_error(real_name(cause.filename) or spec.trial_dir, cause.strerror) from None
            failed.append(spec.trial_id)
            log(f"  evaluation of {spec.trial_id} failed: {str(exc).strip().splitlines()[-1]}")
    return failed


def _evaluate(spec: TrialSpec, locales: list[str], threads: int, storage: dict[str, str] | None) -> dict[str, float]:
    import torch

    from xsweep.sweep.bucket import staged
    from xsweep.sweep.hosting import backbone_loader
    from xsweep.train.evaluate import evaluate_saved_trial

    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS from num_cpus; torch needs telling too
    # Ray reuses its task workers: with the process's cache, the next trial skips loading the backbone.
    with staged([spec], storage) as ([here], _):
        return evaluate_saved_trial(here, locales, load_backbone=backbone_loader(spec.config["method"]))
