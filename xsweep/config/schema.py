"""The experiment schema: one dataclass per YAML section, and each section's own rules.

Every field carries a one-line docstring (with units where they matter). A section's `check`
method holds the rules among its own fields; where one of its rules needs a value of another
section, that value is an argument, so the dependency is visible. Rules that relate sections to
each other are in `checks.check_experiment`, which calls these in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from xsweep.errors import XsweepError
from xsweep.languages import check_locale, resolve_tatoeba_targets, resolve_xsgd_targets

NAMED_DATA = ("demo", "massive", "sgd")
"""`data.path` values that name a data set xsweep finds itself rather than a folder."""
NAMED_ALIGN_DATA = ("demo", "xsgd", "tatoeba")
"""`align.data` values that name parallel data xsweep finds itself."""
HeadKind = Literal["vanilla", "nli", "slot"]
Method = Literal["ft", "pt", "apt"]
PromptKind = Literal["input", "layer", "none"]
Fail = Callable[[str, str, str], None]
"""fail(dotted key, what is wrong, how to fix it): raises the XsweepError naming the key's file and line."""


def can_fuse(method: str, head_kind: str, dataset: str, precision: str = "auto") -> bool:
    """Whether trials of this setup can share one backbone forward (`sweep.fuse`, train/downstream.py):
    a frozen backbone (pt, apt), the vanilla intent head on MASSIVE, and not fp16.
    `train.downstream.check_fusable` refuses the rest, saying which part fails."""
    return method in ("pt", "apt") and head_kind == "vanilla" and dataset == "massive" and precision != "fp16"


@dataclass
class BackboneConfig:
    name: str = "builtin:tiny"
    """`builtin:tiny` (a small XLM-R made in-process, no download), a hub id such as
    `xlm-roberta-large`, or a local directory holding a Hugging Face encoder."""
    attn_implementation: Literal["eager", "sdpa"] | None = None
    """Attention kernel; None lets transformers choose."""
    dropout: bool = True
    """Keep the frozen backbone's own dropout active in training, as the authors' code does."""
    pooling: Literal["cls", "mean"] = "cls"
    """How a sentence's vector is read off the encoder, by the intent and NLI heads, the alignment
    objective's contrastive loss and Tatoeba retrieval alike (models/pooling.py): `cls` the first
    token's state (XLM-R, the paper); `mean` the mean over the real tokens (how multilingual-e5
    was trained)."""
    text_prefix: str = ""
    """Put before every input text (utterances, NLI premises, parallel pairs, retrieval
    sentences, `xsweep predict`): multilingual-e5 was trained on `"query: "` + text. Not for slot
    filling, whose labels are per word of the utterance."""


