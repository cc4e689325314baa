"""What a sweep will cost, before it runs: trials, examples, FLOPs and device-hours.

`xsweep run CONFIG --dry-run` prints this under the plan. Everything is counted from the config and
from the size of the data and the backbone, without downloading either:

- data: MASSIVE 1.1 (`data.path: massive`) from its published split sizes (below); a folder of
  MASSIVE-format files (or the demo data, once generated) by reading it;
- backbone: a table of known encoders (XLM-R base/large/XL, all-MiniLM-L6-v2), the built-in
  models' specs, or the `config.json` of a local folder; any other backbone gets no FLOPs.

Counts are upper bounds: every trial is counted for all `optim.epochs` (early stopping usually ends
it much sooner) and for every dev evaluation those epochs allow. FLOPs are the usual estimate for a
transformer encoder, forward = 2 x non-embedding parameters x tokens + attention scores
4 x layers x hidden x T x (T + layer-prompt length); the backward pass of a frozen backbone (PT, APT)
computes activation gradients only, about 1x the forward, and fine-tuning also weight gradients,
about 2x; the head, the optimiser and padding are left out. Alignment stages are not projected.
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
"""Written into xsweep's cache (`$XSWEEP_CACHE`) by bench/bench_step.py: this machine's measured FLOP/s."""


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

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.dev_flops + self.test_flops


# ---------------------------------------------------------------------------------------------
# Sizes, without downloading anything


def backbone_size(name: str) -> BackboneSize | None:
    """The size of a known, built-in or local backbone; None when it cannot be known offline."""
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
        c = json.loads(config.read_text(encoding="utf-8"))
        try:
            return BackboneSize(name, c["num_hidden_layers"], c["hidden_size"], c["intermediate_size"],
                                c["vocab_size"], c.get("max_position_embeddings", 512))
        except KeyError:
            return None
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
            out.train_flops += trials * examples * epochs * (2 if nli else 1) * (forward + backward)
            out.dev_flops += dev_sequences * forward
            out.test_flops += test_sequences * forward
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


def stored_throughput() -> dict[str, Any] | None:
    """This machine's FLOP/s as bench/bench_step.py measured it, or None."""
    path = cache_dir() / THROUGHPUT_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return stored if float(stored.get("flop_per_s", 0)) > 0 else None
    except (OSError, ValueError):
        return None


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
        "allow; early stopping usually ends trials much sooner; alignment stages not included)",
        f"  data: {data.source}; {data.intents} intents, dev {data.dev:,}, test {len(data.test)} locale(s), "
        f"{sum(data.test.values()):,} utterances",
        f"  trials: {p.trials:,} ({methods})" + (f", {cfg.sweep.optuna.trials} Optuna points per grid point"
                                                if cfg.sweep.search == "optuna" else ""),
        f"  training: at most {p.train_examples:,} examples ({p.train_sequences:,} sequences), {p.steps:,} steps",
        f"  English dev: at most {p.dev_evaluations:,} evaluations, {p.dev_sequences:,} sequences{pairs}",
        f"  test: {p.tested_trials:,} trials x {len(data.test)} locale(s) = {p.test_sequences:,} sequences ({where})",
    ]
    if backbone is None:
        lines.append(f"  FLOPs: skipped, backbone {cfg.backbone.name!r} has no known size "
                     "(known: built-ins, XLM-R base/large/XL, MiniLM, or a local folder with config.json)")
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
    lines.append("  " + device_hours(p, backbone, data, throughput))
    return lines


def device_hours(p: Projection, backbone: BackboneSize, data: DataSize, throughput: str | None) -> str:
    if throughput is not None:
        rate, unit = parse_throughput(throughput)
        if unit == "tok/s":
            rate_flops = rate * backbone.forward_flops(data.mean_tokens) / data.mean_tokens
            said = f"{rate:,.0f} forward tokens/s (--throughput) = {rate_flops:.2e} FLOP/s"
        else:
            rate_flops, said = rate, f"{rate:.2e} FLOP/s (--throughput)"
    else:
        stored = stored_throughput()
        if stored is None:
            return ("device-hours: pass --throughput (FLOP/s, e.g. 1e14 for an A100-class GPU at about a third "
                    "of its bf16 peak, or tokens/s as 5000tok/s), or measure this machine with "
                    "`python -m bench.bench_step`")
        rate_flops = float(stored["flop_per_s"])
        said = (f"{rate_flops:.2e} FLOP/s measured on {stored.get('machine', 'this machine')} "
                f"({stored.get('date', '?')}, bench/bench_step.py; --throughput overrides)")
    hours = p.total_flops / rate_flops / 3600
    return f"device-hours: at most {hours:,.1f} at {said}"


__all__ = ["BackboneSize", "DataSize", "Projection", "backbone_size", "data_size", "describe_cost",
           "parse_throughput", "project", "stored_throughput"]
