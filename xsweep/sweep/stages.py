"""Stages of an experiment: the alignment runs that APT trials start from.

An experiment with `align.data` set has two stages. Every APT trial of its grid depends on the
alignment run of its backbone, prompt settings (kind, length, position convention,
reparameterisation) and `align` section, which a grid may vary (the corpus, to compare XSGD with
non-conversational data): the sweep plans each distinct run once, runs it on Ray Train before the
trials, and hands its output to the trials as `prompt.init_from`. The dependency is declared by
the config, never by a path the user writes.

A run is found by what it trains: its folder under `<storage.root>/stages/` is named after the
digest of its backbone, data and hyperparameters. A run that already finished (`align.json`
present) is reused, by this experiment on `--resume` or by any other experiment with the same
storage root; an interrupted one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from xsweep.config import AlignStageConfig, ExperimentConfig, PromptConfig, to_dict
from xsweep.errors import XsweepError
from xsweep.storage import is_uri, join
from xsweep.sweep.preflight import trial_configs
from xsweep.train.align_folder import RESULT_FILE

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
    align: AlignStageConfig = dataclasses.field(default_factory=AlignStageConfig)
    """The alignment settings of the trials that start from it (their `align` section)."""
    differs: tuple[str, ...] = ()
    """The `align` keys whose values tell this stage from the experiment's others (e.g. `data`)."""
    uri: str | None = None
    """In a bucket run, the stage's folder in the bucket; `output_dir` is then the driver's copy of it."""

    @property
    def output_dir(self) -> Path:
        return Path(self.spec.output_dir)

    @property
    def location(self) -> str:
        """Where the trials find the stage's prompt (their `prompt.init_from`): its folder, or its URI."""
        return self.uri or str(self.output_dir)

    def describe(self) -> str:
        """`layer prompt x 16`, and what sets it apart from the other stages: `on tatoeba, lr 0.0005`."""
        text = self.shape.describe()
        for key in self.differs:
            value = getattr(self.align, key)
            if value is not None:  # unset here, set on another stage: that one says so
                text += f" on {corpus_name(value)}" if key == "data" else f", {key} {value}"
        return text


def corpus_name(data: str | None) -> str:
    """How a dry run and the logs name `align.data`: a named data set, or the file or folder's name."""
    return str(data) if not data or "/" not in data else Path(data).name


def needs_alignment(cfg: ExperimentConfig) -> bool:
    """Whether a (trial) config is an APT trial fed by this experiment's alignment stage."""
    return cfg.method == "apt" and bool(cfg.align.data)


def _align_key(shape: PromptShape, align: AlignStageConfig) -> tuple[PromptShape, str]:
    """What decides which alignment run a trial starts from: its prompt shape and align section."""
    return shape, json.dumps(to_dict(align), sort_keys=True)


def needed_stages(cfg: ExperimentConfig) -> list[AlignStage]:
    """The distinct alignment runs the grid's APT trials need (no spec yet), with how many trials
    (all seeds) start from each, in grid order."""
    found: dict[tuple[PromptShape, str], AlignStage] = {}
    for trial_cfg in trial_configs(cfg):
        if needs_alignment(trial_cfg):
            key = _align_key(PromptShape.of(trial_cfg), trial_cfg.align)
            if key not in found:
                found[key] = AlignStage(shape=key[0], trials=0, align=trial_cfg.align)
            found[key].trials += len(cfg.sweep.seeds)
    stages = list(found.values())
    differs = tuple(f.name for f in dataclasses.fields(AlignStageConfig)
                    if len({json.dumps(getattr(st.align, f.name)) for st in stages}) > 1)
    for stage in stages:
        stage.differs = differs
    return stages


def stage_shapes(cfg: ExperimentConfig) -> Counter[PromptShape]:
    """The prompt shapes the grid's APT trials need, with how many trials (all seeds) need each,
    over every alignment setting (`needed_stages` tells the settings apart)."""
    shapes: Counter[PromptShape] = Counter()
    for stage in needed_stages(cfg):
        shapes[stage.shape] += stage.trials
    return shapes