@dataclass
class DataConfig:
    dataset: Literal["massive", "sgd", "conll"] = "massive"
    """Which data set the downstream task reads: `massive` (intents or slots), `sgd` (the paper's
    SGD intent task: NLI over the turn's service's intents, out of scope below 0.5; head.kind nli), or
    `conll` (a folder of `<lang>.<split>.conll` intent/slot files, as xSID; data.path names it, and
    locales are the data's own language tags, checked against the folder before Ray)."""
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
    max_dev_examples: int | None = None
    """English dev (model selection) on a fixed subset of this many utterances, stratified by intent
    and the same for every trial (data/subsets.py); None: all of dev. For quick science: the NLI
    head scores every dev utterance against every intent at each evaluation. MASSIVE only."""
    max_test_examples_per_locale: int | None = None
    """Test on a fixed stratified subset of this many utterances per locale, the same ids in every
    locale (MASSIVE is parallel); None: all of test. Tables and plots say so. MASSIVE only."""

    def check(self, fail: Fail, *, head_kind: str) -> None:
        """`head_kind`: SGD is an NLI task, so the data set decides the head."""
        if self.shots is not None and self.shots < 1:
            fail("data.shots", f"data.shots must be at least 1 (or null for all), got {self.shots}",
                 "use 5, 15 or null")
        for key, codes in (("data.train_locale", [self.train_locale]),
                           ("data.eval_locales", [] if self.eval_locales == "all" else self.eval_locales)):
            for code in codes if self.dataset != "conll" else []:  # conll: the folder's tags, before Ray
                try:
                    check_locale(code)
                except XsweepError as exc:  # a typo must not silently drop a language from a sweep
                    fail(key, f"{key}: {exc.what}", exc.fix or "use a MASSIVE locale")
        if self.eval_locales != "all" and not self.eval_locales:
            fail("data.eval_locales", "data.eval_locales is empty", "list locales, e.g. [en-US, de-DE], or use all")
        if self.max_seq_len < 4:
            fail("data.max_seq_len", f"data.max_seq_len must be at least 4, got {self.max_seq_len}", "use e.g. 64")
        for key in ("max_dev_examples", "max_test_examples_per_locale"):
            size = getattr(self, key)
            if size is not None and size < 1:
                fail(f"data.{key}", f"data.{key} must be at least 1 (or null for the whole partition), got {size}",
                     "use e.g. 600, or null")
            elif size is not None and self.dataset != "massive":
                fail(f"data.{key}", f"data.{key} cuts MASSIVE's parallel partitions; data.dataset is {self.dataset!r}",
                     f"remove data.{key}, or use data.dataset: massive")
        if self.dialogues_per_service is not None and self.dialogues_per_service < 1:
            fail("data.dialogues_per_service", f"data.dialogues_per_service must be at least 1 (or null for all), "
                 f"got {self.dialogues_per_service}", "use 5 (the paper's SGD setting) or null")
        if self.dataset == "sgd":
            if head_kind != "nli":
                fail("head.kind", f"data.dataset sgd is the paper's NLI intent task, but head.kind is {head_kind!r}",
                     "set head.kind: nli")
            if self.shots is not None:
                fail("data.shots", "data.shots counts MASSIVE examples per intent; SGD samples dialogues per service",
                     "remove data.shots and set data.dialogues_per_service (5 in the paper, null for all)")
            if self.path == "massive":
                fail("data.path", "data.dataset is sgd but data.path names MASSIVE",
                     "use data.path: sgd (after `xsweep data download sgd`), demo, or an SGD folder")
        elif self.dataset == "conll" and self.path in NAMED_DATA:
            fail("data.path", f"data.dataset is conll but data.path is {self.path!r}, a named data set",
                 "point data.path at a folder of <lang>.<split>.conll files")
        elif self.path == "sgd":
            fail("data.path", f"data.path sgd names SGD but data.dataset is {self.dataset!r}",
                 "set data.dataset: sgd (with head.kind: nli), or point data.path at MASSIVE")
        if (self.path not in NAMED_DATA and not Path(self.path).expanduser().exists()
                and Path(self.path).is_absolute()):
            fail("data.path", f"data folder {self.path!r} does not exist",
                 "point data.path at a MASSIVE folder of <locale>.jsonl files, or use `demo`")


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

    def check(self, fail: Fail) -> None:
        if self.kind != "none" and self.length < 1:
            fail("prompt.length", f"prompt.length must be at least 1, got {self.length}",
                 "use 1, 8, 16 or 100 (the paper's lengths), or prompt.kind: none")
        if not 0 <= self.dropout < 1:
            fail("prompt.dropout", f"prompt.dropout must be in [0, 1), got {self.dropout}", "use e.g. 0.1")


