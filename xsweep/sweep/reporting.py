"""How a downstream trial's loop reports to Ray, on an actor or on each worker of a group: every
evaluation tagged with its trial; a bad input or a full disk reported as the trial's failure
rather than raised, so Ray does not start it again only to fail the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

TRIAL_MAX_FAILURES = 2
"""Times Ray starts a trial's process (a Tune actor, or a worker group) again after it died; each
time the loop resumes from the trial's checkpoint."""

DISK_FULL_KEY = "disk_full"
"""Reported by a trial that could not write a file for want of space: that file's path."""


def run_reported(todo: list[Any], report: Callable[[dict[str, Any]], None], *,
                 load_backbone: Callable[..., tuple]) -> None:
    """Run the trials `todo` in one loop, each evaluation reported through `report` tagged with its
    trial; a bad input or a full disk is reported as the trial's failure, not raised (the same
    input would fail the same way again), any other error is raised for Ray to retry."""
    from xsweep.errors import DISK_FULL_ERRNOS, XsweepError, disk_full_error, real_name
    from xsweep.sweep.fusion import MEMBER_KEY
    from xsweep.train.downstream import run_trials
    from xsweep.trial_log import TrialWriter

    def reporter(trial_id: str):
        return lambda metrics: report({**metrics, MEMBER_KEY: trial_id})

    try:
        run_trials(todo, [reporter(spec.trial_id) for spec in todo],
                   writers=[TrialWriter(Path(spec.tensorboard_dir)) for spec in todo], load_backbone=load_backbone)
    except XsweepError as exc:
        # Recorded as failed in record.json by the loop; the driver lists it from there.
        for spec in todo:
            report({"status": "failed", "error": exc.message, MEMBER_KEY: spec.trial_id})
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise  # Ray starts the trial again
        path = real_name(exc.filename) or todo[0].trial_dir
        error = disk_full_error(path, exc.strerror).message
        for spec in todo:
            report({"status": "failed", "error": error, DISK_FULL_KEY: path, MEMBER_KEY: spec.trial_id})
