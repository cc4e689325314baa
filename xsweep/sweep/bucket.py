"""A sweep whose `storage.root` is a bucket: the driver's and each trial's copy of the run.

The bucket holds the run; every process works in a local mirror of the part it needs
(`xsweep.storage.Mirror`) and the code that writes a run writes there unchanged:
- the driver pulls the run's records and its own files (`config.yaml`, `manifest.json`,
  `search/`) into a temporary folder, so `--resume` needs nothing but the bucket, and pushes its own
  files back; after each batch of trials it pulls their records again, and it pushes the records
  it changes itself (a trial that pruning marks `pruned`);
- a trial, on whichever node Tune places it, pulls its own folder and TensorBoard folder (its
  checkpoint, record, best prompt and head, event files) into a temporary folder of that node and
  pushes what changed before each report to Tune, so a killed trial, or a killed driver, resumes
  from the bucket; an ended trial's checkpoint is deleted there too;
- an evaluation-stage task does the same with the trial it tests;
- a worker group's rank 0 does what a trial does; the other ranks read a copy and push nothing;
- an alignment stage's folder (`<storage.root>/stages/<digest>`) is written by its rank 0 through
  a copy of its own, pushed after each epoch, align.json (the mark of a finished run) last; the
  driver pulls the finished prompt, and each APT trial names the stage's URI as its
  `prompt.init_from` and reads the prompt through `xsweep.train.align_folder.finished_folder`.
Ray's own folders (Tune's `ray/`, a worker group's `ray_train/`, the stages' `_ray/`) are written
by Ray into the bucket (`RunConfig(storage_filesystem=...)`).
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

from xsweep.config import ExperimentConfig
from xsweep.record import RECORD_FILE
from xsweep.storage import Mirror, is_uri, join, locate
from xsweep.train.align_folder import CHECKPOINTS_DIR, RESULT_FILE
from xsweep.train.checkpoint import CHECKPOINT_FILE

DRIVER_SKIP = ("ray", "tensorboard", "best", "predictions", CHECKPOINT_FILE)
"""What the driver never pulls: Ray's folder, and what only trials, evaluation and the report read."""
REPORT_SKIP = ("ray", "best", "predictions", CHECKPOINT_FILE)
"""What `xsweep report` of a bucket run does not pull: it reads records and event files."""
DRIVER_FILES = ("config.yaml", "manifest.json", "eval_subsets.json", "search")
"""What the driver itself writes into a run directory, pushed back after it writes them."""


def run_uri(cfg: ExperimentConfig) -> str:
    return join(cfg.storage.root, cfg.run_name)


def open_run_mirror(cfg: ExperimentConfig) -> Path:
    """The driver's copy of the bucket run: `<a new temporary folder>/<run name>`, holding the run's
    records and driver files (none for a new run); the temporary folder stands for `storage.root`,
    so the alignment stages' copies go beside the run, in `stages/`, as on disk."""
    local = Path(tempfile.mkdtemp(prefix="xsweep-root-")) / cfg.run_name
    Mirror(run_uri(cfg), local).pull(skip=DRIVER_SKIP)
    local.mkdir(parents=True, exist_ok=True)
    return local


def pull_stage(uri: str, local: str | Path) -> None:
    """An alignment stage's prompt, align.json and retrieval scores into the driver's copy `local`
    (not its epoch checkpoints: the workers that resume it pull those)."""
    Mirror(uri, local).pull(skip=(CHECKPOINTS_DIR,))


def push_stage_scores(stages: list[Any], scores_file: str, run_dir: Path, cfg: ExperimentConfig) -> None:
    """The retrieval scores kept beside each stage (`scores_file`), and the run's results/ (its
    retrieval table), into the bucket."""
    for stage in stages:
        if (stage.output_dir / scores_file).is_file():
            Mirror(stage.uri, stage.output_dir).push(scores_file)
    Mirror(run_uri(cfg), run_dir).push("results")


