"""Run an experiment's sweep on Ray: prepare data and backbone, run the grid, write the report.

Two layers: the trial loop (`train.downstream`), run by a Tune function trainable in the trial's
own actor (`sweep.trial`; docs/trials.md says why not a Ray Train worker group per trial), or, for
a trial of `resources.num_workers` > 1, on a Ray Train worker group that trainable drives
(`sweep.workers`), and a `Tuner` over the trials that reuses each actor for the next trial. This module and `sweep/` are
the only places that import Ray Tune.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from xsweep.config import ExperimentConfig, dump_yaml, grid_points, to_dict, with_overrides
from xsweep.dotted import flatten
from xsweep.errors import XsweepError, disk_full_error
from xsweep.record import RECORD_FILE, group_of, read_record, trial_id_of
from xsweep.storage import check_bucket, is_uri, join
from xsweep.sweep.bucket import (open_run_mirror, pull_records, pull_stage, push_driver_files,
                                 push_stage_scores, push_trial_mark, run_uri, storage_of, tune_storage)
from xsweep.sweep.cluster import check_cluster_storage
from xsweep.sweep.preflight import check_address, check_storage
from xsweep.sweep.prepare import PreparedInputs, demo_data_dir, prepare_inputs, write_manifest
from xsweep.sweep.evaluation import run_evaluation_stage, tests_inside_trial
from xsweep.sweep.retrieval import RESULT_FILE as RETRIEVAL_FILE, check_retrieval, run_retrieval
from xsweep.sweep.phases import ended_as_asked, run_in_phases
from xsweep.sweep.pruning import FINISHED
from xsweep.sweep.ray_session import first_line, start_ray
from xsweep.sweep.search import run_optuna
from xsweep.sweep.stages import (STAGES_DIR, AlignStage, check_align_data, describe_stages, plan_align_stages,
                                 needs_alignment, run_align_stages, stage_for, stage_shapes, trial_overrides)
from xsweep.train.align import aligned_corpus
from xsweep.train.spec import TrialSpec
from xsweep.trial_log import flatten_config, pick_hparams

Log = Callable[[str], None]

def run_dir_of(cfg: ExperimentConfig) -> Path:
    return Path(cfg.storage.root).expanduser().resolve() / cfg.run_name


def run_location(cfg: ExperimentConfig) -> str:
    """Where the run lives, as the user names it: its folder, or its URI in a bucket."""
    return run_uri(cfg) if is_uri(cfg.storage.root) else str(run_dir_of(cfg))


def plan_trials(cfg: ExperimentConfig, run_dir: Path, inputs: PreparedInputs, stages: list[AlignStage] = (),
                points: list[dict[str, Any]] | None = None, first_index: int = 0) -> list[TrialSpec]:
    """One TrialSpec per (point, seed), with stable ids so a resumed sweep finds them; `points`
    defaults to the grid's. APT trials of a staged experiment start from their stage's prompt.
    PT/APT trials test no language themselves unless `sweep.evaluate` is `all`: the evaluation
    stage tests the selected learning rate's."""
    specs = []
    points = grid_points(cfg) if points is None else points
    # Every key any point sets, and the seed: the same columns for every trial of the sweep.
    swept = list(dict.fromkeys([key for point in points for key in point] + ["seed"]))
    for index, point in enumerate(points, first_index):
        for seed in cfg.sweep.seeds:
            trial_cfg = with_overrides(cfg, {**point, "seed": seed})
            # Read before the stage's overrides, which drop `align` (an APT trial's corpus axis).
            hparams = pick_hparams(flatten_config(to_dict(trial_cfg)), swept)
            aligned_on = _aligned_on(stages, trial_cfg)
            trial_cfg = with_overrides(trial_cfg, trial_overrides(stages, trial_cfg))
            trial_cfg.sweep.grid = {}  # a trial is one grid point; the run's config.yaml keeps the grid
            resolved = to_dict(trial_cfg)
            key, name = group_of(resolved)
            trial_id = trial_id_of(key, trial_cfg.optim.lr, seed, index)
            specs.append(TrialSpec(
                trial_id=trial_id,
                trial_dir=str(run_dir / "trials" / trial_id),
                tensorboard_dir=str(run_dir / "tensorboard" / trial_id),
                config=resolved,
                backbone_path=str(inputs.backbone_path),
                data_dir=str(inputs.data_dir),
                eval_locales=list(inputs.eval_locales) if tests_inside_trial(cfg, trial_cfg.method) else [],
                group_key=key,
                group_name=name,
                hparams=hparams,
                aligned_on=aligned_on,
            ))
    return specs