def plan_align_stages(cfg: ExperimentConfig, backbone_path: str, *, demo_dir: Path | None = None,
                      local_root: Path | None = None) -> list[AlignStage]:
    """One stage per distinct (prompt shape, align settings) the APT trials need, with its AlignSpec
    and folder. For a bucket run, `local_root` is the driver's copy of `<storage.root>/stages`
    and each stage's `uri` its folder in the bucket."""
    bucket = is_uri(cfg.storage.root)
    if bucket and local_root is None:
        raise ValueError("a bucket run's stages need the driver's local copy (local_root)")
    stages = needed_stages(cfg)
    for stage in stages:
        stage.spec = _align_spec(cfg, stage.shape, stage.align, backbone_path, demo_dir,
                                 local_root if bucket else stages_root(cfg))
        stage.uri = join(cfg.storage.root, STAGES_DIR, stage.output_dir.name) if bucket else None
        _check_not_scored_on_own_data(stage, cfg, demo_dir)
    return stages


def _check_not_scored_on_own_data(stage: AlignStage, cfg: ExperimentConfig, demo_dir: Path | None) -> None:
    """A prompt aligned on Tatoeba cannot be scored on the same Tatoeba sentences (found here, before
    the stage spends its time, not when its retrieval starts)."""
    from xsweep.data.tatoeba import holds_tatoeba, tatoeba_folder

    source, retrieval = stage.spec.sources[0], cfg.align.retrieval
    if not retrieval or source.kind != "tatoeba":
        return
    scored = Path(demo_dir) / "tatoeba" if retrieval == "demo" and demo_dir else Path(retrieval)
    if holds_tatoeba(scored) and tatoeba_folder(scored).resolve() == tatoeba_folder(Path(source.path)).resolve():
        raise XsweepError(f"the {stage.describe()} would be aligned on the Tatoeba sentences its retrieval scores "
                          f"({tatoeba_folder(scored)})", where="align.retrieval",
                          fix="score it on another Tatoeba folder, align on other data, or remove align.retrieval")


def stage_for(stages: list[AlignStage], trial_cfg: ExperimentConfig) -> AlignStage:
    key = _align_key(PromptShape.of(trial_cfg), trial_cfg.align)
    for stage in stages:
        if _align_key(stage.shape, stage.align) == key:
            return stage
    raise AssertionError(f"no alignment stage planned for {key}")  # plan_align_stages covers every one


def trial_overrides(stages: list[AlignStage], trial_cfg: ExperimentConfig) -> dict[str, Any]:
    """What a trial's resolved config says in place of the `align` section: an APT trial names the
    exact prompt it starts from (`prompt.init_from`); other trials drop the section, which does not
    concern them (so PT trials group alike whatever the alignment settings)."""
    if not trial_cfg.align.data:
        return {}
    if not needs_alignment(trial_cfg):
        return {"align": {}}
    return {"align": {}, "prompt.init_from": stage_for(stages, trial_cfg).location}


def check_align_data(stages: list[AlignStage]) -> None:
    """Bad parallel data fails here, in the driver, before Ray starts (the stages read the same files)."""
    from xsweep.train.align_data import load_documents

    checked: set[str] = set()
    for stage in stages:
        source = stage.spec.sources[0]
        what = json.dumps(dataclasses.asdict(source), sort_keys=True)
        if (stage.output_dir / RESULT_FILE).is_file() or what in checked:
            continue
        checked.add(what)
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
    from xsweep.sweep.align_ray import align_on_ray
    from xsweep.train.align import load_alignment_result

    for number, stage in enumerate(stages, 1):
        a = stage.align
        head = f"stage {number}/{len(stages)}: alignment of the {stage.describe()}"
        if (stage.output_dir / RESULT_FILE).is_file():
            log(f"{head}: reusing the finished run in {stage.location}")
            continue
        log(f"{head} on {a.num_workers} worker(s), {a.epochs} epochs, for {stage.trials} APT trials "
            f"-> {stage.location}")
        ray_dir = join(cfg.storage.root, STAGES_DIR, "_ray") if stage.uri else stage.output_dir.parent / "_ray"
        result = align_on_ray(stage.spec, a.num_workers, a.cpus_per_worker, ray_dir,
                              gpus_per_worker=a.gpus_per_worker, output_uri=stage.uri)
        last = result.epochs[-1] if result.epochs else {}
        log(f"{head}: done in {result.seconds:.0f} s; last epoch MLM {last.get('mlm_loss', float('nan')):.3f}, "
            f"contrastive {last.get('contrastive_loss', float('nan')):.3f}")
        load_alignment_result(stage.output_dir)  # fails loudly if the run did not leave its prompt


