"""What the downstream loop needs to know about a task, behind one small protocol.

The loop (train/downstream.py) is the same for every head: seed, data, model, epochs, dev
evaluation, early stopping, checkpoints, test evaluation. What differs is here:

| head.kind | model       | training batch of B utterances             | score (metric)              |
|-----------|-------------|--------------------------------------------|-----------------------------|
| vanilla   | IntentModel | B utterances, gold intents                 | accuracy                    |
| nli       | NliModel    | 2B (utterance, hypothesis) pairs: each     | accuracy of the argmax over |
|           |             | utterance's gold intent and one other      | all intents' entailment     |
| slot      | SlotModel   | B word sequences, first-sub-token labels   | f1 (seqeval span micro F1)  |
| nli (sgd) | NliModel    | per SGD frame: a positive and a negative   | accuracy, out of scope when |
|           |             | (in scope), or one negative (out of scope) | no candidate passes 0.5     |

`optim.eval_batch_size` counts rows of one forward: utterances, or pairs for NLI (N x C pairs).

A task is built from the trial's label map (`labels.json`), never from the data it is evaluated
on, so a saved trial is evaluated later with exactly the labels it was trained with (SGD, where
dev and test bring services of their own, takes its candidates from each frame's schema: see
train/sgd_task.py). `read_examples` and `sample_training` give a task its rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.data.fewshot import sample_few_shot, save_sample
from xsweep.data.massive import OTHER, MassiveExample, intent_labels, read_massive, slot_labels
from xsweep.errors import XsweepError
from xsweep.models.prompted import PromptedModel, build_intent_model
from xsweep.objectives.nli import intent_hypothesis
from xsweep.train.batches import Batch, EncodedSplit, collate, encode_split, iter_batches, length_batches


METRICS = {"vanilla": "accuracy", "nli": "accuracy", "slot": "f1"}
"""head.kind -> name of its score, as in the record, report dicts and TensorBoard tags."""


@dataclass
class Evaluation:
    score: float
    """The task's metric on the split, a fraction in [0, 1]."""
    rows: list[dict[str, Any]]
    """One JSON-ready row per example, in the split's order (predictions/<locale>.jsonl)."""


class Task(Protocol):
    metric: str
    """Name of the score: `accuracy` for intents, `f1` for slots."""

    def build_model(self, encoder: Any) -> PromptedModel:
        """A fresh model for this task on `encoder` (frozen or not as the method says)."""

    def encode(self, rows: Sequence[MassiveExample]) -> Any:
        """Tokenize rows once; the result has `len()` = number of examples."""

    def train_batches(self, split: Any, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Any]:
        """One epoch of training batches of `batch_size` examples; every random draw comes from
        `order`, so a checkpoint of `order` replays the epoch exactly."""

    def loss(self, model: PromptedModel, batch: Any) -> torch.Tensor:
        """Scalar training loss of one batch."""

    def evaluate(self, model: PromptedModel, split: Any, batch_size: int, device: torch.device) -> Evaluation:
        """Score and per-example predictions of `model` on `split` (model left in its mode)."""


def model_options(cfg: ExperimentConfig) -> dict[str, Any]:
    """The keyword arguments every `build_*_model` takes, from the config."""
    return dict(method=cfg.method, prompt_kind=cfg.prompt.kind, prompt_length=cfg.prompt.length,
                prompt_dropout=cfg.prompt.dropout, head_dropout=cfg.head.dropout,
                backbone_dropout=cfg.backbone.dropout, shift_positions=cfg.prompt.shift_positions,
                reparam_hidden=cfg.prompt.reparam_hidden)


def task_labels(cfg: ExperimentConfig, train: Sequence[MassiveExample]) -> dict[str, Any]:
    """The label map of a trial (written to `labels.json`), from ALL training rows of the training
    locale, not the few-shot sample: the map, and so the head's shape, is the same for every shot
    count and sample seed."""
    if cfg.data.dataset == "sgd":
        from xsweep.train.sgd_task import sgd_labels

        return sgd_labels(cfg, train)
    labels: dict[str, Any] = {"task": cfg.head.kind, "intents": intent_labels(train)}
    if cfg.head.kind == "nli":
        # Saved, not recomputed: the hypotheses are part of what the model was trained on.
        labels["hypotheses"] = [intent_hypothesis(name) for name in labels["intents"]]
    if cfg.head.kind == "slot":
        missing = next((row for row in train if row.annot_utt is None), None)
        if missing is not None:
            raise XsweepError(f"row {missing.id} of {missing.locale} train has no annot_utt: slot filling "
                              "needs the slot markup", where="head.kind",
                              fix="use the official MASSIVE files (with annot_utt), or head.kind vanilla/nli")
        # `Other` first: index 0 is the label of words outside every slot.
        labels["slots"] = [OTHER] + slot_labels(train)
    return labels


