"""Stages of an experiment: the alignment runs that APT trials start from.

An experiment with `align.data` set has two stages. Every APT trial of its grid depends on the
alignment run of its backbone and prompt settings (kind, length, position convention,
reparameterisation): the sweep plans each distinct run once, runs it on Ray Train before the
trials, and hands its output to the trials as `prompt.init_from`. The dependency is declared by
the config, never by a path the user writes.

A run is found by what it trains: its folder under `<storage.root>/stages/` is named after the
digest of its backbone, data and hyperparameters. A run that already finished (`align.json`
present) is reused, by this experiment on `--resume` or by any other experiment with the same
storage root; an interrupted one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xsweep.config import ExperimentConfig
from xsweep.errors import XsweepError
from xsweep.sweep.preflight import trial_configs

Log = Callable[[str], None]
STAGES_DIR = "stages"


@dataclass(frozen=True)
class PromptShape:
    """What an aligned prompt must match for an APT trial to start from it."""

    kind: str
    length: int
    shift_positions: bool
    reparam_hidden: int | None

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> "PromptShape":
        p = cfg.prompt
        return cls(p.kind, p.length, p.shift_positions, p.reparam_hidden)

    def describe(self) -> str:
        extra = "" if self.shift_positions else ", positions unshifted"
        extra += f", reparam {self.reparam_hidden}" if self.reparam_hidden else ""
        return f"{self.kind} prompt x {self.length}{extra}"


@dataclass
class AlignStage:
    """One alignment run and the number of trials that start from it."""

    shape: PromptShape
    trials: int
    spec: Any = None
    """The `AlignSpec`, once the backbone is on disk (`plan_align_stages` with a backbone path)."""

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output_dir)


def needs_alignment(cfg: ExperimentConfig) -> bool:
    """Whether a (trial) config is an APT trial fed by this experiment's alignment stage."""
    return cfg.method == "apt" and bool(cfg.align.data)


def stage_shapes(cfg: ExperimentConfig) -> Counter[PromptShape]:
    """The distinct aligned prompts the grid needs, with how many trials (all seeds) need each."""
    shapes: Counter[PromptShape] = Counter()
    for trial_cfg in trial_configs(cfg):
        if needs_alignment(trial_cfg):
            shapes[PromptShape.of(trial_cfg)] += len(cfg.sweep.seeds)
    return shapes


def plan_align_stages(cfg: ExperimentConfig, backbone_path: str, *, demo_dir: Path | None = None
                      ) -> list[AlignStage]:
    """One stage per distinct prompt shape the APT trials need, with its AlignSpec and folder."""
    stages = []
    for shape, trials in stage_shapes(cfg).items():
        spec = _align_spec(cfg, shape, backbone_path, demo_dir)
        stages.append(AlignStage(shape=shape, trials=trials, spec=spec))
    return stages


def stage_for(stages: list[AlignStage], trial_cfg: ExperimentConfig) -> AlignStage:
    shape = PromptShape.of(trial_cfg)
    for stage in stages:
        if stage.shape == shape:
            return stage
    raise AssertionError(f"no alignment stage planned for {shape}")  # plan_align_stages covers every shape


def trial_overrides(stages: list[AlignStage], trial_cfg: ExperimentConfig) -> dict[str, Any]:
    """What a trial's resolved config says in place of the `align` section: an APT trial names the
    exact prompt it starts from (`prompt.init_from`); other trials drop the section, which does not
    concern them (so PT trials group alike whatever the alignment settings)."""
    if not trial_cfg.align.data:
        return {}
    if not needs_alignment(trial_cfg):
        return {"align": {}}
    return {"align": {}, "prompt.init_from": str(stage_for(stages, trial_cfg).output_dir)}


def check_align_data(stages: list[AlignStage]) -> None:
    """Bad parallel data fails here, in the driver, before Ray starts (the stages read the same files)."""
    from xsweep.train.align_data import load_documents

    checked: set[str] = set()
    for stage in stages:
        source = stage.spec.sources[0]
        if (stage.output_dir / "align.json").is_file() or source.path in checked:
            continue
        checked.add(source.path)
        try:
            documents = load_documents(stage.spec.sources)
        except XsweepError as exc:
            raise XsweepError(f"the alignment data cannot be read: {exc.what}", where=f"align.data ({exc.where or source.path})",
                              fix=exc.fix) from None
        if len(documents) < 2:
            raise XsweepError(f"the alignment data holds {len(documents)} parallel document(s); the contrastive "
                              "loss needs at least 2", where=f"align.data ({source.path})",
                              fix="point align.data at more parallel data")