def _aligned_on(stages: list[AlignStage], trial_cfg: ExperimentConfig) -> str | None:
    """The parallel data an APT trial's starting prompt is aligned on: its stage's sources, or for
    a prompt given by hand (`prompt.init_from`), what that alignment run's align.json says."""
    if trial_cfg.method != "apt":
        return None
    if needs_alignment(trial_cfg):
        stage = stage_for(stages, trial_cfg)
        if stage.spec is not None:
            return "+".join(source.corpus for source in stage.spec.sources)
    return aligned_corpus(trial_cfg.prompt.init_from) if trial_cfg.prompt.init_from else None


def run_sweep(cfg: ExperimentConfig, *, resume: bool = False, address: str | None = None,
              log: Log = print) -> tuple[Path | str, list[str]]:
    """Run every trial of `cfg`'s grid not yet finished; return the run directory (a bucket run's
    URI) and failed trials."""
    # Everything that can be wrong with the inputs is found before Ray starts or a file is written.
    check_address(address or os.environ.get("RAY_ADDRESS"))
    if not is_uri(cfg.storage.root):
        run_dir = run_dir_of(cfg)
        check_storage(run_dir)
        return run_dir, _sweep(cfg, run_dir, resume=resume, address=address, log=log)
    check_bucket(cfg.storage.root)
    run_dir = open_run_mirror(cfg)  # the run's records and the driver's files, from the bucket alone
    try:
        return run_uri(cfg), _sweep(cfg, run_dir, resume=resume, address=address, log=log)
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)


def _sweep(cfg: ExperimentConfig, run_dir: Path, *, resume: bool, address: str | None, log: Log) -> list[str]:
    """run_sweep in the run directory `run_dir` (for a bucket run, the driver's copy of it)."""
    _check_existing_run(run_dir, cfg, resume)
    inputs = prepare_inputs(cfg, log=log)
    stages = plan_align_stages(cfg, inputs.backbone_path, demo_dir=demo_data_dir(log),
                               local_root=run_dir.parent / STAGES_DIR) if stage_shapes(cfg) else []
    if is_uri(cfg.storage.root):
        for stage in stages:  # what the bucket holds of them: a finished one is reused, as on disk
            pull_stage(stage.uri, stage.output_dir)
    check_align_data(stages)
    if cfg.align.retrieval and stages:  # not after the alignment stage has spent its hours
        check_retrieval(cfg, demo_data_dir(log))
    specs = plan_trials(cfg, run_dir, inputs, stages)
    pending = [s for s in specs if not _completed(Path(s.trial_dir))]
    created = _claim_run_dir(run_dir, cfg, inputs)
    if pending:
        try:
            start_ray(address)
            check_cluster_storage(cfg, run_dir, inputs)  # several nodes must share the run's files
        except XsweepError:  # a cluster that refuses us (auth, versions) leaves no run directory
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
    if is_uri(cfg.storage.root):
        push_driver_files(cfg, run_dir)
    log(f"run directory: {run_location(cfg)}")
    if not cfg.sweep.downstream:  # the stages are the experiment (e.g. the Tatoeba retrieval table)
        run_align_stages(stages, cfg, log=log)
        if cfg.align.retrieval:
            _score_stages(stages, cfg, run_dir, log=log)
        return []
    if pending:
        # Only stages whose trials still run: a finished sweep never re-aligns.
        run_align_stages([st for st in stages if any(_starts_from(s, st) for s in pending)], cfg, log=log)
    if cfg.align.retrieval and stages:
        _score_stages(stages, cfg, run_dir, log=log)
    if cfg.sweep.search == "optuna":
        failed = _run_optuna(cfg, run_dir, inputs, stages, log=log)
    else:
        log(f"{len(specs)} trials ({len(grid_points(cfg))} grid points x {len(cfg.sweep.seeds)} seeds); "
            f"{len(specs) - len(pending)} already completed, {len(pending)} to run")
        if pending and cfg.sweep.pruning.milestones:
            failed = run_in_phases(cfg, specs, lambda batch: _run_within_budget(cfg, run_dir, specs, batch, log=log),
                                   log=log, marked=lambda spec: push_trial_mark(cfg, run_dir, spec))
        else:
            failed = _run_within_budget(cfg, run_dir, specs, pending, log=log) if pending else []
    if cfg.sweep.evaluate == "selected":
        planned = specs if cfg.sweep.search == "grid" else _planned_so_far(run_dir)
        failed += run_evaluation_stage(cfg, planned, inputs.eval_locales, start_ray=lambda: start_ray(address),
                                       log=log, storage=storage_of(cfg, run_dir))
        if is_uri(cfg.storage.root):
            pull_records(cfg, run_dir)
    if is_uri(cfg.storage.root):
        push_driver_files(cfg, run_dir)  # search/ of an Optuna sweep
    return failed