@dataclass
class HeadConfig:
    kind: HeadKind = "vanilla"
    """`vanilla`: classifier over all intents; `nli`: entailment scorer; `slot`: tagger."""
    dropout: float = 0.1
    """Dropout before the head's projection."""

    def check(self, fail: Fail) -> None:
        if not 0 <= self.dropout < 1:
            fail("head.dropout", f"head.dropout must be in [0, 1), got {self.dropout}", "use e.g. 0.1")


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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute dtype (models/precision.py): `bf16`/`fp16` run under autocast, and PT/APT keep the
    frozen backbone in that dtype; prompts, heads and saved tensors stay fp32. `auto`: bf16 on a
    GPU that supports it, fp32 on CPU."""
    bucket_by_length: bool = True
    """Training batches hold examples of similar length (pools of 50 batches sorted by length,
    batches shuffled; each epoch every example once, drawn from the trial's seed), so they pad
    less; False: each batch a random sample. Dev and test always run in length order."""

    def check(self, fail: Fail) -> None:
        if not self.lr > 0:
            fail("optim.lr", f"optim.lr must be positive, got {self.lr}", "use a learning rate such as 1e-2")
        for key in ("epochs", "batch_size", "eval_every_epochs", "patience", "eval_batch_size"):
            if getattr(self, key) < 1:
                fail(f"optim.{key}", f"optim.{key} must be at least 1, got {getattr(self, key)}",
                     f"set optim.{key} to a positive integer")
        if not 0 <= self.warmup_ratio < 1:
            fail("optim.warmup_ratio", f"optim.warmup_ratio must be in [0, 1), got {self.warmup_ratio}",
                 "use a fraction such as 0.1")
        if self.weight_decay < 0:
            fail("optim.weight_decay", f"optim.weight_decay must be >= 0, got {self.weight_decay}", "use 0 or more")


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

    def check(self, fail: Fail, *, optim: OptimConfig, search: str) -> None:
        """`optim`: milestones are epochs of its schedule; `search`: only a grid can be pruned."""
        if not 0 < self.keep < 1:
            fail("sweep.pruning.keep", f"sweep.pruning.keep must be a fraction in (0, 1), got {self.keep}",
                 "keep e.g. 0.5 (half of a group's learning rates go on at each milestone)")
        if not self.milestones:
            return
        if search == "optuna":
            fail("sweep.pruning", "sweep.pruning compares the learning rates of a grid, but sweep.search is optuna "
                 "(it suggests its points a few at a time)", "set sweep.pruning.milestones: [] or sweep.search: grid")
        every = optim.eval_every_epochs
        for before, epoch in zip([0, *self.milestones], self.milestones):
            if epoch <= before:
                fail("sweep.pruning.milestones", f"sweep.pruning.milestones must be increasing positive epochs, "
                     f"got {self.milestones}", "list epochs in increasing order, e.g. [10, 50]")
            if epoch % every:
                fail("sweep.pruning.milestones", f"milestone {epoch} is not an epoch where English dev is evaluated "
                     f"(every {every})", f"use multiples of optim.eval_every_epochs ({every})")
            if epoch >= optim.epochs:
                fail("sweep.pruning.milestones", f"milestone {epoch} is not below optim.epochs ({optim.epochs}): the "
                     "trials would have ended", f"use epochs below {optim.epochs}, or remove the milestone")


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
    own prompt, head, optimiser, early stopping and checkpoint (train/downstream.py), so it combines
    with sweep.pruning. For PT/APT with the vanilla head on MASSIVE, in fp32 or bf16; other groups
    run alone. On a CPU it costs about the same as
    running the trials one by one (bench/bench_fused.py); 1: every trial alone."""

    def check(self, fail: Fail, *, optim: OptimConfig) -> None:
        """The seeds, the caps and the pruning plan (`optim`: the schedule it prunes). What fusing
        and the searched or listed values must agree with is checked with the whole experiment."""
        self.pruning.check(fail, optim=optim, search=self.search)
        if not self.seeds:
            fail("sweep.seeds", "sweep.seeds is empty", "list at least one seed, e.g. [0, 1, 2, 3, 4]")
        if len(set(self.seeds)) != len(self.seeds):
            fail("sweep.seeds", f"sweep.seeds repeats a seed: {self.seeds}", "list each seed once")
        if self.max_concurrent_trials is not None and self.max_concurrent_trials < 1:
            fail("sweep.max_concurrent_trials", "sweep.max_concurrent_trials must be at least 1",
                 "use a positive integer or null")
        if self.fuse < 1:
            fail("sweep.fuse", f"sweep.fuse must be at least 1, got {self.fuse}",
                 "use 1 (each trial alone) or the number of trials to fuse, e.g. 4 on a GPU")


@dataclass
class ResourcesConfig:
    cpus_per_trial: float = 1.0
    """CPUs a trial's training worker asks Ray for; fractions are allowed."""
    gpus_per_trial: float = 0.0
    """GPUs a trial's training worker asks Ray for; fractions share one GPU."""
    num_workers: int = 1
    """Processes a downstream trial trains on: 1 runs it in a reused Tune actor; W > 1 on a Ray Train
    worker group of W data-parallel workers, each holding `cpus_per_trial` and `gpus_per_trial`,
    the global batch `optim.batch_size` split among them (docs/trials.md). Alignment's workers:
    `align.num_workers`."""

    def check(self, fail: Fail) -> None:
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0 or self.num_workers < 1:
            fail("resources", "resources need cpus_per_trial > 0, gpus_per_trial >= 0, num_workers >= 1",
                 "e.g. cpus_per_trial: 1, gpus_per_trial: 0, num_workers: 1")


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
    """Passes over the documents (each draws one span of 1 to `max_segments` turns per dialogue)."""
    batch_size: int = 64
    """Pairs per optimiser step over all workers (32 for XLM-R XL in the paper)."""
    lr: float = 1e-3
    """Peak Adam learning rate (linear warm-up over `warmup_ratio` of the steps, then linear decay to 0)."""
    warmup_ratio: float = 0.1
    """Fraction of all steps over which the learning rate rises linearly from 0."""
    max_seq_len: int = 128
    """Tokens per side of a pair, specials included."""
    temperature: float = 0.05
    """InfoNCE temperature on cosine similarities (dimensionless)."""
    mask_probability: float = 0.15
    """Fraction of each sequence's maskable tokens chosen for MLM (BERT's 80/10/10 split)."""
    max_segments: int = 4
    """Pairs join 1 to this many consecutive turns (or lines)."""
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

    def check(self, fail: Fail) -> None:
        """The run's hyperparameters and resources, and that retrieval has prompts to score."""
        for key in ("epochs", "batch_size", "num_workers"):
            if getattr(self, key) < 1:
                fail(f"align.{key}", f"align.{key} must be at least 1, got {getattr(self, key)}",
                     f"set align.{key} to a positive integer")
        if self.batch_size < 2:
            fail("align.batch_size", "the contrastive loss needs at least 2 pairs per batch", "use e.g. 64")
        if self.batch_size < 2 * self.num_workers:
            fail("align.batch_size", f"align.batch_size {self.batch_size} leaves a worker of the {self.num_workers} "
                 "fewer than 2 pairs: the contrastive loss needs in-batch negatives",
                 f"use align.batch_size >= {2 * self.num_workers}, or fewer workers")
        if not self.lr > 0 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0 or self.max_seq_len < 4:
            fail("align", "align needs lr > 0, cpus_per_worker > 0, gpus_per_worker >= 0, max_seq_len >= 4",
                 "e.g. lr: 1e-3, cpus_per_worker: 1, gpus_per_worker: 0, max_seq_len: 128")
        if self.max_segments < 1:
            fail("align.max_segments", f"max_segments must be at least 1, got {self.max_segments}",
                 "set align.max_segments to a positive integer")
        if not 0 <= self.warmup_ratio < 1:
            fail("align.warmup_ratio", f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}", "use 0.1")
        if not self.temperature > 0:
            fail("align.temperature", f"temperature must be positive, got {self.temperature}", "use 0.05")
        if not 0 < self.mask_probability < 1:
            fail("align.mask_probability", f"mask_probability must be in (0, 1), got {self.mask_probability}",
                 "use 0.15")
        if self.retrieval and not self.data:
            fail("align.retrieval", "align.retrieval scores aligned prompts, but there is no alignment stage",
                 "set align.data too, or remove align.retrieval")

    def check_corpus(self, fail: Fail) -> None:
        """The parallel data: a .tsv's language, the size bound, the languages, what retrieval scores."""
        if self.data and self.data.endswith(".tsv") and not self.lang:
            fail("align.lang", "a .tsv alignment file needs the target language's code",
                 "set align.lang, e.g. de-DE")
        if self.max_pairs is not None and self.max_pairs < 2:
            fail("align.max_pairs", f"align.max_pairs must be at least 2 (or null for all the data), got "
                 f"{self.max_pairs}", "the contrastive loss needs in-batch negatives: use e.g. 10000, or null")
        if self.targets != "all":
            if not self.targets:
                fail("align.targets", "align.targets is empty", "list languages, e.g. [de-DE, fr-FR], or use all")
            resolve = {"xsgd": resolve_xsgd_targets, "demo": resolve_xsgd_targets,
                       "tatoeba": lambda targets: resolve_tatoeba_targets(targets, ())}.get(self.data)
            try:  # a folder's layout is known only when it is read; named data is checked now
                if resolve:
                    resolve(self.targets)
            except XsweepError as exc:
                fail("align.targets", f"align.targets for align.data {self.data}: {exc.what}",
                     exc.fix or "fix the language")
        if self.retrieval_languages != "all":
            try:  # the folder's languages are checked before Ray (sweep/preflight.py); the form now
                resolve_tatoeba_targets(self.retrieval_languages, ())
            except XsweepError as exc:
                fail("align.retrieval_languages", f"align.retrieval_languages: {exc.what}",
                     exc.fix or "list ISO 639-3 codes, e.g. [deu, pol], or use all")
        if self.data == "tatoeba" and self.retrieval == "tatoeba":
            fail("align.retrieval", "align.data and align.retrieval are both Tatoeba: the prompts would be scored "
                 "on the sentences they were aligned on", "align on other data (xsgd, a .tsv), or remove "
                 "align.retrieval")


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
