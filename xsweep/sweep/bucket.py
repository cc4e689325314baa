"""A sweep whose `storage.root` is a bucket: the driver's and each trial's copy of the run.

The bucket holds the run; every process works in a local mirror of the part it needs
(`xsweep.storage.Mirror`) and the code that writes a run writes there unchanged:
- the driver pulls the run's records and its own files (`config.yaml`, `manifest.json`,
  `search/`) into a temporary folder, so `--resume` needs nothing but the bucket, and pushes its own
  files back; after each batch of trials it pulls their records again;
- a trial, on whichever node Tune places it, pulls its own folder and TensorBoard folder (its
  checkpoint, record, best prompt and head, event files) into a temporary folder of that node and
  pushes what changed before each report to Tune, so a killed trial, or a killed driver, resumes
  from the bucket; an ended trial's checkpoint is deleted there too;
- an evaluation-stage task does the same with the trial it tests.
Ray Tune's own folder (`ray/`) is written by Ray into the bucket (`RunConfig(storage_filesystem=...)`).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from xsweep.config import ExperimentConfig
from xsweep.errors import XsweepError
from xsweep.storage import Mirror, check_bucket, is_uri, join, locate
from xsweep.train.checkpoint import CHECKPOINT_FILE

DRIVER_SKIP = ("ray", "tensorboard", "best", "predictions", CHECKPOINT_FILE)
"""What the driver never pulls: Ray's folder, and what only trials, evaluation and the report read."""
REPORT_SKIP = ("ray", "best", "predictions", CHECKPOINT_FILE)
"""What `xsweep report` of a bucket run does not pull: it reads records and event files."""
DRIVER_FILES = ("config.yaml", "manifest.json", "eval_subsets.json", "search")
"""What the driver itself writes into a run directory, pushed back after it writes them."""


def run_uri(cfg: ExperimentConfig) -> str:
    return join(cfg.storage.root, cfg.run_name)


def check_bucket_run(cfg: ExperimentConfig) -> None:
    """The bucket answers and takes writes, and the sweep uses nothing a bucket run lacks yet."""
    from xsweep.sweep.preflight import trial_configs
    from xsweep.sweep.stages import stage_shapes

    check_bucket(cfg.storage.root)
    if stage_shapes(cfg) or not cfg.sweep.downstream:
        raise XsweepError("alignment stages keep their runs in a folder (<storage.root>/stages), not in a bucket",
                          where="align.data",
                          fix="run the alignment with a folder as storage.root, then give the APT trials its "
                              "prompt with prompt.init_from and leave align.data unset")
    if any(trial.resources.num_workers > 1 for trial in trial_configs(cfg)):
        raise XsweepError("trials on a Ray Train worker group (resources.num_workers > 1) write to a folder, "
                          "not to a bucket", where="resources.num_workers",
                          fix="use resources.num_workers=1 with a bucket, or a shared folder as storage.root")


def open_run_mirror(cfg: ExperimentConfig) -> Path:
    """A new temporary folder holding the bucket run's records and driver files (empty for a new run)."""
    local = Path(tempfile.mkdtemp(prefix="xsweep-run-"))
    Mirror(run_uri(cfg), local).pull(skip=DRIVER_SKIP)
    return local


def push_driver_files(cfg: ExperimentConfig, run_dir: Path) -> None:
    mirror = Mirror(run_uri(cfg), run_dir)
    for name in DRIVER_FILES:
        if (run_dir / name).exists():
            mirror.push(name)


def pull_records(cfg: ExperimentConfig, run_dir: Path) -> None:
    """The trials' records as they are in the bucket now (after a batch of trials ran elsewhere)."""
    Mirror(run_uri(cfg), run_dir).pull("trials", skip=DRIVER_SKIP)


def storage_of(cfg: ExperimentConfig, run_dir: Path) -> dict[str, str] | None:
    """What a trial needs to find its files in the bucket (plain data, sent with the trial's config):
    the run's URI and the driver's mirror, whose paths the trial's spec names. None for a folder."""
    if not is_uri(cfg.storage.root):
        return None
    return {"uri": run_uri(cfg), "mirror": str(run_dir)}


def tune_storage(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Any]:
    """Where Ray Tune keeps its own folder: `<run>/ray`, in the bucket for a bucket run."""
    if not is_uri(cfg.storage.root):
        return {"storage_path": str(run_dir / "ray")}
    fs, path = locate(join(run_uri(cfg), "ray"))
    return {"storage_path": path, "storage_filesystem": fs}


@contextmanager
def staged(specs: list[Any], storage: dict[str, str] | None) -> Iterator[tuple[list[Any], Callable[[], None]]]:
    """The trials `specs` with their folders in a local copy of the bucket's, and `sync`, which pushes
    what changed to the bucket; on leaving, a last `sync` and the copy is removed. For a folder run
    (`storage` None): the specs themselves and a `sync` that does nothing."""
    if storage is None:
        yield specs, lambda: None
        return
    local = Path(tempfile.mkdtemp(prefix="xsweep-trial-"))
    mirror = Mirror(storage["uri"], local)
    folders, moved = [], []
    for spec in specs:
        trial = Path(spec.trial_dir).relative_to(storage["mirror"]).as_posix()
        events = Path(spec.tensorboard_dir).relative_to(storage["mirror"]).as_posix()
        for sub in (trial, events):
            mirror.pull(sub)
            folders.append(sub)
        moved.append(replace(spec, trial_dir=str(local / trial), tensorboard_dir=str(local / events)))

    def sync() -> None:
        for sub in folders:
            mirror.push(sub, delete=True)

    try:
        yield moved, sync
        sync()
    finally:
        shutil.rmtree(local, ignore_errors=True)
