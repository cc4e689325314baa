"""A downstream trial on Ray: a Tune function trainable that runs the loop in its own process.

Downstream trials are many and small, and their backbone is frozen and on disk, so a trial is
not worth a Ray Train worker group of its own: building one cost 9-25 s per trial on 2 cores,
before the first training step. A Tune function trainable runs the loop in the trial's own actor,
Tune reuses that actor for the next trial (`reuse_actors=True`), and the actor keeps the loaded
backbone (`sweep.hosting`). Measured by `bench/bench_trial_overhead.py`; figures in
docs/trials.md. Ray Train stays in use where there is data parallelism: alignment pretraining.

Failures: a trial whose process dies (killed, out of memory, node lost) is started again by Tune
in a new actor, up to `TRIAL_MAX_FAILURES` times, and the loop continues from the trial's own
checkpoint (`train.downstream` writes one at every dev evaluation). A bad input (`XsweepError`)
is not retried: the same input fails the same way, so the trial reports it and ends.
"""

from __future__ import annotations

from typing import Any

import torch

TRIAL_MAX_FAILURES = 2
"""Times Tune starts a trial again after its process died (each resumes from the checkpoint)."""


def run_trial(config: dict[str, Any]) -> None:
    """The Tune trainable: run one downstream trial here and report each dev evaluation to Tune.

    `config`: {"spec": a `TrialSpec` as a dict, "resources": a `ResourcesConfig` as a dict}.
    """
    from ray import tune  # Train V2 refuses `ray.train.report` outside a Ray Train worker

    from xsweep.errors import XsweepError
    from xsweep.sweep.hosting import backbone_loader
    from xsweep.train.downstream import TrialSpec, run_downstream

    spec = TrialSpec(**config["spec"])
    # Ray sets OMP_NUM_THREADS from the actor's CPUs; torch needs telling too (at least one thread).
    torch.set_num_threads(max(1, int(config["resources"]["cpus_per_trial"])))
    try:
        run_downstream(spec, report=tune.report, load_backbone=backbone_loader(spec.config["method"]))
    except XsweepError as exc:
        # Recorded as failed in record.json by run_downstream; the driver lists it from there.
        tune.report({"status": "failed", "error": exc.message})