def describe_stages(cfg: ExperimentConfig) -> list[str]:
    """Lines for `--dry-run`: each alignment run the sweep would need (no backbone is loaded)."""
    stages = needed_stages(cfg)
    if not stages:
        return []
    a = stages[0].align  # what the stages share; what differs is on each stage's line
    corpora = ", ".join(dict.fromkeys(corpus_name(st.align.data) for st in stages))
    size = f", at most {a.max_pairs} pairs" if a.max_pairs and "max_pairs" not in stages[0].differs else ""
    lines = [f"stage 1: {len(stages)} alignment run(s) on {corpora} "
             f"({a.epochs} epochs, batch {a.batch_size}, lr {a.lr}{size}, {a.num_workers} worker(s) each)"]
    lines += [f"  {stage.describe()}: {stage.trials} APT trials start from it" for stage in stages]
    return lines


def stages_root(cfg: ExperimentConfig) -> Path:
    return Path(cfg.storage.root).expanduser().resolve() / STAGES_DIR


def _align_spec(cfg: ExperimentConfig, shape: PromptShape, a: AlignStageConfig, backbone_path: str,
                demo_dir: Path | None, root: Path):
    from xsweep.train.align import AlignSpec

    prompt = PromptConfig(kind=shape.kind, length=shape.length, dropout=cfg.prompt.dropout,
                          shift_positions=shape.shift_positions, reparam_hidden=shape.reparam_hidden)
    # The digest names the folder; it is independent of where the spec says it writes.
    with tempfile.TemporaryDirectory() as scratch:
        spec = AlignSpec(backbone_path=backbone_path, output_dir=scratch, sources=[_source(a, demo_dir)],
                         align=dataclasses.replace(a), prompt=prompt, backbone=dataclasses.replace(cfg.backbone),
                         label=cfg.name)
        digest = spec.digest()
    folder = root / f"align-{shape.kind}{shape.length}-{digest}"
    return dataclasses.replace(spec, output_dir=str(folder))


def _source(a: AlignStageConfig, demo_dir: Path | None):
    from xsweep.train.align_data import ParallelSource

    if a.data == "demo":
        if demo_dir is None:
            raise XsweepError("align.data is demo but the demo data is not prepared", where="align.data",
                              fix="report this as a bug in xsweep")
        return ParallelSource(kind="xsgd", path=str(demo_dir / "xsgd"), targets=a.targets, max_pairs=a.max_pairs)
    if a.data in ("xsgd", "tatoeba"):
        from xsweep.data.tatoeba import holds_tatoeba
        from xsweep.paths import data_root

        folder = data_root() / a.data
        there = holds_tatoeba(folder) if a.data == "tatoeba" else folder.is_dir()
        if not there:
            how = ("XSGD is a manual download (`xsweep data download xsgd` says how); place it there"
                   if a.data == "xsgd" else "fetch it with `xsweep data download tatoeba`")
            raise XsweepError(f"align.data is {a.data} but there is no {a.data} in {str(folder)!r}",
                              where="align.data",
                              fix=f"{how} (XSWEEP_DATA sets the data root), or set align.data to its folder")
        return ParallelSource(kind=a.data, path=str(folder), targets=a.targets, max_pairs=a.max_pairs)
    if a.data.endswith(".tsv"):
        return ParallelSource(kind="tsv", path=a.data, lang=a.lang, max_pairs=a.max_pairs)
    from xsweep.data.tatoeba import holds_tatoeba

    kind = "tatoeba" if holds_tatoeba(Path(a.data)) else "xsgd"  # a folder is read in its own layout
    return ParallelSource(kind=kind, path=a.data, targets=a.targets, max_pairs=a.max_pairs)
