"""A downstream trial on Ray: a Tune function trainable that runs the loop in its own process.

Downstream trials are many and small, and their backbone is frozen and on disk, so a trial is
not worth a Ray Train worker group of its own: building one cost 9-25 s per trial on 2 cores,
before the first training step. A Tune function trainable runs the loop in the trial's own actor,
Tune reuses that actor for the next trial (`reuse_actors=True`), and the actor keeps the loaded
backbone (`sweep.hosting`). Measured by `bench/bench_trial_overhead.py`; figures in
docs/trials.md. Ray Train stays in use where there is data parallelism: alignment pretraining.

With `sweep.fuse` > 1 a Tune trial runs several trials of one group as one fused run
(train/downstream.py, sweep/fusion.py) and reports each member's results tagged with its trial id.
With `resources.num_workers` > 1 the Tune trial is instead a small driver of the trial's Ray Train
worker group (sweep/workers.py): one trainable, branching on the trial's resources.

Failures: a trial whose process dies (killed, out of memory, node lost) is started again by Tune
in a new actor, up to `TRIAL_MAX_FAILURES` times, and the loop continues from the trial's own
checkpoint (`train.downstream` writes one at every dev evaluation). A bad input (`XsweepError`)
is not retried: the same input fails the same way, so the trial reports it and ends. Nor is a
full disk (ENOSPC, EDQUOT): the trial reports the file it could not write (`DISK_FULL_KEY`), and
`StopOnFullDisk` ends the sweep, so no other trial starts only to fail the same way.

In a bucket run (`storage.root: s3://...`) the trial works in a local copy of its folders and
pushes what changed to the bucket before each report (`sweep.bucket.staged`); a worker group's
rank 0 does so, on whichever node it runs, and its driver here reads nothing but the record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from ray.tune import Stopper

from xsweep.sweep.reporting import DISK_FULL_KEY, TRIAL_MAX_FAILURES, run_reported

__all__ = ["DISK_FULL_KEY", "TRIAL_MAX_FAILURES", "StopOnFullDisk", "finished", "run_trial"]


def run_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: run one downstream trial here, or the members of a fused run (sweep.fuse),
    or, for a trial of `resources.num_workers` > 1, drive its Ray Train worker group
    (sweep/workers.py); report each dev evaluation to Tune, tagged with the trial it belongs to
    (`MEMBER_KEY`).

    `config`: {"specs": [`TrialSpec` as a dict, ...], "resources": a `ResourcesConfig` as a dict,
    and for a bucket run "storage": `sweep.bucket.storage_of`'s}.
    """
    from ray import tune  # Train V2 refuses `ray.train.report` outside a Ray Train worker

    from xsweep.sweep.bucket import staged
    from xsweep.sweep.hosting import backbone_loader, workers_of
    from xsweep.train.spec import TrialSpec

    specs, storage = [TrialSpec(**spec) for spec in config["specs"]], config.get("storage")
    if workers_of(specs[0]) > 1:  # one trial (fusing is refused): the workers run the loop, here a driver
        from xsweep.sweep.workers import run_on_workers

        if not finished(specs[0], storage):  # its rank 0 keeps the trial's folders, in a bucket run too
            run_on_workers(specs[0], storage)
        return
    with staged(specs, storage) as (specs, sync):
        def report(metrics: dict[str, Any]) -> None:
            sync()  # the bucket holds what Tune is told of (a no-op for a folder run)
            tune.report(metrics)

        # Started again after its process died, a run redoes only its unfinished trials, each from
        # its own checkpoint (a finished trial keeps none: run again, it would start from its beginning).
        todo = [spec for spec in specs if not finished(spec)]
        if todo:
            # Ray sets OMP_NUM_THREADS from the actor's CPUs; torch needs telling too (at least one thread).
            torch.set_num_threads(max(1, int(config["resources"]["cpus_per_trial"])))
            run_reported(todo, report, load_backbone=backbone_loader(todo[0].config["method"]))


def finished(spec: Any, storage: dict[str, str] | None = None) -> bool:
    """Whether the trial's record says it ended (completed or diverged); with a bucket run's
    `storage`, the record in the bucket (for a driver that holds no copy of the trial's folder)."""
    from xsweep.record import RECORD_FILE, parse_record, read_record
    from xsweep.storage import display, exists, read_bytes
    from xsweep.sweep.bucket import trial_uri
    from xsweep.sweep.pruning import FINISHED

    if storage is not None:
        uri = trial_uri(spec, storage, RECORD_FILE)
        return exists(uri) and parse_record(read_bytes(uri), display(uri)).status in FINISHED
    path = Path(spec.trial_dir) / RECORD_FILE
    return path.is_file() and read_record(path).status in FINISHED


class StopOnFullDisk(Stopper):
    """Ends the sweep once a trial reports a full disk (`DISK_FULL_KEY`): every other trial would
    fail the same way. `path` is the first file that could not be written."""

    def __init__(self):
        self.path: str | None = None

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if result.get(DISK_FULL_KEY):
            self.path = self.path or result[DISK_FULL_KEY]
            return True
        return False

    def stop_all(self) -> bool:
        return self.path is not None
