"""Downstream tasks: one module per task behind one protocol (protocol.py), and the table of them.

A trial's task is named by its label map (`labels.json` `task`): a MASSIVE head kind, `sgd`
(data.dataset sgd, an NLI head), or `conll_slot` (data.dataset conll with head.kind slot; CoNLL
intents use the vanilla and NLI tasks as they are). `read_examples` and `sample_training` give a
task its rows, from the data set's own module (data/massive.py and data/fewshot.py, data/sgd.py,
or data/conll.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from xsweep.config import ExperimentConfig
from xsweep.data.conll import read_conll
from xsweep.data.fewshot import sample_few_shot, save_sample
from xsweep.data.massive import read_massive
from xsweep.data.sgd import read_locale_examples, sample_training_examples
from xsweep.data.subsets import keep_ids, massive_subset_ids, subset_size
from xsweep.errors import XsweepError
from xsweep.train.tasks.conll import ConllSlotTask
from xsweep.train.tasks.intent import IntentSplit, IntentTask
from xsweep.train.tasks.nli import NliSplit, NliTask
from xsweep.train.tasks.protocol import METRICS, Evaluation, Task, eval_mode, model_options
from xsweep.train.tasks.sgd import OUT_OF_SCOPE_THRESHOLD, SgdSplit, SgdTask
from xsweep.train.tasks.slot import SlotSplit, SlotTask

TASKS: dict[str, type] = {"vanilla": IntentTask, "nli": NliTask, "slot": SlotTask, "sgd": SgdTask,
                          "conll_slot": ConllSlotTask}
"""labels.json `task` -> its class: MASSIVE (or CoNLL intents) with head.kind vanilla, nli or slot;
`sgd`: data.dataset sgd; `conll_slot`: data.dataset conll with head.kind slot."""
_OWN_TASKS = ("sgd", "conll_slot")
"""Tasks a label map names by itself, whatever head.kind says."""


def task_kind(cfg: ExperimentConfig) -> str:
    """The `TASKS` key of a config: `sgd` for data.dataset sgd, `conll_slot` for CoNLL slots, else
    its head.kind."""
    if cfg.data.dataset == "sgd":
        return "sgd"
    if cfg.data.dataset == "conll" and cfg.head.kind == "slot":
        return "conll_slot"
    return cfg.head.kind


def _task_class(kind: str) -> Any:
    if kind not in TASKS:
        raise XsweepError(f"unknown head.kind {kind!r}", where="head.kind", fix="use vanilla, nli or slot")
    return TASKS[kind]


def task_labels(cfg: ExperimentConfig, train: Sequence[Any]) -> dict[str, Any]:
    """The label map of a trial (written to `labels.json`), from ALL training rows of the training
    locale, not the few-shot sample: the map, and so the head's shape, is the same for every shot
    count and sample seed."""
    return _task_class(task_kind(cfg)).label_map(cfg, train)


def make_task(cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> Task:
    """The task of the label map `labels` (see `task_labels`): `labels["task"]` `sgd` is the SGD
    intent task, anything else the MASSIVE task of `cfg.head.kind`."""
    own = labels.get("task") in _OWN_TASKS
    return _task_class(labels["task"] if own else cfg.head.kind).from_labels(cfg, labels, tokenizer)


def read_examples(cfg: ExperimentConfig, data_dir: Path, locale: str, partition: str) -> list[Any]:
    """The rows of one partition (train, dev, test) in one locale of `cfg.data.dataset`: MASSIVE
    rows, SGD intent frames, or CoNLL blocks (`locale` is then the data's own language tag).
    MASSIVE dev and test are cut to the sweep's stratified subsets when `data.max_dev_examples` or
    `data.max_test_examples_per_locale` asks for one (data/subsets.py). Tasks encode what this returns."""
    if cfg.data.dataset == "sgd":
        return read_locale_examples(Path(data_dir), locale, partition, cfg.data.intent_turns)
    if cfg.data.dataset == "conll":
        return read_conll(Path(data_dir), locale, partition)
    rows = read_massive(Path(data_dir), locale, [partition])
    size = subset_size(cfg.data, partition)
    if size is None:
        return rows
    ids = massive_subset_ids(Path(data_dir), cfg.data.train_locale, partition, size)
    return keep_ids(rows, ids, where=f"{data_dir}: {locale} {partition}")


def sample_training(cfg: ExperimentConfig, train: Sequence[Any], path: Path) -> list[Any]:
    """The trial's training rows drawn from all of `train`, the draw written to `path`
    (few_shot_sample.json): `data.shots` per intent (MASSIVE or CoNLL, any head), or
    `data.dialogues_per_service` dialogues per service (SGD), seeded by the trial's sample seed."""
    if cfg.data.dataset == "sgd":
        return sample_training_examples(train, cfg.data.dialogues_per_service, cfg.effective_sample_seed, path)
    sample = sample_few_shot(train, cfg.data.shots, cfg.effective_sample_seed)
    save_sample(sample, path)
    return sample.examples


__all__ = ["METRICS", "OUT_OF_SCOPE_THRESHOLD", "TASKS", "ConllSlotTask", "Evaluation", "IntentSplit", "IntentTask", "NliSplit",
           "NliTask", "SgdSplit", "SgdTask", "SlotSplit", "SlotTask", "Task", "eval_mode", "make_task",
           "model_options", "read_examples", "sample_training", "task_kind", "task_labels"]
