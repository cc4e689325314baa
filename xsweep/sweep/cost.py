"""What a sweep will cost, before it runs: trials, examples, FLOPs and device-hours.

`xsweep run CONFIG --dry-run` prints this under the plan. Everything is counted from the config and
from the size of the data and the backbone, without downloading either:

- data: MASSIVE 1.1 (`data.path: massive`) from its published split sizes (below); a folder of
  MASSIVE-format files (or the demo data, once generated) by reading it;
- backbone: a table of known encoders (XLM-R base/large/XL, all-MiniLM-L6-v2), the built-in
  models' specs, the `config.json` of a local folder, or that of a hub id in the Hugging Face
  cache (`huggingface_hub.try_to_load_from_cache`); any other backbone gets no FLOPs.

Counts are upper bounds: every trial is counted for all `optim.epochs` (early stopping usually ends
it much sooner) and for every dev evaluation those epochs allow. FLOPs are the usual estimate for a
transformer encoder, forward = 2 x non-embedding parameters x tokens + attention scores
4 x layers x hidden x T x (T + layer-prompt length); the backward pass of a frozen backbone (PT, APT)
computes activation gradients only, about 1x the forward, and fine-tuning also weight gradients,
about 2x; the head, the optimiser and padding are left out. Alignment stages are not projected.

Only measured figures turn FLOPs into time and memory:
- device-hours: `--throughput`, else a rate bench/bench_step.py stored for the same backbone width
  (hidden, intermediate), precision and device kind as the trials': a trial runs on `cuda` when
  `resources.gpus_per_trial > 0`, else on `cpu`, in `optim.precision` resolved as
  models/precision.py does (`auto`: fp32 on CPU; on a GPU bf16, assumed, since no GPU is queried);
- expected figures (`--like RUN_DIR`): the share of `optim.epochs` that the finished trials of a
  run actually trained before early stopping, by method;
- trials per GPU (`--gpu-check FILE`): the peak memory of one trial that bench/gpu_check.py
  measured on a GPU, for the same backbone shape and precision.
Anything not measured is printed as "not measured", with the command that measures it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xsweep.config import ExperimentConfig, grid_points, to_dict, with_overrides
from xsweep.paths import cache_dir
from xsweep.record import group_of

# MASSIVE 1.1, en-US (the training locale of every paper table), counted from the release.
# Every one of its 52 locales is a translation of the same utterances: the same split sizes.
MASSIVE_TRAIN_PER_INTENT = (
    4, 14, 18, 22, 25, 48, 51, 52, 52, 52, 54, 70, 72, 76, 76, 78, 78, 93, 100, 108, 110, 110, 112, 113, 117,
    122, 124, 125, 127, 127, 130, 135, 142, 150, 152, 153, 154, 164, 173, 177, 182, 190, 193, 198, 207, 227,
    267, 283, 283, 312, 350, 354, 418, 503, 544, 555, 566, 573, 639, 810)
"""Training utterances of each of the 60 intents of en-US (sorted); they sum to 11,514."""
MASSIVE_DEV, MASSIVE_TEST = 2033, 2974
"""Utterances of dev and of test, the same in every locale (xsweep.languages.MASSIVE_LOCALES: 52)."""
MEAN_UTTERANCE_TOKENS = 10.0
"""en-US utterances average 9.5 tokens with specials (measured with all-MiniLM-L6-v2's WordPiece);
XLM-R's SentencePiece splits English about as finely. Other scripts run longer: a low estimate."""
MEAN_HYPOTHESIS_TOKENS = 6.0
"""An NLI pair adds the intent name (3.9 tokens on average: `alarm set`) and the separators."""

# name -> (layers, hidden, intermediate, vocabulary, max positions)
KNOWN_BACKBONES = {
    "xlm-roberta-base": (12, 768, 3072, 250002, 514),
    "xlm-roberta-large": (24, 1024, 4096, 250002, 514),
    "facebook/xlm-roberta-xl": (36, 2560, 10240, 250880, 514),
    "sentence-transformers/all-minilm-l6-v2": (6, 384, 1536, 30522, 512),
}
THROUGHPUT_FILE = "throughput.json"
"""Written into xsweep's cache (`$XSWEEP_CACHE`) by bench/bench_step.py: `{"measurements": [...]}`,
one FLOP/s figure per (backbone width, precision, device) measured on this machine."""
BENCH_STEP = "python -m bench.bench_step"
GPU_CHECK = "python -m bench.gpu_check"


@dataclass(frozen=True)
class BackboneSize:
    name: str
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    positions: int

    @property
    def layer_params(self) -> int:
        """Parameters of the transformer layers: attention (4 H^2 + 4 H), feed-forward (2 H I + I + H),
        two layer norms (4 H)."""
        h, i = self.hidden, self.intermediate
        return self.layers * (4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h)

    @property
    def embedding_params(self) -> int:
        return (self.vocab + self.positions + 1) * self.hidden + 2 * self.hidden

    def forward_flops(self, tokens: float, layer_prefix: int = 0) -> float:
        """FLOPs of one forward of a sequence of `tokens` tokens: every weight matrix once per token
        (multiply and add), plus attention scores and their weighted sum over T + prefix keys."""
        return 2 * self.layer_params * tokens + 4 * self.layers * self.hidden * tokens * (tokens + layer_prefix)


@dataclass(frozen=True)
class DataSize:
    source: str
    train_per_intent: tuple[int, ...]
    dev: int
    test: dict[str, int]
    """Test utterances of each evaluated locale."""
    mean_tokens: float

    @property
    def intents(self) -> int:
        return len(self.train_per_intent)

    def train(self, shots: int | None) -> int:
        """Training utterances of a sample of `shots` per intent (all when None), as fewshot samples."""
        return sum(self.train_per_intent if shots is None else (min(n, shots) for n in self.train_per_intent))


@dataclass
class Projection:
    trials: int = 0
    trials_by_method: dict[str, int] = field(default_factory=dict)
    tested_trials: int = 0
    train_examples: int = 0
    train_sequences: int = 0
    steps: int = 0
    dev_evaluations: int = 0
    dev_sequences: int = 0
    test_sequences: int = 0
    train_flops: float = 0.0
    dev_flops: float = 0.0
    test_flops: float = 0.0
    flops_by_kind: dict[tuple[str, str, str], list[float]] = field(default_factory=dict)
    """(method, device, precision) -> [training + dev FLOPs, test FLOPs] of those trials: early
    stopping shortens the first, a rate per device and precision times both."""

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.dev_flops + self.test_flops


def compute_kind(trial: ExperimentConfig) -> tuple[str, str]:
    """(device, precision) a trial computes in: `cuda` when it asks for GPUs, else `cpu`; the
    precision as models/precision.py resolves it there, except that `auto` on a GPU is taken as bf16
    (what a bf16-capable GPU resolves it to; no GPU is queried by a dry run)."""
    import torch

    from xsweep.models.precision import resolve_precision

    device = "cuda" if trial.resources.gpus_per_trial > 0 else "cpu"
    if device == "cuda" and trial.optim.precision == "auto":
        return device, "bf16"
    return device, resolve_precision(trial.optim.precision, torch.device(device))


# ---------------------------------------------------------------------------------------------
# Sizes, without downloading anything


def backbone_size(name: str) -> BackboneSize | None:
    """The size of a known, built-in, local or Hugging Face-cached backbone; None when it cannot be
    known offline."""
    if name.startswith("builtin:"):
        from xsweep.sweep.prepare import BUILTIN_SPECS

        spec = BUILTIN_SPECS.get(name[len("builtin:"):])
        if spec is None:
            return None
        from xsweep.models.builtin import MAX_POSITIONS

        return BackboneSize(name, spec["layers"], spec["hidden"], 4 * spec["hidden"], 4000, MAX_POSITIONS)
    known = KNOWN_BACKBONES.get(name.lower()) or KNOWN_BACKBONES.get(f"sentence-transformers/{name.lower()}")
    if known is not None:
        return BackboneSize(name, *known)
    config = Path(name).expanduser() / "config.json"
    if config.is_file():
        return _size_from_config(name, config)
    cached = _hub_cached_config(name)
    return None if cached is None else _size_from_config(name, cached)


def _hub_cached_config(repo_id: str) -> Path | None:
    """`config.json` of a hub model already in the Hugging Face cache (nothing downloaded), or None."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except HFValidationError:  # not a hub id (a path, a typo with spaces): nothing to look up
        return None
    return Path(found) if isinstance(found, str) else None


def _size_from_config(name: str, config: Path) -> BackboneSize | None:
    c = json.loads(config.read_text(encoding="utf-8"))
    try:
        return BackboneSize(name, c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"],
                            c["vocab_size"], c.get("max_position_embeddings", 512))
    except KeyError:
        return None


def data_size(cfg: ExperimentConfig) -> DataSize | None:
    """Split sizes of the experiment's data; None for data that is not on disk and not MASSIVE 1.1."""
    if cfg.data.dataset != "massive":
        return None
    if cfg.data.path == "massive":
        from xsweep.languages import MASSIVE_LOCALES as LOCALES

        wanted = sorted(LOCALES) if cfg.data.eval_locales == "all" else list(cfg.data.eval_locales)
        return DataSize("MASSIVE 1.1 split sizes (published)", MASSIVE_TRAIN_PER_INTENT, MASSIVE_DEV,
                        {loc: MASSIVE_TEST for loc in wanted}, MEAN_UTTERANCE_TOKENS)
    if cfg.data.path == "demo":
        from xsweep.sweep.prepare import DEMO_SEED

        folder = cache_dir() / "demo-data" / f"seed{DEMO_SEED}" / "massive" / "1.1" / "data"
        if not folder.is_dir():
            return None  # generated by the first real run; a dry run writes nothing
        return _count_files(folder, cfg)
    folder = Path(cfg.data.path)
    return _count_files(folder, cfg) if folder.exists() else None


def _count_files(folder: Path, cfg: ExperimentConfig) -> DataSize:
    from collections import Counter

    from xsweep.data.massive import available_locales, read_massive

    train = read_massive(folder, cfg.data.train_locale, ["train"])
    dev = read_massive(folder, cfg.data.train_locale, ["dev"])
    locales = available_locales(folder) if cfg.data.eval_locales == "all" else list(cfg.data.eval_locales)
    test = {loc: len(read_massive(folder, loc, ["test"])) for loc in locales}
    # About 1.1 sub-word tokens a word on MASSIVE en-US, plus <s> and </s>.
    words = sum(len(row.utt.split()) for row in train) / len(train)
    per_intent = tuple(sorted(Counter(row.intent for row in train).values()))
    return DataSize(f"counted in {folder}", per_intent, len(dev), test, 1.1 * words + 2)


# ---------------------------------------------------------------------------------------------
# The projection


def project(cfg: ExperimentConfig, data: DataSize, backbone: BackboneSize | None) -> Projection:
    """Upper bounds of the work every trial of `cfg`'s grid implies (see the module docstring)."""
    from xsweep.sweep.evaluation import tests_inside_trial

    out = Projection()
    seeds = len(cfg.sweep.seeds)
    repeats = cfg.sweep.optuna.trials if cfg.sweep.search == "optuna" else 1
    selected_groups: set[str] = set()
    for point in grid_points(cfg):
        trial = with_overrides(cfg, point)
        trials = seeds * repeats
        out.trials += trials
        out.trials_by_method[trial.method] = out.trials_by_method.get(trial.method, 0) + trials
        nli = trial.head.kind == "nli"
        examples = data.train(trial.data.shots)
        epochs, every = trial.optim.epochs, trial.optim.eval_every_epochs
        evaluations = epochs // every + (1 if epochs % every else 0)  # the last epoch always evaluates
        out.train_examples += trials * examples * epochs
        out.train_sequences += trials * examples * epochs * (2 if nli else 1)  # a positive and a negative
        out.steps += trials * math.ceil(examples / trial.optim.batch_size) * epochs
        out.dev_evaluations += trials * evaluations
        per_candidate = data.intents if nli else 1
        dev_sequences = trials * evaluations * data.dev * per_candidate
        out.dev_sequences += dev_sequences
        if tests_inside_trial(cfg, trial.method):
            tested = trials
        else:
            # The evaluation stage tests one learning rate per group (all lrs of a group share its
            # key): that rate's seeds; an Optuna study likewise tests its best point's seeds.
            key, _ = group_of(to_dict(trial))
            tested = 0 if key in selected_groups else seeds
            selected_groups.add(key)
        out.tested_trials += tested
        test_sequences = tested * sum(data.test.values()) * per_candidate
        out.test_sequences += test_sequences
        if backbone is not None:
            tokens = data.mean_tokens + (MEAN_HYPOTHESIS_TOKENS if nli else 0)
            tokens += trial.prompt.length if trial.prompt.kind == "input" else 0
            prefix = trial.prompt.length if trial.prompt.kind == "layer" else 0
            forward = backbone.forward_flops(tokens, prefix)
            if trial.method == "ft":
                backward = 2 * forward  # activation and weight gradients
            elif trial.prompt.kind == "none":
                backward = 0.0  # a linear probe: gradients stop at the head
            else:
                backward = forward  # activation gradients through the frozen layers, to the prompt
            train_flops = trials * examples * epochs * (2 if nli else 1) * (forward + backward)
            out.train_flops += train_flops
            out.dev_flops += dev_sequences * forward
            out.test_flops += test_sequences * forward
            kind = out.flops_by_kind.setdefault((trial.method, *compute_kind(trial)), [0.0, 0.0])
            kind[0] += train_flops + dev_sequences * forward
            kind[1] += test_sequences * forward
    return out


# ---------------------------------------------------------------------------------------------
# Throughput and the printed summary

_SI = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_THROUGHPUT = re.compile(r"^\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)\s*([kKMGTP]?)\s*(flop/s|flops|tok/s|tokens/s)?\s*$",
                         re.IGNORECASE)


def parse_throughput(text: str) -> tuple[float, str]:
    """`1e14`, `100T`, `100TFLOP/s` -> (FLOP/s, "flop/s"); `5000tok/s`, `5k tok/s` -> (tokens/s, "tok/s")."""
    from xsweep.errors import XsweepError

    match = _THROUGHPUT.match(text)
    if not match or float(match.group(1)) <= 0:
        raise XsweepError(f"cannot read the throughput {text!r}", where="--throughput",
                          fix="give FLOP/s (`1e14`, `100T`, `100TFLOP/s`) or forward tokens/s (`5000tok/s`)")
    unit = (match.group(3) or "flop/s").lower()
    return float(match.group(1)) * _SI[match.group(2)], "tok/s" if unit.startswith("tok") else "flop/s"


def stored_measurements() -> list[dict[str, Any]]:
    """The FLOP/s figures bench/bench_step.py stored on this machine, each naming what it measured:
    `backbone_name`, its `hidden` and `intermediate` widths, `precision`, `device`. A file written
    before measurements said so (one `flop_per_s` at its top) is read as what bench_step then
    measured, fp32 on the CPU, of the backbone it names (minilm when none), marked `legacy`."""
    path = cache_dir() / THROUGHPUT_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(stored, dict):
        return []
    if "measurements" in stored:
        entries = [m for m in stored["measurements"] if isinstance(m, dict)]
    else:
        arg = str(stored.get("backbone", "minilm"))
        name = "all-MiniLM-L6-v2" if arg == "minilm" else arg
        size = backbone_size(name)
        entries = [{**stored, "backbone_name": name, "hidden": size and size.hidden,
                    "intermediate": size and size.intermediate, "precision": "fp32", "device": "cpu", "legacy": True}]
    return [m for m in entries if isinstance(m.get("flop_per_s"), (int, float)) and m["flop_per_s"] > 0]


def store_measurement(measurement: dict[str, Any]) -> Path:
    """Add a measurement to THROUGHPUT_FILE, replacing the one of the same width, precision and
    device (bench/bench_step.py calls this); an older file's single figure is kept as an entry."""
    from xsweep.atomic import write_json

    def key(m: dict[str, Any]) -> tuple:
        return m.get("hidden"), m.get("intermediate"), m.get("precision"), m.get("device")

    missing = [k for k in ("flop_per_s", "backbone_name", "hidden", "intermediate", "precision", "device")
               if measurement.get(k) is None]
    if missing:
        raise ValueError(f"a throughput measurement must say {missing}")
    kept = [m for m in stored_measurements() if key(m) != key(measurement)]
    path = cache_dir() / THROUGHPUT_FILE
    write_json(path, {"measurements": [*kept, measurement]})
    return path


def matching_measurement(backbone: BackboneSize, device: str, precision: str) -> dict[str, Any] | None:
    """The stored rate measured on `device` in `precision` for a backbone of this one's widths (the
    matrices a FLOP/s rate depends on: hidden and feed-forward; depth only repeats them), or None."""
    return next((m for m in reversed(stored_measurements())
                 if (m.get("device"), m.get("precision"), m.get("hidden"), m.get("intermediate"))
                 == (device, precision, backbone.hidden, backbone.intermediate)), None)


def describe_measurement(m: dict[str, Any]) -> str:
    legacy = "; a file older than precision and device in it, read as fp32 on CPU" if m.get("legacy") else ""
    return (f"{m['flop_per_s']:.2e} FLOP/s measured for {m.get('backbone_name', '?')} (hidden {m.get('hidden')}, "
            f"FFN {m.get('intermediate')}), {m.get('precision')} on {m.get('device')}, "
            f"{m.get('machine', 'this machine')}, {m.get('date', '?')} (bench/bench_step.py{legacy})")


def _device_words(device: str, precision: str, precision_setting: str) -> str:
    if device == "cpu":
        return f"{precision} on CPU (resources.gpus_per_trial 0)"
    assumed = (" (optim.precision auto: taken as bf16, what a bf16-capable GPU resolves it to; a dry run "
               "queries no GPU)") if precision_setting == "auto" and precision == "bf16" else ""
    return f"{precision} on a GPU (resources.gpus_per_trial > 0){assumed}"


def rates(p: Projection, backbone: BackboneSize, data: DataSize, throughput: str | None
          ) -> tuple[dict[tuple[str, str], tuple[float, str]], list[tuple[str, str]]]:
    """FLOP/s and how it was known for every (device, precision) the trials compute in, and the
    kinds no measurement matches. `--throughput` applies to every kind."""
    kinds = sorted({(device, precision) for _, device, precision in p.flops_by_kind})
    if throughput is not None:
        rate, unit = parse_throughput(throughput)
        if unit == "tok/s":
            rate_flops = rate * backbone.forward_flops(data.mean_tokens) / data.mean_tokens
            said = f"{rate:,.0f} forward tokens/s (--throughput) = {rate_flops:.2e} FLOP/s"
        else:
            rate_flops, said = rate, f"{rate:.2e} FLOP/s (--throughput)"
        return {kind: (rate_flops, said) for kind in kinds}, []
    found, missing = {}, []
    for kind in kinds:
        m = matching_measurement(backbone, *kind)
        if m is None:
            missing.append(kind)
        else:
            found[kind] = (float(m["flop_per_s"]), describe_measurement(m) + "; --throughput overrides")
    return found, missing


def hours_at(p: Projection, found: dict[tuple[str, str], tuple[float, str]],
           fraction: dict[str, float] | None = None) -> float:
    """Device-hours of the projection, training and dev scaled by `fraction[method]` when given."""
    return sum(((fraction[method] if fraction else 1.0) * train_dev + test) / found[(device, precision)][0]
               for (method, device, precision), (train_dev, test) in p.flops_by_kind.items()) / 3600


def describe_cost(cfg: ExperimentConfig, throughput: str | None = None) -> list[str]:
    """The lines `--dry-run` prints under the plan."""
    data = data_size(cfg)
    if data is None:
        return ["cost projection: skipped, the data's size is unknown without reading it "
                f"(data.dataset {cfg.data.dataset}, data.path {cfg.data.path}: "
                "MASSIVE 1.1 or a MASSIVE-format folder on disk is projected)"]
    backbone = backbone_size(cfg.backbone.name)
    p = project(cfg, data, backbone)
    methods = ", ".join(f"{m} {n:,}" for m, n in p.trials_by_method.items())
    where = ("every trial tests itself" if cfg.sweep.evaluate == "all" else
             "FT trials test themselves; PT/APT only the selected learning rate's seeds (sweep.evaluate: selected)")
    nli = cfg.head.kind == "nli" or any(with_overrides(cfg, pt).head.kind == "nli" for pt in grid_points(cfg))
    pairs = f" (NLI: x{data.intents} intents a sequence)" if nli else ""
    lines = [
        "cost projection (upper bounds: every trial counted for all optim.epochs and every dev evaluation they "
        "allow; early stopping usually ends trials much sooner, see --like; alignment stages not included)",
        f"  data: {data.source}; {data.intents} intents, dev {data.dev:,}, test {len(data.test)} locale(s), "
        f"{sum(data.test.values()):,} utterances",
        f"  trials: {p.trials:,} ({methods})" + (f", {cfg.sweep.optuna.trials} Optuna points per grid point"
                                                if cfg.sweep.search == "optuna" else ""),
        f"  training: at most {p.train_examples:,} examples ({p.train_sequences:,} sequences), {p.steps:,} steps",
        f"  English dev: at most {p.dev_evaluations:,} evaluations, {p.dev_sequences:,} sequences{pairs}",
        f"  test: {p.tested_trials:,} trials x {len(data.test)} locale(s) = {p.test_sequences:,} sequences ({where})",
    ]
    if backbone is None:
        lines.append(f"  FLOPs: skipped, backbone {cfg.backbone.name!r} has no known size (known: built-ins, "
                     "XLM-R base/large/XL, MiniLM, a local folder with config.json, or a hub id in the Hugging "
                     "Face cache)")
        return lines
    pair_tokens = f", +{MEAN_HYPOTHESIS_TOKENS:.0f} an NLI pair" if nli else ""
    lines += [
        f"  FLOPs ({backbone.name}: {backbone.layers} layers, hidden {backbone.hidden}, "
        f"{backbone.layer_params / 1e6:,.0f}M layer + {backbone.embedding_params / 1e6:,.0f}M embedding parameters; "
        f"{data.mean_tokens:.1f} tokens an utterance{pair_tokens}): training {p.train_flops:.2e}, dev {p.dev_flops:.2e}, "
        f"test {p.test_flops:.2e}, total {p.total_flops:.2e}",
        "    forward ~ 2 x layer parameters x tokens + 4 x layers x hidden x T x (T + layer prompt); backward "
        "~ 1x forward with a frozen backbone (activation gradients), 2x for FT; head, optimiser, padding left out",
    ]
    lines += ["  " + line for line in device_hours(cfg, p, backbone, data, throughput)]
    return lines


def device_hours(cfg: ExperimentConfig, p: Projection, backbone: BackboneSize, data: DataSize,
                 throughput: str | None) -> list[str]:
    """The upper bound in device-hours at measured rates, or which measurement is missing and how to make it."""
    found, missing = rates(p, backbone, data, throughput)
    if not missing:
        said = "; ".join(dict.fromkeys(said for _, said in found.values()))
        return [f"device-hours: at most {hours_at(p, found):,.1f} at {said}"]
    stored = stored_measurements()
    lines = []
    for device, precision in missing:
        fix = (f"`{BENCH_STEP} --backbone {cfg.backbone.name}` measures it on this CPU, or pass --throughput "
               "RATE" if device == "cpu" else f"bench_step measures CPUs only: run `{GPU_CHECK} --out DIR` on the "
               f"GPU and pass its {precision} training TFLOP/s as --throughput <N>T")
        lines.append(f"device-hours: not measured for {backbone.name} (hidden {backbone.hidden}, FFN "
                     f"{backbone.intermediate}) at {_device_words(device, precision, cfg.optim.precision)}; {fix}")
    lines.append("  stored measurements: " + ("; ".join(describe_measurement(m) for m in stored) if stored else
                                              f"none ({cache_dir() / THROUGHPUT_FILE})"))
    return lines


# ---------------------------------------------------------------------------------------------
# From measurement: early stopping of an earlier run, memory of one trial on a GPU


@dataclass(frozen=True)
class EarlyStopping:
    """How much of `optim.epochs` the finished trials of a run trained."""

    run_dir: Path
    fraction_by_method: dict[str, float]
    """Method -> mean over its finished trials of epochs trained / optim.epochs."""
    records_by_method: dict[str, int]
    fraction: float
    """The mean over all finished trials, for methods the run did not have."""
    left_out: int
    """Records of trials that had not finished (running, paused, failed, diverged, ...)."""
    precisions: tuple[str, ...]


def epochs_trained(record: Any) -> int | None:
    """Epochs a finished trial trained: its last dev evaluation (training stops right after one), or,
    without a dev history, its best epoch + patience x eval_every_epochs, at most optim.epochs."""
    if record.dev_history:
        return max(point.epoch for point in record.dev_history)
    if record.best_epoch is None:
        return None
    optim = record.config.get("optim", {})
    return min(record.best_epoch + optim.get("patience", 5) * optim.get("eval_every_epochs", 1),
               optim.get("epochs", record.best_epoch))


def read_early_stopping(run_dir: Path) -> EarlyStopping:
    """The early stopping of the run in `run_dir`, from its trial records (`--like RUN_DIR`)."""
    from xsweep.errors import XsweepError
    from xsweep.record import RECORD_FILE, read_records

    run_dir = Path(run_dir)
    fix = "give a run directory of an earlier `xsweep run` (it holds trials/<id>/record.json), e.g. runs/<name>"
    if not run_dir.is_dir():
        raise XsweepError(f"run directory {str(run_dir)!r} does not exist", where="--like", fix=fix)
    records = read_records(run_dir)
    if not records:
        raise XsweepError(f"no trial records in {str(run_dir)!r} (no trials/*/{RECORD_FILE})", where="--like",
                          fix=fix)
    shares: dict[str, list[float]] = {}
    precisions = set()
    for record in records:
        epochs = record.config.get("optim", {}).get("epochs")
        trained = epochs_trained(record) if record.status == "completed" else None
        if trained is None or not epochs:
            continue
        shares.setdefault(record.config.get("method", "?"), []).append(min(trained / epochs, 1.0))
        precisions.add(record.precision or "fp32")
    if not shares:
        raise XsweepError(f"none of the {len(records)} trial records in {str(run_dir)!r} is of a finished trial "
                          "with its dev history and optim.epochs", where="--like",
                          fix="give a run whose trials finished (status completed), or finish it with --resume")
    every = [share for method in shares.values() for share in method]
    return EarlyStopping(run_dir, {m: sum(v) / len(v) for m, v in shares.items()},
                         {m: len(v) for m, v in shares.items()}, sum(every) / len(every),
                         len(records) - len(every), tuple(sorted(precisions)))


def describe_expected(cfg: ExperimentConfig, like: EarlyStopping, throughput: str | None = None) -> list[str]:
    """The expected figure next to the upper bound: training and dev scaled by the share of
    optim.epochs the trials of `like` trained, by method (test runs once a trial either way)."""
    data, backbone = data_size(cfg), backbone_size(cfg.backbone.name)
    per_method = ", ".join(f"{m} {f:.0%} over {like.records_by_method[m]}" for m, f in like.fraction_by_method.items())
    said = (f"expected, like {like.run_dir} ({sum(like.records_by_method.values())} finished trial records"
            + (f"; {like.left_out} unfinished left out" if like.left_out else "")
            + f"; {'/'.join(like.precisions)}): trials trained {per_method} of their optim.epochs; "
            f"other methods at the overall {like.fraction:.0%}")
    if data is None or backbone is None:
        return [f"  {said}; no FLOPs to scale (the data's or the backbone's size is unknown)"]
    p = project(cfg, data, backbone)
    fraction = {method: like.fraction_by_method.get(method, like.fraction) for method, _, _ in p.flops_by_kind}
    flops = sum(fraction[m] * train_dev + test for (m, _, _), (train_dev, test) in p.flops_by_kind.items())
    found, missing = rates(p, backbone, data, throughput)
    hours = (f"device-hours {hours_at(p, found, fraction):,.1f} (upper bound {hours_at(p, found):,.1f})" if not missing
             else "device-hours not measured (above)")
    return [f"  {said}",
            f"    training and dev scaled by it, test not: FLOPs {flops:.2e} (upper bound {p.total_flops:.2e}), {hours}"]


GPU_CHECK_KEYS = {"device": ("type", "name"), "shape": ("layers", "hidden", "intermediate", "vocab"),
                  "memory_per_trial": ("precision", "batch", "peak_mib")}
"""What the dry run reads of bench/gpu_check.py's gpu_check.json."""


def read_gpu_check(path: Path) -> dict[str, Any]:
    """bench/gpu_check.py's report (`--gpu-check FILE`), checked for the keys the dry run reads."""
    from xsweep.errors import XsweepError

    fix = f"give the gpu_check.json that `{GPU_CHECK} --out DIR` writes (DIR/gpu_check.json)"
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise XsweepError(f"cannot read {str(path)!r}: {exc.strerror or exc}", where="--gpu-check", fix=fix) from None
    except ValueError as exc:
        raise XsweepError(f"{str(path)!r} is not JSON: {exc}", where="--gpu-check", fix=fix) from None
    for section, keys in GPU_CHECK_KEYS.items():
        part = report.get(section) if isinstance(report, dict) else None
        absent = [f"{section}.{k}" for k in keys if not isinstance(part, dict) or k not in part]
        if absent:
            raise XsweepError(f"{str(path)!r} is not a gpu_check report: it lacks {', '.join(absent)}",
                              where="--gpu-check", fix=fix)
    return report


def _device_memory_mib(device: dict[str, Any]) -> tuple[float | None, str]:
    """The GPU's memory: the report's `memory_mib` where it gives one, else the size in the device's
    name (NVIDIA names most data-centre parts by it: "A100-SXM4-80GB", "H100 80GB HBM3")."""
    if isinstance(device.get("memory_mib"), (int, float)):
        return float(device["memory_mib"]), "measured by gpu_check"
    match = re.search(r"(\d+)\s*GB", str(device.get("name", "")))
    if match:
        return int(match.group(1)) * 1024.0, (f"{match.group(1)} GB from the device's name; gpu_check.json does not "
                                             "record the device's memory")
    return None, ""


def trials_per_gpu(cfg: ExperimentConfig, report: dict[str, Any] | None, source: str = "--gpu-check") -> list[str]:
    """How many trials fit on one GPU at each `resources.gpus_per_trial` of the grid, from the memory
    of one trial gpu_check measured; "not measured" with the reason and the fix otherwise."""
    shares = sorted({(trial.resources.gpus_per_trial, compute_kind(trial)[1])
                     for trial in (with_overrides(cfg, point) for point in grid_points(cfg))
                     if trial.resources.gpus_per_trial > 0})
    if not shares:
        return ["  trials per GPU: none asked for (resources.gpus_per_trial 0: the trials run on CPUs)"]
    if report is None:
        return [f"  trials per GPU: not measured (run `{GPU_CHECK} --out DIR` on the GPU, then add "
                "`--gpu-check DIR/gpu_check.json` to this dry run)"]
    device, shape, memory = report["device"], report["shape"], report["memory_per_trial"]
    per_trial = memory["peak_mib"]
    measured_on = f"{device['name']} ({device['type']}, {report.get('date', '?')})"
    backbone = backbone_size(cfg.backbone.name)
    ours = None if backbone is None else (backbone.layers, backbone.hidden, backbone.intermediate, backbone.vocab)
    theirs = (shape["layers"], shape["hidden"], shape["intermediate"], shape["vocab"])
    device_mib, device_said = _device_memory_mib(device)
    reason = None
    if device["type"] != "cuda" or not isinstance(per_trial, (int, float)):
        reason = f"{source} was measured on {measured_on}: memory per trial {per_trial}"
    elif ours != theirs:
        reason = (f"{source} measured a {theirs[0]}-layer encoder, hidden {theirs[1]}, FFN {theirs[2]}, vocabulary "
                  f"{theirs[3]}; backbone {cfg.backbone.name} is " + ("of unknown size" if ours is None else
                  f"{ours[0]} layers, hidden {ours[1]}, FFN {ours[2]}, vocabulary {ours[3]}"))
    elif device_mib is None:
        reason = f"{source} does not record the memory of {device['name']!r}, nor does its name give it"
    if reason:
        return [f"  trials per GPU: not measured ({reason}; run `{GPU_CHECK} --out DIR` on the GPU for this "
                "backbone, then --gpu-check DIR/gpu_check.json)"]
    lines = [f"  trials per GPU: one PT trial peaks at {per_trial:,.0f} MiB ({memory['precision']}, batch "
             f"{memory['batch']}, {shape['layers']}-layer encoder; {source}, {measured_on}); the GPU has "
             f"{device_mib:,.0f} MiB ({device_said}); this experiment trains at batch {cfg.optim.batch_size}"]
    for gpus, precision in shares:
        if precision != memory["precision"]:
            lines.append(f"    at resources.gpus_per_trial {gpus:g} ({precision}): not measured (memory was "
                         f"measured in {memory['precision']})")
            continue
        fit = math.floor(device_mib * gpus / per_trial)
        placed = f"Ray places {math.floor(1 / gpus)} trial(s) a GPU" if gpus <= 1 else f"a trial holds {gpus:g} GPUs"
        verdict = "fits" if fit >= 1 else "does not fit: raise resources.gpus_per_trial"
        lines.append(f"    at resources.gpus_per_trial {gpus:g}: {placed}; its share, {gpus:g} x {device_mib:,.0f} "
                     f"MiB, holds {fit} trial(s) of {per_trial:,.0f} MiB ({verdict})")
    return lines


def describe_measured(cfg: ExperimentConfig, like: EarlyStopping | None = None, gpu_check: dict | None = None,
                      throughput: str | None = None, gpu_check_source: str = "--gpu-check") -> list[str]:
    """The lines `--dry-run` prints after the upper bounds: the expected figure (with `--like`) and
    trials per GPU. Nothing for an experiment without downstream trials."""
    if not cfg.sweep.downstream:
        return []
    lines = describe_expected(cfg, like, throughput) if like is not None else []
    return lines + trials_per_gpu(cfg, gpu_check, gpu_check_source)


__all__ = ["BackboneSize", "DataSize", "EarlyStopping", "Projection", "backbone_size", "compute_kind",
           "data_size", "describe_cost", "describe_measured", "describe_measurement", "hours_at", "matching_measurement", "parse_throughput",
           "project", "rates", "read_early_stopping", "read_gpu_check", "store_measurement", "stored_measurements"]
