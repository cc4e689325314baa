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

Only measured figures turn FLOPs into time and memory: sweep/throughput.py (device-hours at
measured rates) and sweep/dry_run.py (what `--dry-run` prints: device-hours, the expected figure
of `--like RUN_DIR`, trials per GPU from `--gpu-check FILE`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

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
        dev = min(data.dev, trial.data.max_dev_examples or data.dev)  # a subset (data.max_dev_examples)
        dev_sequences = trials * evaluations * dev * per_candidate
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
        cap = trial.data.max_test_examples_per_locale
        test_sequences = tested * sum(min(n, cap or n) for n in data.test.values()) * per_candidate
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


__all__ = ["BackboneSize", "DataSize", "Projection", "backbone_size", "compute_kind", "data_size",
           "project"]
