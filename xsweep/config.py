"""Typed experiment configs: YAML in, dataclasses out, strict.

An experiment is a YAML file read with `yaml.safe_load` semantics into `ExperimentConfig`.
Every key is checked against the dataclasses below: an unknown key, a wrong type or an
impossible combination is an `XsweepError` that names the key, the file and line, and the
valid choices. Dotted overrides (`optim.lr=1e-3`) use one grammar on the command line and in
sweep grids (`sweep.grid: {optim.lr: [1e-2, 1e-3]}`).

What a seed controls is defined once, here: `seed` sets parameter initialisation, data order
and dropout; the few-shot sample uses `data.sample_seed`, which defaults to `seed`.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from xsweep.errors import XsweepError
from xsweep.languages import check_locale

NAMED_DATA = ("demo", "massive", "sgd")
"""`data.path` values that name a data set xsweep finds itself rather than a folder."""
NAMED_ALIGN_DATA = ("demo", "xsgd", "tatoeba")
"""`align.data` values that name parallel data xsweep finds itself."""
HeadKind = Literal["vanilla", "nli", "slot"]
Method = Literal["ft", "pt", "apt"]


def can_fuse(method: str, head_kind: str, dataset: str) -> bool:
    """Whether trials of this setup can share one backbone forward (`sweep.fuse`, train/fused.py):
    a frozen backbone (pt, apt) and the vanilla intent head on MASSIVE. `train.fused.check_fusable`
    refuses the rest, saying which part fails."""
    return method in ("pt", "apt") and head_kind == "vanilla" and dataset == "massive"


PromptKind = Literal["input", "layer", "none"]


@dataclass
class BackboneConfig:
    name: str = "builtin:tiny"
    """`builtin:tiny` (a small XLM-R made in-process, no download), a hub id such as
    `xlm-roberta-large`, or a local directory holding a Hugging Face encoder."""
    attn_implementation: Literal["eager", "sdpa"] | None = None
    """Attention kernel; None lets transformers choose."""
    dropout: bool = True
    """Keep the frozen backbone's own dropout active in training, as the authors' code does."""


@dataclass
class DataConfig:
    dataset: Literal["massive", "sgd"] = "massive"
    """Which data set the downstream task reads: `massive` (intents or slots), or `sgd` (the paper's
    SGD intent task: NLI over the turn's service's intents, out of scope below 0.5; head.kind nli)."""
    path: str = "demo"
    """`demo` (data xsweep generates itself; for sgd its XSGD-layout dialogues), `massive` (the MASSIVE
    1.1 release fetched by `xsweep data download massive` into xsweep's data root), `sgd` (SGD fetched
    by `xsweep data download sgd`), or a folder: MASSIVE `<locale>.jsonl` files (`1.1/data/` inside it
    is found too), or for sgd one holding `train/ dev/ test/`. Relative paths are relative to the config file."""
    train_locale: str = "en-US"
    """Training and model selection use this locale only."""
    eval_locales: list[str] | Literal["all"] = "all"
    """Locales evaluated on test; `all` means every locale file found in `path` (sgd: en-US, plus
    the locales of the XSGD translations its test dialogues carry)."""
    shots: int | None = None
    """Training examples per intent; None uses all of them."""
    sample_seed: int | None = None
    """Seed of the few-shot sample; None means the trial's `seed`."""
    max_seq_len: int = 64
    """Tokens per utterance after tokenization, specials included."""
    intent_turns: Literal["active_intent", "intent_acts"] = "active_intent"
    """SGD only: which user frames carry an intent. `active_intent`: every frame carries its state's
    active intent (NONE: out of scope); `intent_acts`: only frames whose actions inform or affirm an
    intent (INFORM_INTENT, AFFIRM_INTENT), every other frame is out of scope."""
    dialogues_per_service: int | None = 5
    """SGD only: training dialogues sampled per service (the paper: 5); None uses all of them."""


@dataclass
class PromptConfig:
    kind: PromptKind = "layer"
    """`layer`: per-layer key/value prefixes; `input`: soft tokens at the input; `none`."""
    length: int = 16
    """Prompt tokens P; the paper uses 1, 8, 16 and 100."""
    dropout: float = 0.1
    """Dropout on the prompt's prefix vectors."""
    shift_positions: bool = True
    """Layer prompts: shift the real tokens' position ids by P, as the authors' code does
    (their prefix counts as past tokens); False keeps the positions of an unprompted input."""
    reparam_hidden: int | None = None
    """Layer prompts: train a P x hidden table through a Linear-tanh-Linear of this width
    (P-tuning v2's reparameterisation); None trains the per-layer prefixes directly."""
    init_from: str | None = None
    """APT only: directory of an alignment run's saved prompt."""


@dataclass
class HeadConfig:
    kind: HeadKind = "vanilla"
    """`vanilla`: classifier over all intents; `nli`: entailment scorer; `slot`: tagger."""
    dropout: float = 0.1
    """Dropout before the head's projection."""


