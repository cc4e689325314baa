"""A trial on Ray: a Tune function that builds a Ray Train `TorchTrainer` named after the trial.

Train V2 rejects `Tuner(TorchTrainer)`, so each Tune trial runs this driver; the training loop
runs inside the trainer's worker group and its reports reach Tune through `TuneReportCallback`.

Failures: a training worker that dies (killed, out of memory, node lost) is restarted by Ray
Train up to `TRAIN_MAX_FAILURES` times, and the loop continues from the trial's own checkpoint
(`train.downstream` writes one at every dev evaluation). A bad input (`XsweepError`) is not
retried: the same input fails the same way, so the worker records it and ends the trial.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TRAIN_MAX_FAILURES = 2
"""Restarts of a trial's worker group after a worker failure (each resumes from the checkpoint)."""
TUNE_MAX_FAILURES = 1
"""Restarts of a trial's driver (the Tune actor) if it dies, e.g. with its node."""


def train_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker: run one downstream trial and report each dev evaluation."""
    import ray.train

    from xsweep.errors import XsweepError
    from xsweep.train.downstream import TrialSpec, run_downstream

    threads = max(1, int(loop_config["cpus_per_worker"]))
    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS; torch needs telling too
    try:
        run_downstream(TrialSpec(**loop_config["spec"]), report=ray.train.report)
    except XsweepError as exc:
        # Recorded as failed in record.json by run_downstream; the driver lists it from there.
        ray.train.report({"status": "failed", "error": exc.message})


def trial_driver(config: dict[str, Any]) -> None:
    """The Tune trainable: build and fit a single-trial TorchTrainer."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    spec, resources = config["spec"], config["resources"]
    use_gpu = resources["gpus_per_trial"] > 0
    per_worker = {"CPU": resources["cpus_per_trial"]}
    if use_gpu:
        per_worker["GPU"] = resources["gpus_per_trial"]
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"spec": spec, "cpus_per_worker": resources["cpus_per_trial"]},
        scaling_config=ray.train.ScalingConfig(num_workers=resources["num_workers"], use_gpu=use_gpu,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(name=spec["trial_id"], storage_path=str(Path(config["storage"]) / "train"),
                                       failure_config=ray.train.FailureConfig(max_failures=TRAIN_MAX_FAILURES),
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