def _score_stages(stages: list[AlignStage], cfg: ExperimentConfig, run_dir: Path, *, log: Log) -> None:
    """Tatoeba retrieval of the stages' prompts (sweep/retrieval.py), kept beside them and tabled in
    the run's results/, which a bucket run pushes."""
    table = run_retrieval(stages, cfg, run_dir, demo_dir=demo_data_dir(log), log=log)
    if is_uri(cfg.storage.root):
        push_stage_scores(stages, RETRIEVAL_FILE, run_dir, cfg)
        table = join(run_uri(cfg), "results", table.name)
    log(f"retrieval table: {table}")


def _run_within_budget(cfg: ExperimentConfig, run_dir: Path, specs: list[TrialSpec], pending: list[TrialSpec], *,
                       log: Log) -> list[str]:
    """All pending trials at once, or, under `sweep.budget_device_hours`, as many at a time as can
    run together, checking the device time spent (from the trial records) before each batch."""
    budget = cfg.sweep.budget_device_hours
    if budget is None:
        return _run_on_ray(cfg, run_dir, pending, log=log)
    import ray

    from xsweep.sweep.spent import device_hours

    per_trial = cfg.resources.cpus_per_trial * cfg.resources.num_workers
    fits = int(ray.cluster_resources().get("CPU", 1) // per_trial) or 1
    batch = min(cfg.sweep.max_concurrent_trials or fits, fits)
    failed: list[str] = []
    for start in range(0, len(pending), batch):
        records = [read_record(Path(s.trial_dir) / RECORD_FILE) for s in specs
                   if (Path(s.trial_dir) / RECORD_FILE).is_file()]
        spent = device_hours(records)
        if spent >= budget:
            log(f"budget reached: {spent:.3f} of {budget:g} device-hours spent; {len(pending) - start} trial(s) "
                "not started (raise sweep.budget_device_hours and --resume to run them)")
            break
        failed += _run_on_ray(cfg, run_dir, pending[start:start + batch], log=log)
    return failed


def _run_optuna(cfg: ExperimentConfig, run_dir: Path, inputs: PreparedInputs, stages: list[AlignStage], *,
                log: Log) -> list[str]:
    """TPE suggests points; each runs as the grid's trials would (every seed), finished ones skipped."""
    failed: list[str] = []

    def run_points(first_index: int, points: list[dict[str, Any]]) -> list[TrialSpec]:
        specs = plan_trials(cfg, run_dir, inputs, stages, points, first_index)
        pending = [s for s in specs if not _completed(Path(s.trial_dir))]
        if pending:
            log(f"{len(points)} point(s) x {len(cfg.sweep.seeds)} seeds: {len(pending)} trial(s) to run")
            failed.extend(_run_on_ray(cfg, run_dir, pending, log=log))
        _write_planned(run_dir, specs)
        return specs

    run_optuna(cfg, run_dir, run_points, log=log)
    return failed


def _write_planned(run_dir: Path, specs: list[TrialSpec]) -> None:
    """Optuna's trials are not known in advance: keep the specs planned so far for later stages."""
    from xsweep.atomic import write_json

    path = run_dir / "search" / "planned.json"
    known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    known.update({s.trial_id: asdict(s) for s in specs})
    write_json(path, known)


def _planned_so_far(run_dir: Path) -> list[TrialSpec]:
    path = run_dir / "search" / "planned.json"
    if not path.is_file():
        return []
    return [TrialSpec(**spec) for spec in json.loads(path.read_text(encoding="utf-8")).values()]


def describe_plan(cfg: ExperimentConfig, throughput: str | None = None) -> str:
    """What `xsweep run --dry-run` prints: the stages and trials the sweep implies and what they
    cost (sweep/dry_run.py; `throughput` as `--throughput` gives it), nothing run."""
    from xsweep.sweep.dry_run import describe_cost

    points = grid_points(cfg)
    stages = describe_stages(cfg)
    if cfg.align.retrieval and stages and cfg.align.retrieval != "demo":
        check_retrieval(cfg, None, dry_run=True)  # a language the folder lacks, or a damaged file, fails it too
    if not cfg.sweep.downstream:  # a stages-only experiment: its alignment runs are all it does
        return "\n".join([f"experiment {cfg.name}: the alignment stage only (sweep.downstream: false)", *stages,
                          f"  run directory: {run_location(cfg)}"])
    lines = [f"experiment {cfg.name}: {len(points)} grid points x {len(cfg.sweep.seeds)} seeds "
             f"= {len(points) * len(cfg.sweep.seeds)} trials; {2 if stages else 1} stage(s)",
             *stages,
             f"{'stage 2' if stages else 'stage 1'}: downstream trials",
             f"  method {cfg.method}, prompt {cfg.prompt.kind} x {cfg.prompt.length}, head {cfg.head.kind}, "
             f"backbone {cfg.backbone.name}, shots {cfg.data.shots or 'all'}",
             f"  run directory: {run_location(cfg)}"]
    lines += [f"  {', '.join(f'{k}={v}' for k, v in point.items()) or '(no grid)'}" for point in points]
    pruning = cfg.sweep.pruning
    if pruning.milestones:
        lines.append(f"  pruning: at epoch {', '.join(map(str, pruning.milestones))} each group keeps its best "
                     f"{pruning.keep:.0%} of learning rates (all seeds); the projection below does not count it")
    lines += describe_cost(cfg, throughput)
    return "\n".join(lines)


def _check_existing_run(run_dir: Path, cfg: ExperimentConfig, resume: bool) -> None:
    config_file = run_dir / "config.yaml"
    shown = run_location(cfg) if is_uri(cfg.storage.root) else str(run_dir)
    if config_file.exists() and not resume:
        raise XsweepError(f"run directory {shown!r} already holds a run",
                          fix="add --resume to finish it, or set storage.name=<new name> for a fresh run")
    if config_file.exists() and resume:
        import yaml

        # A key the run's file lacks was added to xsweep later: the run had its default behaviour.
        saved = yaml.safe_load(config_file.read_text(encoding="utf-8")) or {}
        old = {**flatten(to_dict(ExperimentConfig()), keep_whole=NOT_DESCENDED),
               **flatten(saved, keep_whole=NOT_DESCENDED)}
        new = flatten(to_dict(cfg), keep_whole=NOT_DESCENDED)
        # Pruning decided over the run's seeds: a new seed could overturn a decision already acted on.
        resumable = [k for k in RESUMABLE_CHANGES if not (cfg.sweep.pruning.milestones and k == "sweep.seeds")]
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise XsweepError(f"--resume: the config differs from the one {shown!r} was started with, "
                              f"in {', '.join(changed)}", where=f"{shown}/config.yaml",
                              fix="resume with the same config and overrides (only "
                                  f"{', '.join(resumable)} may change), or use a new storage.name")


NOT_DESCENDED = ("sweep.grid", "sweep.optuna")
"""Compared whole by --resume: their own keys are dotted already."""

RESUMABLE_CHANGES = ("sweep.seeds", "data.eval_locales", "sweep.evaluate", "sweep.max_concurrent_trials",
                     "sweep.budget_device_hours")
"""What `--resume` may change: more seeds run only the new ones (not with `sweep.pruning`), more
languages test only the selected trials on the new ones; finished trials are reused either way."""


def _claim_run_dir(run_dir: Path, cfg: ExperimentConfig, inputs: PreparedInputs) -> bool:
    """Create the run directory with its config and manifest; on failure leave nothing new behind.
    Returns whether the directory is new."""
    from xsweep.atomic import write_text

    config_file = run_dir / "config.yaml"
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(config_file, dump_yaml(cfg))  # a resumed run may have added seeds or languages
        write_manifest(run_dir, cfg, inputs)
    except OSError as exc:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise XsweepError(f"cannot write the run directory {str(run_dir)!r}: {exc.strerror or exc}",
                          where="storage.root",
                          fix="set storage.root to a writable folder with free space "
                              "(e.g. storage.root=runs)") from None
    return created


def _starts_from(spec: TrialSpec, stage: AlignStage) -> bool:
    return spec.config["prompt"].get("init_from") == stage.location


def _completed(trial_dir: Path) -> bool:
    record = trial_dir / RECORD_FILE
    if not record.exists():
        return False
    return read_record(record).status in (*FINISHED, "pruned")


def _run_on_ray(cfg: ExperimentConfig, run_dir: Path, specs: list[TrialSpec], *, log: Log) -> list[str]:
    import ray
    from ray import tune

    from xsweep.sweep.fusion import fused_chunks, run_name
    from xsweep.sweep.hosting import group_concurrency, trial_placement
    from xsweep.sweep.progress import ProgressPrinter
    from xsweep.sweep.trial import TRIAL_MAX_FAILURES, StopOnFullDisk, run_trial

    # Tune's own console output (a configuration box, its paths under /tmp/ray) would only repeat
    # less clearly what ProgressPrinter says; verbose=0 silences it only with the legacy reporter.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    runs = [[asdict(s) for s in chunk] for chunk in fused_chunks(specs, cfg.sweep.fuse)]
    storage = storage_of(cfg, run_dir)  # a bucket run's trials work in their own copies of their folders
    full_disk = StopOnFullDisk()
    # A worker group's driver holds almost nothing: the limit keeps waiting drivers from piling up.
    concurrent = cfg.sweep.max_concurrent_trials or group_concurrency(specs, ray.cluster_resources())
    tuner = tune.Tuner(
        # One trainable: a trial in its actor, or the driver of its worker group (resources.num_workers).
        tune.with_resources(run_trial, trial_placement),
        param_space={"specs": tune.grid_search(runs), "resources": asdict(cfg.resources),
                     **({"storage": storage} if storage else {})},
        # Reused actors keep their loaded backbone: trial 2..N of an actor skip process start and loading.
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrent, reuse_actors=True,
                                    trial_name_creator=lambda t: run_name(t.config["specs"]),
                                    trial_dirname_creator=lambda t: run_name(t.config["specs"])),
        run_config=tune.RunConfig(name="tune", **tune_storage(cfg, run_dir), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=TRIAL_MAX_FAILURES),
                                  stop=full_disk, callbacks=[ProgressPrinter(log)]),
    )
    results = tuner.fit()
    if storage:
        pull_records(cfg, run_dir)
        push_driver_files(cfg, run_dir)
    if full_disk.path:
        raise disk_full_error(full_disk.path)
    # A fused run's error and its last reported error stand for each of its members.
    crashed = {spec["trial_id"]: result.error for result in results for spec in result.config["specs"]}
    reported = {spec["trial_id"]: (result.metrics or {}).get("error")
                for result in results for spec in result.config["specs"]}
    failed = []
    # The trial records say how each trial ended; Ray's result adds the error of a crashed one.
    for spec in specs:
        record_path = Path(spec.trial_dir) / RECORD_FILE
        record = read_record(record_path) if record_path.exists() else None
        if ended_as_asked(record, spec):
            continue
        failed.append(spec.trial_id)
        if record is not None and record.error:
            why = record.error  # one line, or an XsweepError's what/where/fix
        elif reported.get(spec.trial_id):
            why = reported[spec.trial_id]  # an XsweepError the worker met before it had a record
        elif crashed.get(spec.trial_id) is not None:
            why = first_line(crashed[spec.trial_id])  # the exception line of Ray's traceback
        else:
            why = "no record was written" if record is None else f"it ended {record.status}, with no error"
        log(f"trial {spec.trial_id} failed: {why}")
    return failed