@contextmanager
def staged_alignment(spec: Any, uri: str | None, *, writes: bool) -> Iterator[tuple[Any, Callable[[], None]]]:
    """An alignment worker's `spec` with its output folder in a local copy of the stage's folder
    `uri`, and `sync`, which pushes what changed (align.json, the mark of a finished run, last).
    `writes`: rank 0, which reads the checkpoints and writes the folder; the other ranks get an
    empty scratch folder. For a folder run (`uri` None): the spec itself and a `sync` that does
    nothing."""
    if uri is None:
        yield spec, lambda: None
        return
    local = Path(tempfile.mkdtemp(prefix="xsweep-align-"))
    mirror = Mirror(uri, local)

    def sync() -> None:
        if writes:
            mirror.push(skip=(RESULT_FILE,), delete=True)  # old epoch checkpoints go, as here
            if (local / RESULT_FILE).is_file():
                mirror.push(RESULT_FILE)

    try:
        if writes:
            mirror.pull()
        yield replace(spec, output_dir=str(local)), sync
        sync()
    finally:
        shutil.rmtree(local, ignore_errors=True)


def push_driver_files(cfg: ExperimentConfig, run_dir: Path) -> None:
    mirror = Mirror(run_uri(cfg), run_dir)
    for name in DRIVER_FILES:
        if (run_dir / name).exists():
            mirror.push(name)


def push_trial_mark(cfg: ExperimentConfig, run_dir: Path, spec: Any) -> None:
    """A trial's record and event files as the driver changed them in its copy (pruning marks a
    trial `pruned` and ends its TensorBoard session there), into the bucket. Nothing for a folder run."""
    if not is_uri(cfg.storage.root):
        return
    mirror = Mirror(run_uri(cfg), run_dir)
    mirror.push((Path(spec.trial_dir) / RECORD_FILE).relative_to(run_dir).as_posix())
    mirror.push(Path(spec.tensorboard_dir).relative_to(run_dir).as_posix())


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
    return ray_storage(join(run_uri(cfg), "ray") if is_uri(cfg.storage.root) else run_dir / "ray")


@contextmanager
def staged(specs: list[Any], storage: dict[str, str] | None, *, writes: bool = True, skip: tuple[str, ...] = ()
           ) -> Iterator[tuple[list[Any], Callable[[], None]]]:
    """The trials `specs` with their folders in a local copy of the bucket's, and `sync`, which pushes
    what changed to the bucket; on leaving, a last `sync` and the copy is removed. `writes` False:
    a copy to read (a worker group's rank other than 0, which starts from the trial's checkpoint
    but whose own files are dropped), never pushed. `skip`: folders of the trial's that the copy
    leaves alone (a worker group's Ray Train folder, which Ray writes into the bucket itself). For a
    folder run (`storage` None): the specs themselves and a `sync` that does nothing."""
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
            mirror.pull(sub, skip=skip)
            folders.append(sub)
        moved.append(replace(spec, trial_dir=str(local / trial), tensorboard_dir=str(local / events)))

    def sync() -> None:
        for sub in folders if writes else ():
            mirror.push(sub, skip=skip, delete=True)

    try:
        yield moved, sync
        sync()
    finally:
        shutil.rmtree(local, ignore_errors=True)


def trial_uri(spec: Any, storage: dict[str, str], *parts: str) -> str:
    """The bucket URI of `parts` inside a trial's folder."""
    return join(storage["uri"], Path(spec.trial_dir).relative_to(storage["mirror"]).as_posix(), *parts)


def ray_storage(location: str | Path) -> dict[str, Any]:
    """`storage_path` (and `storage_filesystem` for a URI) of a Ray `RunConfig` writing to `location`,
    a folder or a bucket URI (opened by pyarrow.fs as xsweep opens it, ?endpoint_override included)."""
    if not is_uri(location):
        return {"storage_path": str(location)}
    fs, path = locate(str(location))
    return {"storage_path": path, "storage_filesystem": fs}
