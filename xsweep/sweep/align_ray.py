"""The Ray Train driver of alignment: `run_alignment` (train/align.py) over N DDP workers.

Three layers, as Ray's Train examples have them: the worker loop (`train.align.run_alignment`,
which knows nothing of Ray), the worker (`alignment_worker`: resume from Ray's checkpoint, report
each epoch), and the driver (`align_on_ray`: the TorchTrainer). The alignment stages
(sweep/stages.py) call the driver once per distinct alignment run.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from xsweep.errors import XsweepError
from xsweep.storage import is_uri
from xsweep.sweep.bucket import pull_stage, ray_storage, staged_alignment
from xsweep.sweep.ray_session import start_ray
from xsweep.train.align import AlignResult, AlignSpec, finished_result, load_alignment_result, run_alignment

INJECTED_FAILURE_MARKER = ".injected-failure"


def alignment_worker(loop_config: dict[str, Any]) -> None:
    """The Ray Train worker: resume from Ray's latest checkpoint, run the loop, report each epoch."""
    import ray.train
    import ray.train.torch

    torch.set_num_threads(max(1, int(loop_config.get("cpus_per_worker", 1))))  # Ray sets OMP_NUM_THREADS only
    checkpoint = ray.train.get_checkpoint()
    rank = ray.train.get_context().get_world_rank()
    fail_after = loop_config.get("fail_once_after_epoch")

    # In a bucket run rank 0 works in a copy of the stage's folder and pushes it after each epoch.
    with staged_alignment(AlignSpec(**loop_config["spec"]), loop_config.get("output_uri"), writes=rank == 0
                          ) as (spec, sync):
        marker = Path(spec.output_dir) / INJECTED_FAILURE_MARKER

        def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
            sync()
            ray.train.report(metrics, checkpoint_dir_name=f"epoch_{metrics['epoch']:03d}",
                             checkpoint=ray.train.Checkpoint.from_directory(str(checkpoint_dir))
                             if checkpoint_dir else None)
            if metrics["epoch"] == fail_after and checkpoint_dir is not None and not marker.exists():
                marker.touch()  # once: the restarted workers get past this epoch
                raise RuntimeError(f"failure injected after epoch {fail_after} (a test of recovery)")

        with checkpoint.as_directory() if checkpoint is not None else nullcontext(None) as resume_from:
            run_alignment(spec, report, resume_from=resume_from, device=ray.train.torch.get_device())


def ray_run_name(spec: AlignSpec) -> str:
    """Stable (no timestamp): the same spec finds its earlier run, and its checkpoints, in storage."""
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.label)[:40] or "align"
    return f"{label}-{spec.prompt.kind}{spec.prompt.length}-{spec.digest()}"


def align_on_ray(spec: AlignSpec, num_workers: int, cpus_per_worker: float, storage_path: str | Path, *,
                 gpus_per_worker: float = 0.0, max_failures: int = 2, callbacks: list | None = None,
                 output_uri: str | None = None) -> AlignResult:
    """Run `spec` as a TorchTrainer over `num_workers` DDP workers (gloo on CPU, NCCL on GPU).

    Workers that fail are restarted up to `max_failures` times and resume from the last epoch
    checkpoint; calling this again after an interrupted run resumes it too (the run is named after
    the spec). `storage_path`: Ray's run folder, a local folder or a bucket URI. `output_dir` must be
    reachable by rank 0 (on a multi-node cluster, shared storage), unless `output_uri` names the
    stage's folder in a bucket: rank 0, on any node, then writes there through a copy of its own,
    and `output_dir` receives the finished prompt and align.json. `callbacks`: Ray Train
    callbacks, e.g. Tune's TuneReportCallback when this runs inside a Tune trial.
    """
    return _fit_on_ray(spec, num_workers, cpus_per_worker, storage_path, gpus_per_worker=gpus_per_worker,
                       max_failures=max_failures, callbacks=callbacks, output_uri=output_uri)


def _fit_on_ray(spec: AlignSpec, num_workers: int, cpus_per_worker: float, storage_path: str | Path, *,
                gpus_per_worker: float = 0.0, max_failures: int = 2, callbacks: list | None = None,
                fail_once_after_epoch: int | None = None, output_uri: str | None = None) -> AlignResult:
    """`align_on_ray`; `fail_once_after_epoch` is for the test of recovery alone (tests/test_align_ray.py):
    rank 0 raises once right after reporting that epoch's checkpoint, so Ray restarts the workers
    and they resume from it."""
    if num_workers < 1 or cpus_per_worker <= 0 or gpus_per_worker < 0:
        raise XsweepError(f"need num_workers >= 1, cpus_per_worker > 0, gpus_per_worker >= 0; got {num_workers}, "
                          f"{cpus_per_worker}, {gpus_per_worker}", where="align resources",
                          fix="e.g. num_workers=2, cpus_per_worker=1")
    finished = finished_result(spec)
    if finished is not None:
        return finished
    import ray.train
    from ray.train.torch import TorchTrainer

    start_ray()
    storage = str(storage_path) if is_uri(storage_path) else Path(storage_path).expanduser().resolve()
    per_worker: dict[str, float] = {"CPU": cpus_per_worker}
    if gpus_per_worker > 0:
        per_worker["GPU"] = gpus_per_worker
    trainer = TorchTrainer(
        alignment_worker,
        train_loop_config={"spec": spec.to_dict(), "cpus_per_worker": cpus_per_worker,
                           "fail_once_after_epoch": fail_once_after_epoch, "output_uri": output_uri},
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0,
                                               resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(
            name=ray_run_name(spec), **ray_storage(storage), callbacks=callbacks or None,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    )
    trainer.fit()
    if output_uri:
        pull_stage(output_uri, spec.output_dir)
    return load_alignment_result(spec.output_dir)
