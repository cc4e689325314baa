"""What the downstream loop needs to know about a task, behind one small protocol.

The loop (train/downstream.py) is the same for every head: seed, data, model, epochs, dev
evaluation, early stopping, checkpoints, test evaluation. What differs is in one module per task:

| labels.json `task` | module  | model       | training batch of B utterances            | score (metric)              |
|--------------------|---------|-------------|-------------------------------------------|-----------------------------|
| vanilla            | intent  | IntentModel | B utterances, gold intents                | accuracy                    |
| nli                | nli     | NliModel    | 2B (utterance, hypothesis) pairs: each    | accuracy of the argmax over |
|                    |         |             | utterance's gold intent and one other     | all intents' entailment     |
| slot               | slot    | SlotModel   | B word sequences, first-sub-token labels  | f1 (seqeval span micro F1)  |
| sgd (nli head)     | sgd     | NliModel    | per SGD frame: a positive and a negative  | accuracy, out of scope when |
|                    |         |             | (in scope), or one negative (out of scope)| no candidate passes 0.5     |
| conll_slot         | conll   | SlotModel   | as slot; words and BIO tags from CoNLL    | f1 on the file's BIO spans  |

`optim.eval_batch_size` counts rows of one forward: utterances, or pairs for NLI (N x C pairs).

A task is built from the trial's label map (`labels.json`, `Task.from_labels`), never from the data
it is evaluated on, so a saved trial is evaluated later with exactly the labels it was trained with
(SGD, where dev and test bring services of their own, takes its candidates from each frame's
schema: see tasks/sgd.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.models.prompted import PromptedModel

METRICS = {"vanilla": "accuracy", "nli": "accuracy", "slot": "f1"}
"""head.kind -> name of its score, as in the record, report dicts and TensorBoard tags."""


@dataclass
class Evaluation:
    score: float
    """The task's metric on the split, a fraction in [0, 1]."""
    rows: list[dict[str, Any]]
    """One JSON-ready row per example, in the split's order (predictions/<locale>.jsonl)."""


class Task(Protocol):
    cfg: ExperimentConfig
    """The trial's resolved config."""
    metric: str
    """Name of the score: `accuracy` for intents, `f1` for slots."""

    @classmethod
    def from_labels(cls, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> Task:
        """The task of a trial's label map (`labels.json`, as `label_map` wrote it)."""

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[Any]) -> dict[str, Any]:
        """The label map of a trial (`labels.json`), from ALL training rows of the training locale."""

    def build_model(self, encoder: Any) -> PromptedModel:
        """A fresh model for this task on `encoder` (frozen or not as the method says)."""

    def encode(self, rows: Sequence[Any]) -> Any:
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
                reparam_hidden=cfg.prompt.reparam_hidden, pooling=cfg.backbone.pooling)


class eval_mode:
    """`with eval_mode(model):` evaluation without dropout, then the model's previous mode back."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self) -> torch.nn.Module:
        self.model.eval()
        return self.model

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


__all__ = ["METRICS", "Evaluation", "Task", "eval_mode", "model_options"]