def make_task(cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> Task:
    """The task of `cfg.head.kind` with the label map `labels` (see `task_labels`); `labels["task"]`
    `sgd` is the SGD intent task (data.dataset sgd, an NLI head)."""
    if labels.get("task") == "sgd":
        from xsweep.train.sgd_task import SgdTask

        return SgdTask(cfg, labels, tokenizer)
    if cfg.head.kind == "vanilla":
        return IntentTask(cfg, labels["intents"], tokenizer)
    if cfg.head.kind == "nli":
        from xsweep.train.nli_task import NliTask

        return NliTask(cfg, labels["intents"], labels["hypotheses"], tokenizer)
    if cfg.head.kind == "slot":
        from xsweep.train.slot_task import SlotTask

        return SlotTask(cfg, labels["slots"], tokenizer)
    raise XsweepError(f"unknown head.kind {cfg.head.kind!r}", where="head.kind", fix="use vanilla, nli or slot")


def read_examples(cfg: ExperimentConfig, data_dir: Path, locale: str, partition: str) -> list[Any]:
    """The rows of one partition (train, dev, test) in one locale of `cfg.data.dataset`: MASSIVE
    rows, or SGD intent frames (train/sgd_task.py). Tasks encode what this returns."""
    if cfg.data.dataset == "sgd":
        from xsweep.train.sgd_task import read_examples as read_sgd

        return read_sgd(cfg, data_dir, locale, partition)
    return read_massive(Path(data_dir), locale, [partition])


def sample_training(cfg: ExperimentConfig, train: Sequence[Any], path: Path) -> list[Any]:
    """The trial's training rows drawn from all of `train`, the draw written to `path`
    (few_shot_sample.json): `data.shots` per intent (MASSIVE, any head), or
    `data.dialogues_per_service` dialogues per service (SGD)."""
    if cfg.data.dataset == "sgd":
        from xsweep.train.sgd_task import sample_training as sample_sgd

        return sample_sgd(cfg, train, path)
    sample = sample_few_shot(train, cfg.data.shots, cfg.effective_sample_seed)
    save_sample(sample, path)
    return sample.examples


@dataclass
class IntentSplit:
    rows: list[MassiveExample]
    encoded: EncodedSplit

    def __len__(self) -> int:
        return len(self.rows)


class IntentTask:
    """Vanilla intent classification: a head over all intents on `<s>`, cross-entropy."""

    metric = METRICS["vanilla"]

    def __init__(self, cfg: ExperimentConfig, intents: list[str], tokenizer: Any):
        self.cfg, self.intents, self.tokenizer = cfg, intents, tokenizer
        self.index = {name: i for i, name in enumerate(intents)}

    def build_model(self, encoder: Any) -> PromptedModel:
        return build_intent_model(encoder, num_labels=len(self.intents), **model_options(self.cfg))

    def encode(self, rows: Sequence[MassiveExample]) -> IntentSplit:
        return IntentSplit(list(rows), encode_split(rows, self.tokenizer, self.index, self.cfg.data.max_seq_len))

    def train_batches(self, split: IntentSplit, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Batch]:
        return iter_batches(split.encoded, batch_size, shuffle=order, device=device)

    def loss(self, model: PromptedModel, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(batch.input_ids, batch.attention_mask), batch.labels)

    @torch.no_grad()
    def evaluate(self, model: PromptedModel, split: IntentSplit, batch_size: int, device: torch.device) -> Evaluation:
        predicted = torch.empty(len(split), dtype=torch.long)
        with eval_mode(model):
            lengths = [len(ids) for ids in split.encoded.input_ids]
            for indices in length_batches(lengths, batch_size):  # far less padding than file order
                batch = collate(split.encoded, indices, device)
                predicted[indices] = model(batch.input_ids, batch.attention_mask).argmax(-1).cpu()
        score = accuracy(predicted, split.encoded.labels)
        rows = [{"id": row.id, "utt": row.utt, "gold": row.intent, "predicted": self.intents[p]}
                for row, p in zip(split.rows, predicted.tolist())]
        return Evaluation(score, rows)


def accuracy(predicted: torch.Tensor, gold: torch.Tensor | Sequence[int]) -> float:
    """Fraction of exact matches, as an exact ratio (the same number however it is recomputed from
    the predictions files); an unknown gold intent (-1) is always wrong. Empty is an error."""
    gold = torch.as_tensor(gold)
    if len(gold) == 0 or predicted.shape != gold.shape:
        raise XsweepError(f"cannot score {predicted.numel()} predictions against {gold.numel()} gold labels",
                          fix="check the data's partitions")
    return int((predicted == gold).sum()) / len(gold)


class eval_mode:
    """`with eval_mode(model):` evaluation without dropout, then the model's previous mode back."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


__all__ = ["METRICS", "Evaluation", "IntentTask", "Task", "accuracy", "eval_mode", "make_task", "model_options",
           "read_examples", "sample_training", "task_labels"]