@dataclass
class OptimConfig:
    lr: float = 1e-2
    """Peak learning rate (Adam)."""
    epochs: int = 30
    """Upper bound on training epochs; early stopping usually ends sooner."""
    batch_size: int = 32
    """Training examples per optimiser step."""
    warmup_ratio: float = 0.0
    """Fraction of the total steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    eval_every_epochs: int = 1
    """English dev is evaluated every this many epochs."""
    patience: int = 5
    """Stop after this many dev evaluations without improvement."""
    eval_batch_size: int = 128
    """Examples per forward pass in evaluation."""


@dataclass
class OptunaConfig:
    """Optuna's TPE over continuous or discrete ranges, in place of listing values in the grid."""

    trials: int = 20
    """Points TPE suggests per study; each runs every seed, and TPE learns from their mean English
    dev score (so a point is judged like a grid point: over all its seeds)."""
    parallel: int = 4
    """Points suggested and run at once; TPE sees their scores before it suggests the next ones."""
    seed: int = 0
    """Seed of the TPE sampler: the same seed and results suggest the same points (so --resume
    finds the finished ones)."""
    space: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Dotted key -> range: `{low: 1e-4, high: 1e-1, log: true}` (floats; `int: true` for integers)
    or `{choices: [1, 8, 16]}`."""


@dataclass
class PruningConfig:
    """Successive halving of learning rates within a group (ASHA's rule, run in fixed phases).

    At each milestone epoch every running trial of the group pauses; each learning rate is scored
    by the mean over its seeds of their best English dev score so far, and only the best `keep`
    fraction goes on. A pruned rate stops on every seed, so a selected rate has all its seeds.
    """

    milestones: list[int] = field(default_factory=list)
    """Epochs at which a group's learning rates are compared, increasing; each a multiple of
    `optim.eval_every_epochs` and below `optim.epochs`. Empty: no pruning, every trial runs to its end."""
    keep: float = 0.5
    """Fraction of a group's remaining learning rates kept at each milestone, rounded up (at least one)."""


@dataclass
class SweepConfig:
    grid: dict[str, list[Any]] = field(default_factory=lambda: {"optim.lr": [1e-2]})
    """Dotted key -> values; the sweep runs the cross product, once per seed. An axis whose values
    are mappings sets several keys together, under a name of its own choosing, e.g.
    `variant: [{method: ft, prompt.kind: none}, {method: pt}]` (FT takes no prompt, PT does)."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Seeds run for every grid point; the paper uses 5."""
    search: Literal["grid", "optuna"] = "grid"
    """`grid`: every grid point; `optuna`: TPE over `optuna.space`, one study per grid point (the
    grid then holds only the axes that are not searched, or nothing: `grid: {}`)."""
    optuna: OptunaConfig = field(default_factory=OptunaConfig)
    budget_device_hours: float | None = None
    """Stop starting trials once the sweep's trials have spent this many device-hours (seconds x
    the share of a GPU, or of CPUs, each held); running ones finish. None: no cap."""
    pruning: PruningConfig = field(default_factory=PruningConfig)
    """Stop each group's worst learning rates, on all their seeds, at fixed epochs; off by default."""
    downstream: bool = True
    """False: run the alignment stages (and their Tatoeba retrieval) only, no downstream trials."""
    evaluate: Literal["selected", "all"] = "selected"
    """`selected`: PT/APT trials report English dev only, and once the grid has run, each group's
    learning rate chosen on English dev (all its seeds) is tested on every language from the kept
    checkpoints (the tables are the same as testing every trial, at a fraction of the cost);
    `all`: every trial tests every language, for analysis. FT trials always test inside the trial."""
    max_concurrent_trials: int | None = None
    """Upper bound on trials running at once (a fused trial counts once); None lets the resources
    decide."""
    fuse: int = 1
    """Trials of one group (same config but learning rate and seed) run as one fused trial, up to
    this many: one process, one frozen backbone, one batched forward per step, each trial with its
    own prompt, head, optimiser and early stopping (train/fused.py). For PT/APT with the vanilla
    head on MASSIVE; other groups run alone. It pays on a GPU, where few-shot batches leave the
    device idle; on a CPU it costs the same. 1: every trial alone."""


@dataclass
class ResourcesConfig:
    cpus_per_trial: float = 1.0
    """CPUs a trial's training worker asks Ray for; fractions are allowed."""
    gpus_per_trial: float = 0.0
    """GPUs a trial's training worker asks Ray for; fractions share one GPU."""
    num_workers: int = 1
    """Must be 1: a downstream trial is one process (alignment's workers: `align.num_workers`)."""


@dataclass
class StorageConfig:
    root: str = "runs"
    """Folder holding run directories; relative paths are relative to the working directory."""
    name: str | None = None
    """Run directory name under `root`; None uses the experiment's `name`."""
    shared: bool = False
    """`root` is the same folder on every node of the cluster (an NFS/EFS mount, or one machine's
    disk); required to run on a cluster of several nodes, where trials write from any node."""


@dataclass
class AlignStageConfig:
    """APT's first stage: alignment pretraining of the prompt on parallel data.

    When `data` is set, every APT trial of the sweep depends on the alignment run of its backbone,
    prompt settings (kind, length, position convention, reparameterisation) and `align` settings;
    the sweep runs each distinct one once, before the trials, and reuses a finished one (found by
    what it trains, not by a path). A grid may vary `align` keys (e.g. `data`, to compare corpora):
    each APT trial starts from the run of its own settings. The defaults are the paper's.
    """

    data: str | None = None
    """`demo` (the demo XSGD dialogues), `xsgd` (XSGD placed by hand in xsweep's data root as
    `xsgd/`; see `xsweep data download xsgd`), `tatoeba` (Tatoeba's sentences in the data root,
    fetched by `xsweep data download tatoeba`: short non-conversational pairs), an XSGD/SGD-layout
    folder (`utterance_<code>` fields), a folder of `tatoeba.<iso3>-eng.*` files, or a `.tsv` file of
    `english<TAB>target` lines (non-conversational parallel text such as an OPUS corpus). None: no
    stage; APT trials then need `prompt.init_from`."""
    targets: list[str] | Literal["all"] = "all"
    """Languages aligned to English: MASSIVE locales (for any data), or the data's own codes (XSGD's
    `de`, `zh-CN`; Tatoeba's `deu`, `cmn`); `all`: every language in the files."""
    lang: str | None = None
    """`.tsv` data only: the target language's code."""
    max_pairs: int | None = None
    """Upper bound on the parallel pairs read (an XSGD turn in one target language, or one line of a
    .tsv or Tatoeba file): a fixed sample of whole documents, the same for every seed. Gives two
    corpora the same size, as the paper's XSGD-vs-OPUS table does. None: all of the data."""
    epochs: int = 10
    """Passes over the documents (each draws one span of 1-4 turns per dialogue)."""
    batch_size: int = 64
    """Pairs per optimiser step over all workers (32 for XLM-R XL in the paper)."""
    lr: float = 1e-3
    """Peak Adam learning rate (10% warm-up, then linear decay)."""
    max_seq_len: int = 128
    """Tokens per side of a pair, specials included."""
    seed: int = 0
    """Seed of the alignment run (prompt initialisation, spans, masking, dropout)."""
    retrieval: str | None = None
    """Score each aligned prompt on Tatoeba (retrieval of `<s>`, with and without the prompt):
    `demo`, `tatoeba` (fetched by `xsweep data download tatoeba` into the data root), or a folder of
    `tatoeba.<iso3>-eng.*` files. None: no retrieval table."""
    retrieval_languages: list[str] | Literal["all"] = "all"
    """ISO 639-3 codes scored on Tatoeba; `all`: every language in the folder."""
    num_workers: int = 1
    """Ray Train workers (DDP) of each alignment run."""
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    """Names the experiment and, by default, its run directory."""
    description: str = ""
    """Free text shown by `xsweep ls`."""
    method: Method = "pt"
    """`ft` trains everything; `pt` a fresh prompt; `apt` a prompt from an alignment run."""
    seed: int = 0
    """Sets initialisation, data order and dropout of one trial (sweeps set it per trial)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    align: AlignStageConfig = field(default_factory=AlignStageConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)

    @property
    def effective_sample_seed(self) -> int:
        return self.seed if self.data.sample_seed is None else self.data.sample_seed

    @property
    def run_name(self) -> str:
        return self.storage.name or self.name


# ---------------------------------------------------------------------------------------------
# Loading


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment, apply dotted overrides, check everything, return the config."""
    path = Path(path)
    if not path.is_file():
        raise XsweepError(
            f"config file {str(path)!r} does not exist",
            fix="pass the path of a YAML experiment; `xsweep ls` lists the shipped ones",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XsweepError(f"cannot read the config file: {exc}", where=str(path),
                          fix="pass a readable UTF-8 YAML file") from None
    raw, lines = parse_yaml(text, str(path))
    if not raw:  # blank or comments only: running the defaults would not be what was meant
        raise XsweepError("the config file is empty", where=str(path),
                          fix="write an experiment (copy experiments/quickstart.yaml and edit it)")
    for override in overrides:
        key, value = parse_override(override)
        set_dotted(raw, key, value, where=f"override {override!r}")
        lines.pop(key, None)
    cfg = from_dict(raw, source=str(path), lines=lines)
    return _resolve_paths(cfg, path.parent)


def parse_yaml(text: str, source: str) -> tuple[dict, dict[str, int]]:
    """Parse YAML safely; return the data and the line (1-based) of every dotted key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)  # never yaml.load: a config is data, not Python objects
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise XsweepError(f"YAML tag not allowed: {exc.problem}",
                          where=f"{source}:{mark.line + 1}" if mark else source,
                          fix="configs are plain data (mappings, lists, numbers, strings); "
                              "remove the `!!` tag") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise XsweepError(f"malformed YAML: {problem}", where=where,
                          fix="fix the YAML syntax at that line (indentation, ':' after keys)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise XsweepError("the top level must be a mapping of keys to values", where=source,
                          fix="start the file with keys such as `name:`, `optim:`, `sweep:`")
    lines: dict[str, int] = {}
    if node is not None:
        _collect_lines(node, "", lines, source)
    return data, lines


def _collect_lines(node: yaml.Node, prefix: str, lines: dict[str, int], source: str) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen:  # YAML itself would keep the last value silently
            raise XsweepError(f"key {key!r} appears twice", where=f"{source}:{key_node.start_mark.line + 1}",
                              fix=f"keep one {key!r}; the earlier one is at line {lines[key]}")
        seen.add(key)
        lines[key] = key_node.start_mark.line + 1
        # Sweep grids hold dotted keys as data, not nesting: keep their lines under the grid.
        _collect_lines(value_node, key + ".", lines, source)


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=1e-3` -> ("optim.lr", 0.001); the value is read as a YAML scalar or list."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise XsweepError(f"override {text!r} is not of the form key.sub=value",
                          fix="write overrides like optim.lr=1e-3 or sweep.seeds=[0,1]")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def set_dotted(raw: dict, key: str, value: Any, *, where: str) -> None:
    """Set `a.b.c` in a nested dict, creating levels; the checks happen in `from_dict`."""
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise XsweepError(f"cannot set {key!r}: {part!r} is not a section", where=where,
                              fix=f"check the key; {part!r} holds a value, not sub-keys")
        node = child
    node[parts[-1]] = value


def with_overrides(cfg: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
    """Return a copy of `cfg` with dotted keys set (the grammar of sweep grids), checked."""
    raw = to_dict(cfg)
    for key, value in values.items():
        set_dotted(raw, key, value, where=f"sweep value {key}={value!r}")
    return from_dict(raw, source="sweep grid", lines={}, check_grid=False)


# ---------------------------------------------------------------------------------------------
# Typed conversion


def from_dict(raw: dict, *, source: str = "<config>", lines: dict[str, int] | None = None,
              check_grid: bool = True) -> ExperimentConfig:
    """Build and check an `ExperimentConfig` from plain data. `check_grid=False` skips checking each
    grid value against this config: a trial's config (one grid point applied) is checked as itself,
    and its other points, which may set keys together differently, are not its concern."""
    lines = lines or {}
    cfg = _build(ExperimentConfig, raw, "", source, lines)
    _check_combinations(cfg, source, lines, check_grid=check_grid)
    return cfg


def to_dict(cfg: Any) -> dict:
    """The config as plain data (what `config.yaml` in a run directory holds)."""
    return copy.deepcopy(dataclasses.asdict(cfg))


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def _where(source: str, lines: dict[str, int], key: str) -> str:
    line = lines.get(key)
    return f"{source}:{line} ({key})" if line else f"{source} ({key})"


def _build(cls: type, raw: Any, prefix: str, source: str, lines: dict[str, int]) -> Any:
    section = prefix.rstrip(".") or "top level"
    if not isinstance(raw, dict):
        raise XsweepError(f"{section} must be a mapping, got {type(raw).__name__}",
                          where=_where(source, lines, prefix.rstrip(".")),
                          fix=f"write {section} as `key: value` lines")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise XsweepError(f"unknown key {dotted!r}", where=_where(source, lines, dotted),
                              fix=f"{hint}valid keys in {section}: {', '.join(fields)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, dotted + ".", source, lines)
        else:
            kwargs[key] = _coerce(value, hint, dotted, source, lines)
    return cls(**kwargs)


def _type_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(hint))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if origin is list:
        return f"list of {_type_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return "mapping"
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def _coerce(value: Any, hint: Any, key: str, source: str, lines: dict[str, int]) -> Any:
    ok, result = _try_coerce(value, hint)
    if ok:
        return result
    raise XsweepError(f"{key} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})",
                      where=_where(source, lines, key),
                      fix=f"set {key} to {_type_name(hint)}")


def _try_coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return True, value
    if origin is Literal:
        return (value in args, value)
    if origin is typing.Union or (origin is not None and type(hint).__name__ == "UnionType"):
        for arg in args:
            ok, result = _try_coerce(value, arg)
            if ok:
                return True, result
        return False, None
    if hint is type(None):
        return value is None, None
    if origin is list:
        if not isinstance(value, list):
            return False, None
        items = [_try_coerce(v, args[0]) for v in value]
        return (all(ok for ok, _ in items), [v for _, v in items])
    if origin is dict:
        if not isinstance(value, dict):
            return False, None
        items = {str(k): _try_coerce(v, args[1]) for k, v in value.items()}
        return (all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()})
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return (isinstance(value, int) and not isinstance(value, bool), value)
    if hint is float:
        # PyYAML reads `1e-3` (no dot) as a string; accept numeric strings for float fields.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, None
        return False, None
    if hint is str:
        return isinstance(value, str), value
    return isinstance(value, hint), value


# ---------------------------------------------------------------------------------------------
# Combinations


def _check_combinations(cfg: ExperimentConfig, source: str, lines: dict[str, int], *,
                        check_grid: bool = True) -> None:
    def fail(key: str, what: str, fix: str) -> None:
        raise XsweepError(what, where=_where(source, lines, key), fix=fix)

    o = cfg.optim
    if not o.lr > 0:
        fail("optim.lr", f"optim.lr must be positive, got {o.lr}", "use a learning rate such as 1e-2")
    for key in ("epochs", "batch_size", "eval_every_epochs", "patience", "eval_batch_size"):
        if getattr(o, key) < 1:
            fail(f"optim.{key}", f"optim.{key} must be at least 1, got {getattr(o, key)}",
                 f"set optim.{key} to a positive integer")
    if not 0 <= o.warmup_ratio < 1:
        fail("optim.warmup_ratio", f"optim.warmup_ratio must be in [0, 1), got {o.warmup_ratio}",
             "use a fraction such as 0.1")
    if o.weight_decay < 0:
        fail("optim.weight_decay", f"optim.weight_decay must be >= 0, got {o.weight_decay}", "use 0 or more")
    p = cfg.prompt
    if p.kind != "none" and p.length < 1:
        fail("prompt.length", f"prompt.length must be at least 1, got {p.length}",
             "use 1, 8, 16 or 100 (the paper's lengths), or prompt.kind: none")
    if not 0 <= p.dropout < 1:
        fail("prompt.dropout", f"prompt.dropout must be in [0, 1), got {p.dropout}", "use e.g. 0.1")
    if not 0 <= cfg.head.dropout < 1:
        fail("head.dropout", f"head.dropout must be in [0, 1), got {cfg.head.dropout}", "use e.g. 0.1")
    if cfg.method in ("pt", "apt") and p.kind == "none":
        fail("prompt.kind", f"method {cfg.method} trains a prompt but prompt.kind is 'none'",
             "set prompt.kind to layer or input, or use method: ft")
    if cfg.method == "ft" and p.kind != "none":
        fail("prompt.kind", "method ft fine-tunes the whole backbone and takes no prompt",
             "set prompt.kind: none for ft, or use method: pt")
    if cfg.method == "apt" and not p.init_from and not cfg.align.data:
        fail("prompt.init_from", "method apt starts from an aligned prompt, but neither align.data (an "
             "alignment stage) nor prompt.init_from (a saved prompt) is set",
             "set align.data to parallel data (e.g. demo) so the sweep aligns the prompt first, or "
             "prompt.init_from to the directory of an alignment run's saved prompt")
    if p.init_from and cfg.align.data:
        fail("prompt.init_from", "prompt.init_from and align.data both say where APT's prompt comes from",
             "keep one: align.data runs the alignment stage, prompt.init_from reuses a saved prompt")
    a = cfg.align
    for key in ("epochs", "batch_size", "num_workers"):
        if getattr(a, key) < 1:
            fail(f"align.{key}", f"align.{key} must be at least 1, got {getattr(a, key)}",
                 f"set align.{key} to a positive integer")
    if a.batch_size < 2:
        fail("align.batch_size", "the contrastive loss needs at least 2 pairs per batch", "use e.g. 64")
    if a.batch_size < 2 * a.num_workers:
        fail("align.batch_size", f"align.batch_size {a.batch_size} leaves a worker of the {a.num_workers} "
             "fewer than 2 pairs: the contrastive loss needs in-batch negatives",
             f"use align.batch_size >= {2 * a.num_workers}, or fewer workers")
    if not a.lr > 0 or a.cpus_per_worker <= 0 or a.gpus_per_worker < 0 or a.max_seq_len < 4:
        fail("align", "align needs lr > 0, cpus_per_worker > 0, gpus_per_worker >= 0, max_seq_len >= 4",
             "e.g. lr: 1e-3, cpus_per_worker: 1, gpus_per_worker: 0, max_seq_len: 128")
    if a.retrieval and not a.data:
        fail("align.retrieval", "align.retrieval scores aligned prompts, but there is no alignment stage",
             "set align.data too, or remove align.retrieval")
    if check_grid and not cfg.sweep.downstream and not a.data:  # an experiment's, not a trial's
        fail("sweep.downstream", "sweep.downstream is false and there is no alignment stage: nothing would run",
             "set align.data (and align.retrieval), or leave sweep.downstream true")
    if a.data and a.data.endswith(".tsv") and not a.lang:
        fail("align.lang", "a .tsv alignment file needs the target language's code",
             "set align.lang, e.g. de-DE")
    _check_align_data(cfg, fail, check_grid=check_grid)
    if cfg.method != "apt" and p.init_from:
        fail("prompt.init_from", f"prompt.init_from is only used by method apt, not {cfg.method}",
             "remove prompt.init_from or use method: apt")
    d = cfg.data
    if d.shots is not None and d.shots < 1:
        fail("data.shots", f"data.shots must be at least 1 (or null for all), got {d.shots}",
             "use 5, 15 or null")
    for key, codes in (("data.train_locale", [d.train_locale]),
                       ("data.eval_locales", [] if d.eval_locales == "all" else d.eval_locales)):
        for code in codes:
            try:
                check_locale(code)
            except XsweepError as exc:  # a typo must not silently drop a language from a sweep
                fail(key, f"{key}: {exc.what}", exc.fix or "use a MASSIVE locale")
    if d.eval_locales != "all" and not d.eval_locales:
        fail("data.eval_locales", "data.eval_locales is empty", "list locales, e.g. [en-US, de-DE], or use all")
    if d.max_seq_len < 4:
        fail("data.max_seq_len", f"data.max_seq_len must be at least 4, got {d.max_seq_len}", "use e.g. 64")
    if d.dialogues_per_service is not None and d.dialogues_per_service < 1:
        fail("data.dialogues_per_service", f"data.dialogues_per_service must be at least 1 (or null for all), "
             f"got {d.dialogues_per_service}", "use 5 (the paper's SGD setting) or null")
    if d.dataset == "sgd":
        if cfg.head.kind != "nli":
            fail("head.kind", f"data.dataset sgd is the paper's NLI intent task, but head.kind is {cfg.head.kind!r}",
                 "set head.kind: nli")
        if d.shots is not None:
            fail("data.shots", "data.shots counts MASSIVE examples per intent; SGD samples dialogues per service",
                 "remove data.shots and set data.dialogues_per_service (5 in the paper, null for all)")
        if d.path == "massive":
            fail("data.path", "data.dataset is sgd but data.path names MASSIVE",
                 "use data.path: sgd (after `xsweep data download sgd`), demo, or an SGD folder")
    elif d.path == "sgd":
        fail("data.path", f"data.path sgd names SGD but data.dataset is {d.dataset!r}",
             "set data.dataset: sgd (with head.kind: nli), or point data.path at MASSIVE")
    if d.path not in NAMED_DATA and not Path(d.path).expanduser().exists() and Path(d.path).is_absolute():
        fail("data.path", f"data folder {d.path!r} does not exist",
             "point data.path at a MASSIVE folder of <locale>.jsonl files, or use `demo`")
    r = cfg.resources
    if r.num_workers != 1:
        fail("resources.num_workers", f"resources.num_workers is {r.num_workers}, but a downstream trial runs "
             "in one process", "leave it at 1; run more trials at once with sweep.max_concurrent_trials "
             "(data-parallel workers are for alignment: align.num_workers)")
    if r.cpus_per_trial <= 0 or r.gpus_per_trial < 0 or r.num_workers < 1:
        fail("resources", "resources need cpus_per_trial > 0, gpus_per_trial >= 0, num_workers >= 1",
             "e.g. cpus_per_trial: 1, gpus_per_trial: 0, num_workers: 1")
    _check_pruning(cfg, fail)  # before the grid: a grid value is checked on a config with these milestones
    s = cfg.sweep
    if not s.seeds:
        fail("sweep.seeds", "sweep.seeds is empty", "list at least one seed, e.g. [0, 1, 2, 3, 4]")
    if len(set(s.seeds)) != len(s.seeds):
        fail("sweep.seeds", f"sweep.seeds repeats a seed: {s.seeds}", "list each seed once")
    if s.max_concurrent_trials is not None and s.max_concurrent_trials < 1:
        fail("sweep.max_concurrent_trials", "sweep.max_concurrent_trials must be at least 1",
             "use a positive integer or null")
    if s.fuse < 1:
        fail("sweep.fuse", f"sweep.fuse must be at least 1, got {s.fuse}",
             "use 1 (each trial alone) or the number of trials to fuse, e.g. 4 on a GPU")
    # A grid that sets the method, head or data may make some groups fusable: those are fused at run time.
    grid_may_change = any(key.split(".")[0] in ("method", "head", "data") or any(isinstance(v, dict) for v in values)
                          for key, values in s.grid.items())
    if s.fuse > 1 and not can_fuse(cfg.method, cfg.head.kind, cfg.data.dataset) and not grid_may_change:
        fail("sweep.fuse", f"sweep.fuse {s.fuse} fuses PT/APT trials with the vanilla head on MASSIVE, but this "
             f"experiment is {cfg.method} with the {cfg.head.kind} head on {cfg.data.dataset}",
             "set sweep.fuse: 1")
    if s.fuse > 1 and s.pruning.milestones:
        fail("sweep.fuse", "sweep.fuse and sweep.pruning cannot be combined: a fused run keeps no checkpoint, so "
             "its trials cannot pause at a pruning milestone and go on later",
             "set sweep.fuse: 1 to prune, or sweep.pruning.milestones: [] to fuse")
    if s.search == "optuna":  # before the grid: a grid value is checked on a config with these settings
        _check_optuna(cfg, fail)
    for key, values in s.grid.items() if check_grid else ():
        gkey = f"sweep.grid.{key}"
        for value in values:
            for dotted in _axis_value(key, value):
                if dotted in ("seed", "sweep") or dotted.startswith("sweep."):
                    fail(gkey, f"{dotted!r} cannot be a grid key", "list seeds in sweep.seeds instead")
        if not values:
            fail(gkey, f"sweep grid {key!r} has no values", "list at least one value")
        bundles = [isinstance(value, dict) for value in values]
        if any(bundles) and not all(bundles):
            fail(gkey, f"sweep grid {key!r} mixes mappings and plain values",
                 "make every value a mapping of keys set together, or none")
        for value in values:
            # Each grid value must make a valid config on its own (types and combinations).
            probe = to_dict(cfg)
            probe["sweep"]["grid"] = {}
            try:
                for dotted, item in _axis_value(key, value).items():
                    set_dotted(probe, dotted, item, where=gkey)
                from_dict(probe, source=source)
            except XsweepError as exc:
                fail(gkey, f"sweep grid value {key}={value!r} is invalid: {exc.what}",
                     exc.fix or "fix the grid value")
    if s.budget_device_hours is not None and not s.budget_device_hours > 0:
        fail("sweep.budget_device_hours", f"sweep.budget_device_hours must be positive, got {s.budget_device_hours}",
             "give the device-hours the sweep may spend, e.g. 10, or null for no cap")


def _check_pruning(cfg: ExperimentConfig, fail: Callable[[str, str, str], None]) -> None:
    p, o = cfg.sweep.pruning, cfg.optim
    if not 0 < p.keep < 1:
        fail("sweep.pruning.keep", f"sweep.pruning.keep must be a fraction in (0, 1), got {p.keep}",
             "keep e.g. 0.5 (half of a group's learning rates go on at each milestone)")
    if not p.milestones:
        return
    if cfg.sweep.search == "optuna":
        fail("sweep.pruning", "sweep.pruning compares the learning rates of a grid, but sweep.search is optuna "
             "(it suggests its points a few at a time)", "set sweep.pruning.milestones: [] or sweep.search: grid")
    for before, epoch in zip([0, *p.milestones], p.milestones):
        if epoch <= before:
            fail("sweep.pruning.milestones", f"sweep.pruning.milestones must be increasing positive epochs, "
                 f"got {p.milestones}", "list epochs in increasing order, e.g. [10, 50]")
        if epoch % o.eval_every_epochs:
            fail("sweep.pruning.milestones", f"milestone {epoch} is not an epoch where English dev is evaluated "
                 f"(every {o.eval_every_epochs})", f"use multiples of optim.eval_every_epochs ({o.eval_every_epochs})")
        if epoch >= o.epochs:
            fail("sweep.pruning.milestones", f"milestone {epoch} is not below optim.epochs ({o.epochs}): the "
                 "trials would have ended", f"use epochs below {o.epochs}, or remove the milestone")


def _check_align_data(cfg: ExperimentConfig, fail: Callable[[str, str, str], None], *, check_grid: bool) -> None:
    """The alignment corpus: its size bound, its languages, and grids that vary it."""
    from xsweep.languages import resolve_tatoeba_targets, resolve_xsgd_targets

    a = cfg.align
    if a.max_pairs is not None and a.max_pairs < 2:
        fail("align.max_pairs", f"align.max_pairs must be at least 2 (or null for all the data), got {a.max_pairs}",
             "the contrastive loss needs in-batch negatives: use e.g. 10000, or null")
    if a.targets != "all":
        if not a.targets:
            fail("align.targets", "align.targets is empty", "list languages, e.g. [de-DE, fr-FR], or use all")
        resolve = {"xsgd": resolve_xsgd_targets, "demo": resolve_xsgd_targets,
                   "tatoeba": lambda targets: resolve_tatoeba_targets(targets, ())}.get(a.data)
        try:  # a folder's layout is known only when it is read; named data is checked now
            if resolve:
                resolve(a.targets)
        except XsweepError as exc:
            fail("align.targets", f"align.targets for align.data {a.data}: {exc.what}", exc.fix or "fix the language")
    if a.data == "tatoeba" and a.retrieval == "tatoeba":
        fail("align.retrieval", "align.data and align.retrieval are both Tatoeba: the prompts would be scored on "
             "the sentences they were aligned on", "align on other data (xsgd, a .tsv), or remove align.retrieval")
    if cfg.sweep.search == "optuna" and any(k == "align" or k.startswith("align.") for k in cfg.sweep.optuna.space):
        fail("sweep.optuna.space", "align settings cannot be searched by Optuna: each value needs an alignment run "
             "of its own, planned before the trials", "list them in sweep.grid instead, e.g. "
             "variant: [{method: apt, align.data: xsgd}, {method: apt, align.data: tatoeba}]")
    if not check_grid:
        return
    # Only APT trials read the align section (the sweep drops it from the others): grid points that
    # differ in align keys alone give the other methods the same trial twice.
    seen: dict[str, dict[str, Any]] = {}
    for point in grid_points(cfg):
        method = point.get("method", cfg.method)
        rest = {k: v for k, v in point.items() if k != "align" and not k.startswith("align.")}
        if method == "apt":
            continue
        key = repr(sorted(rest.items()))
        if key in seen and seen[key] != point:
            axis = next(k for k, values in cfg.sweep.grid.items()
                        if any(d == "align" or d.startswith("align.") for v in values for d in _axis_value(k, v)))
            fail(f"sweep.grid.{axis}", f"the grid points {seen[key]} and {point} differ only in align keys, which "
                 f"only APT trials use: their {method} trials would run twice",
                 "set the align keys together with method apt in one axis, e.g. "
                 "variant: [{method: pt}, {method: apt, align.data: xsgd}, {method: apt, align.data: tatoeba}]")
        seen[key] = point


def _check_optuna(cfg: ExperimentConfig, fail: Callable[[str, str, str], None]) -> None:
    o = cfg.sweep.optuna
    if o.trials < 1 or o.parallel < 1:
        fail("sweep.optuna", "sweep.optuna.trials and .parallel must be at least 1", "e.g. trials: 20, parallel: 4")
    if not o.space:
        fail("sweep.optuna.space", "search is optuna but sweep.optuna.space is empty",
             "give ranges, e.g. space: {optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}}")
    for key, spec in o.space.items():
        where = f"sweep.optuna.space.{key}"
        if key in cfg.sweep.grid:
            fail(where, f"{key!r} is both searched by Optuna and listed in sweep.grid",
                 f"remove {key} from sweep.grid (write `grid: {{}}` for no grid axes)")
        if key == "seed" or key.startswith("sweep."):
            fail(where, f"{key!r} cannot be searched", "list seeds in sweep.seeds instead")
        allowed = {"choices"} if "choices" in spec else {"low", "high", "log", "int"}
        unknown = set(spec) - allowed
        if unknown or ("choices" not in spec and not {"low", "high"} <= set(spec)):
            fail(where, f"range {spec!r} is neither {{low, high[, log, int]}} nor {{choices}}",
                 "write {low: 1.0e-4, high: 1.0e-1, log: true} or {choices: [1, 8, 16]}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                fail(where, "choices must be a non-empty list", "e.g. choices: [1, 8, 16]")
            samples = spec["choices"]
        else:
            ok_low, low = _try_coerce(spec["low"], float)
            ok_high, high = _try_coerce(spec["high"], float)
            if not (ok_low and ok_high) or not low < high or (spec.get("log") and low <= 0):
                fail(where, f"range needs numbers low < high (and low > 0 with log); got {spec!r}",
                     "e.g. {low: 1.0e-4, high: 1.0e-1, log: true}")
            samples = [int(low), int(high)] if spec.get("int") else [low, high]
        for value in samples:
            probe = to_dict(cfg)
            probe["sweep"] = {}
            try:
                set_dotted(probe, key, value, where=where)
                from_dict(probe, source="optuna space")
            except XsweepError as exc:
                fail(where, f"searching {key} gives an invalid config at {value!r}: {exc.what}",
                     exc.fix or "fix the range")
    if cfg.align.data and any(key.startswith("prompt.") for key in o.space):
        fail("sweep.optuna.space", "an experiment with an alignment stage cannot search prompt settings: "
             "each would need its own alignment run", "list prompt settings in sweep.grid instead")


def _resolve_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Relative data and prompt paths are relative to the config file; check they exist."""
    if cfg.data.path not in NAMED_DATA:
        data_path = Path(cfg.data.path).expanduser()
        if not data_path.is_absolute():
            data_path = (base / data_path).resolve()
        if not data_path.exists():
            raise XsweepError(f"data folder {str(data_path)!r} does not exist", where="data.path",
                              fix="point data.path at a MASSIVE folder of <locale>.jsonl files "
                                  "(relative to the config file), or use `demo`")
        cfg.data.path = str(data_path)
    if cfg.align.retrieval == "tatoeba":
        from xsweep.paths import data_root

        cfg.align.retrieval = str(data_root() / "tatoeba")  # found, or explained, when the stage runs
    elif cfg.align.retrieval and cfg.align.retrieval != "demo":
        folder = Path(cfg.align.retrieval).expanduser()
        folder = folder if folder.is_absolute() else (base / folder).resolve()
        if not folder.exists():
            raise XsweepError(f"Tatoeba folder {str(folder)!r} does not exist", where="align.retrieval",
                              fix="point align.retrieval at a folder of tatoeba.<iso3>-eng.* files, use "
                                  "`tatoeba` after `xsweep data download tatoeba`, or `demo`")
        cfg.align.retrieval = str(folder)
    cfg.align.data = _resolve_align_data(cfg.align.data, base, "align.data")
    for key, values in cfg.sweep.grid.items():  # a grid comparing corpora names them as the section would
        for i, value in enumerate(values):
            if key == "align.data":
                values[i] = _resolve_align_data(value, base, f"sweep.grid.{key}")
            elif isinstance(value, dict) and "align.data" in value:
                value["align.data"] = _resolve_align_data(value["align.data"], base, f"sweep.grid.{key}")
    if cfg.prompt.init_from:
        init = Path(cfg.prompt.init_from).expanduser()
        cfg.prompt.init_from = str(init if init.is_absolute() else (base / init).resolve())
    return cfg


def _resolve_align_data(value: str | None, base: Path, where: str) -> str | None:
    """Named alignment data as it is; a path made absolute (relative to the config file), and checked."""
    if not value or value in NAMED_ALIGN_DATA or "://" in value:
        return value
    align_path = Path(value).expanduser()
    if not align_path.is_absolute():
        align_path = (base / align_path).resolve()
    if not align_path.exists():
        raise XsweepError(f"alignment data {str(align_path)!r} does not exist", where=where,
                          fix="point align.data at an XSGD-layout folder, a folder of tatoeba.<iso3>-eng.* files "
                              "or a .tsv file of parallel lines (relative to the config file), or use "
                              f"{', '.join(NAMED_ALIGN_DATA)}")
    return str(align_path)


def grid_points(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """The cross product of the sweep grid, in file order: a list of {dotted key: value}."""
    points: list[dict[str, Any]] = [{}]
    for key, values in cfg.sweep.grid.items():
        points = [{**point, **_axis_value(key, value)} for point in points for value in values]
    return points


def _axis_value(key: str, value: Any) -> dict[str, Any]:
    """The dotted keys one grid value sets: itself, or a mapping's keys set together."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    return {key: value}