def run_align_stages(stages: list[AlignStage], cfg: ExperimentConfig, *, log: Log = print) -> None:
    """Run every stage not yet finished, one after another, each on `align.num_workers` Ray Train
    workers; a finished one is reused. Ray must be started."""
    from xsweep.train.align import align_on_ray, load_alignment_result

    a = cfg.align
    for number, stage in enumerate(stages, 1):
        head = f"stage {number}/{len(stages)}: alignment of the {stage.shape.describe()}"
        if (stage.output_dir / "align.json").is_file():
            log(f"{head}: reusing the finished run in {stage.output_dir}")
            continue
        log(f"{head} on {a.num_workers} worker(s), {a.epochs} epochs, for {stage.trials} APT trials "
            f"-> {stage.output_dir}")
        result = align_on_ray(stage.spec, a.num_workers, a.cpus_per_worker, stage.output_dir.parent / "_ray",
                              gpus_per_worker=a.gpus_per_worker)
        last = result.epochs[-1] if result.epochs else {}
        log(f"{head}: done in {result.seconds:.0f} s; last epoch MLM {last.get('mlm_loss', float('nan')):.3f}, "
            f"contrastive {last.get('contrastive_loss', float('nan')):.3f}")
        load_alignment_result(stage.output_dir)  # fails loudly if the run did not leave its prompt


def describe_stages(cfg: ExperimentConfig) -> list[str]:
    """Lines for `--dry-run`: each alignment run the sweep would need (no backbone is loaded)."""
    shapes = stage_shapes(cfg)
    if not shapes:
        return []
    a = cfg.align
    lines = [f"stage 1: {len(shapes)} alignment run(s) on {a.data} "
             f"({a.epochs} epochs, batch {a.batch_size}, lr {a.lr}, {a.num_workers} worker(s) each)"]
    lines += [f"  {shape.describe()}: {trials} APT trials start from it" for shape, trials in shapes.items()]
    return lines


def stages_root(cfg: ExperimentConfig) -> Path:
    return Path(cfg.storage.root).expanduser().resolve() / STAGES_DIR


def _align_spec(cfg: ExperimentConfig, shape: PromptShape, backbone_path: str, demo_dir: Path | None):
    from xsweep.train.align import AlignConfig, AlignSpec

    a = cfg.align
    config = AlignConfig(prompt_kind=shape.kind, prompt_length=shape.length, prompt_dropout=cfg.prompt.dropout,
                         shift_positions=shape.shift_positions, reparam_hidden=shape.reparam_hidden,
                         backbone_dropout=cfg.backbone.dropout, attn_implementation=cfg.backbone.attn_implementation,
                         epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, max_seq_len=a.max_seq_len, seed=a.seed)
    # The digest names the folder; it is independent of where the spec says it writes.
    with tempfile.TemporaryDirectory() as scratch:
        spec = AlignSpec(backbone_path=backbone_path, output_dir=scratch, sources=[_source(a, demo_dir)],
                         config=config, label=cfg.name)
        digest = spec.digest()
    folder = stages_root(cfg) / f"align-{shape.kind}{shape.length}-{digest}"
    return dataclasses.replace(spec, output_dir=str(folder))


def _source(a, demo_dir: Path | None):
    from xsweep.train.align_data import ParallelSource

    if a.data == "demo":
        if demo_dir is None:
            raise XsweepError("align.data is demo but the demo data is not prepared", where="align.data",
                              fix="report this as a bug in xsweep")
        return ParallelSource(kind="xsgd", path=str(demo_dir / "xsgd"), targets=a.targets)
    if a.data == "xsgd":
        from xsweep.paths import data_root

        folder = data_root() / "xsgd"
        if not folder.is_dir():
            raise XsweepError(f"align.data is xsgd but there is no XSGD in {str(folder)!r}", where="align.data",
                              fix="XSGD is a manual download (`xsweep data download xsgd` says how); place it "
                                  "there (XSWEEP_DATA sets the data root) or set align.data to its folder")
        return ParallelSource(kind="xsgd", path=str(folder), targets=a.targets)
    if a.data.endswith(".tsv"):
        return ParallelSource(kind="tsv", path=a.data, lang=a.lang)
    return ParallelSource(kind="xsgd", path=a.data, targets=a.targets)
