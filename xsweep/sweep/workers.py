"""A downstream trial on a Ray Train worker group: a trial of `resources.num_workers` W > 1.

Three layers, as Ray documents Train V2 inside Tune: the worker loop (`train.downstream.run_trials`,
which knows nothing of Ray; data parallelism in train/distributed.py), the worker (`trial_worker`),
and the driver (`run_on_workers`): the Tune trainable `sweep.trial.run_trial` calls it in place of
the loop, it builds a `TorchTrainer` over W workers (gloo on CPU, NCCL on GPU), each holding the
trial's `cpus_per_trial` and `gpus_per_trial`, and the workers' reports reach Tune through
`TuneReportCallback` (Train V2 refuses `Tuner(TorchTrainer)`).

Rank 0 is the trial: its record, checkpoint, best/, predictions, TensorBoard run and reports (in a
bucket run, in a copy of the trial's folders that it pushes before each report). The
other ranks run the same loop in a scratch folder of their own (a copy of the trial's checkpoint,
if it has one, and no test locales), so that every rank takes the same steps, evaluates dev alike
and calls `ray.train.report` as often as rank 0 (a barrier in Train V2); their files are dropped.

Failures: a worker that dies fails the group; Ray Train starts a new group, up to
`TRIAL_MAX_FAILURES` times, and its workers resume from the trial's `checkpoint.pt`, as a trial's
new actor does. If the group still fails, the driver reports the trial failed (Tune does not start
it again: that would be the same retries over). A driver that dies is started again by Tune and
builds a new group, which resumes the same way. A worker group costs seconds to start
(docs/trials.md, measured by bench/bench_trial_overhead.py): it is for trials that need several
devices, not for many small ones.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch

from xsweep.train.checkpoint import CHECKPOINT_FILE
from xsweep.train.spec import TrialSpec

TRAIN_RUN_DIR = "ray_train"
"""Ray Train's own run folder (its state, no checkpoints of ours), inside the trial's folder."""


def trial_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker: one rank of the trial's loop."""
    import ray.train

    from xsweep.models.backbone import load_backbone
    from xsweep.sweep.reporting import run_reported

    from xsweep.sweep.bucket import staged

    torch.set_num_threads(max(1, int(loop_config["cpus_per_worker"])))  # Ray sets OMP_NUM_THREADS only
    rank = ray.train.get_context().get_world_rank()
    # In a bucket run every rank starts from a copy of the trial's folder; rank 0 pushes its own.
    with staged([TrialSpec(**loop_config["spec"])], loop_config.get("storage"), writes=rank == 0,
                skip=(TRAIN_RUN_DIR,)) as ([spec], sync), \
            tempfile.TemporaryDirectory(prefix=f"xsweep-rank{rank}-") as scratch:
        own = spec if rank == 0 else follower_spec(spec, Path(scratch))

        def report(metrics: dict[str, Any]) -> None:
            sync()  # the bucket holds what Tune is told of (a no-op for a folder run, and off rank 0)
            ray.train.report(metrics)

        # A fresh process per group: nothing to keep a backbone for between trials.
        run_reported([own], report, load_backbone=load_backbone)


def follower_spec(spec: TrialSpec, scratch: Path) -> TrialSpec:
    """What a rank other than 0 runs: the trial in `scratch`, from the trial's checkpoint, untested."""
    own = replace(spec, trial_dir=str(scratch / "trial"), tensorboard_dir=str(scratch / "tensorboard"),
                  eval_locales=[], test_at_every_evaluation=False)
    checkpoint = Path(spec.trial_dir) / CHECKPOINT_FILE
    if checkpoint.is_file():
        Path(own.trial_dir).mkdir(parents=True)
        shutil.copyfile(checkpoint, Path(own.trial_dir) / CHECKPOINT_FILE)
    return own


def run_on_workers(spec: TrialSpec, storage: dict[str, str] | None = None,
                   worker: Callable[[dict[str, Any]], None] = trial_worker) -> None:
    """The driver, in the Tune trial: fit the trial's TorchTrainer; report the trial failed if its
    group failed more than `TRIAL_MAX_FAILURES` times. `storage`: a bucket run's
    (`sweep.bucket.storage_of`), whose rank 0 works in a copy of the trial's folders and Ray Train's
    run folder goes to the bucket. `worker`: `trial_worker`, or a wrapper of it
    (bench/bench_trial_overhead.py times the first step inside the worker)."""
    import ray.train
    from ray import tune
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from xsweep.config import ResourcesConfig
    from xsweep.sweep.bucket import ray_storage, trial_uri
    from xsweep.sweep.fusion import MEMBER_KEY
    from xsweep.sweep.ray_session import first_line
    from xsweep.sweep.reporting import TRIAL_MAX_FAILURES

    resources = ResourcesConfig(**spec.config["resources"])
    per_worker = {"CPU": resources.cpus_per_trial}
    if resources.gpus_per_trial > 0:
        per_worker["GPU"] = resources.gpus_per_trial
    trainer = TorchTrainer(
        worker,
        train_loop_config={"spec": asdict(spec), "cpus_per_worker": resources.cpus_per_trial, "storage": storage},
        scaling_config=ray.train.ScalingConfig(num_workers=resources.num_workers, use_gpu=resources.gpus_per_trial > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=spec.trial_id, **ray_storage(trial_uri(spec, storage, TRAIN_RUN_DIR) if storage
                                              else Path(spec.trial_dir) / TRAIN_RUN_DIR),
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=TRIAL_MAX_FAILURES)),
    )
    try:
        trainer.fit()
    except ray.train.TrainingFailedError as exc:
        tune.report({"status": "failed", "error": f"its worker group failed: {first_line(exc)}",
                     MEMBER_KEY: spec.trial_id})


__all__ = ["follower_spec", "run_on_workers", "trial_worker"]
