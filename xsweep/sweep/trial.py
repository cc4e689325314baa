"""A trial on Ray: a Tune function that builds a Ray Train `TorchTrainer` named after the trial.

Train V2 rejects `Tuner(TorchTrainer)`, so each Tune trial runs this driver; the training loop
runs inside the trainer's worker group and its reports reach Tune through `TuneReportCallback`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def train_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker: run one downstream trial and report each dev evaluation."""
    import ray.train

    from xsweep.train.downstream import TrialSpec, run_downstream

    threads = max(1, int(loop_config["cpus_per_worker"]))
    torch.set_num_threads(threads)  # Ray sets OMP_NUM_THREADS; torch needs telling too
    run_downstream(TrialSpec(**loop_config["spec"]), report=ray.train.report)


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
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
