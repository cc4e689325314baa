"""Slot filling as a downstream task: word labels from MASSIVE's `annot_utt`, span F1 on words.

Words and their labels come from `annot_utt` (data.massive.parse_annot_utt: whitespace words, or
characters for ja-JP/zh-CN/zh-TW; `Other` outside slots). The words are tokenized as pre-split
input; only a word's first sub-token carries its label in training, and a word's prediction is
read at its first sub-token (objectives.slots). The score is seqeval's micro F1 over BIO spans of
the word labels (metrics.slot_f1), so a predictor that says `Other` everywhere scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.data.massive import OTHER, MassiveExample, intent_labels, parse_annot_utt, slot_labels
from xsweep.errors import XsweepError
from xsweep.metrics import slot_f1, to_bio
from xsweep.models.prompted import PromptedModel, build_slot_model
from xsweep.data.encode import IGNORE, first_subtoken_labels, tokenize_cached
from xsweep.objectives.slots import slot_loss, word_predictions
from xsweep.train.batches import Batch, length_batches, pad, training_batches
from xsweep.train.tasks.protocol import METRICS, Evaluation, eval_mode, model_options


@dataclass
class SlotSplit:
    rows: list[MassiveExample]
    words: list[list[str]]
    gold: list[list[str]]
    """Slot name (or `Other`) of every word of every row."""
    input_ids: list[list[int]]
    word_ids: list[list[int | None]]
    """Word index of every token (None for special tokens)."""
    token_labels: list[list[int]]
    """Label index at each word's first sub-token, IGNORE elsewhere (and for labels the map lacks)."""

    def __len__(self) -> int:
        return len(self.rows)


class SlotTask:
    metric = METRICS["slot"]

    def __init__(self, cfg: ExperimentConfig, slots: list[str], tokenizer: Any):
        if not slots or slots[0] != OTHER:
            raise XsweepError(f"a slot label map starts with {OTHER!r}, got {slots[:3]}", where="labels.json",
                              fix="the label map is written by the trial; re-run it")
        if not getattr(tokenizer, "is_fast", False):
            raise XsweepError("slot filling needs a fast tokenizer (word_ids)",
                              fix="use a backbone whose tokenizer has a fast (Rust) version")
        self.cfg, self.slots, self.tokenizer = cfg, slots, tokenizer
        self.index = {name: i for i, name in enumerate(slots)}

    @classmethod
    def from_labels(cls, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> SlotTask:
        return cls(cfg, labels["slots"], tokenizer)

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[MassiveExample]) -> dict[str, Any]:
        intents = intent_labels(train)
        missing = next((row for row in train if row.annot_utt is None), None)
        if missing is not None:
            raise XsweepError(f"row {missing.id} of {missing.locale} train has no annot_utt: slot filling "
                              "needs the slot markup", where="head.kind",
                              fix="use the official MASSIVE files (with annot_utt), or head.kind vanilla/nli")
        # `Other` first: index 0 is the label of words outside every slot.
        return {"task": cfg.head.kind, "intents": intents, "slots": [OTHER] + slot_labels(train)}

    def build_model(self, encoder: Any) -> PromptedModel:
        return build_slot_model(encoder, num_labels=len(self.slots), **model_options(self.cfg))

    def encode(self, rows: Sequence[MassiveExample]) -> SlotSplit:
        rows = list(rows)
        words, gold = [], []
        for row in rows:
            if row.annot_utt is None:
                raise XsweepError(f"row {row.id} of {row.locale} has no annot_utt; slots cannot be scored",
                                  fix="use the official MASSIVE files (with annot_utt) for slot filling")
            row_words, row_labels = parse_annot_utt(row.annot_utt, row.locale)
            words.append(row_words)
            gold.append(row_labels)
        encoded = tokenize_cached(words, self.tokenizer, "words", self.cfg.data.max_seq_len)  # once per node
        word_ids = encoded.word_ids
        # A label the map lacks (a slot seen only in another locale's data) is never a training target.
        token_labels = [first_subtoken_labels(ids, [self.index.get(label, IGNORE) for label in labels])
                        for ids, labels in zip(word_ids, gold)]
        return SlotSplit(rows, words, gold, encoded.input_ids, word_ids, token_labels)

    def _collate(self, split: SlotSplit, indices: Sequence[int], device: torch.device) -> Batch:
        ids, mask = pad([split.input_ids[i] for i in indices], self.tokenizer.pad_token_id)
        labels, _ = pad([split.token_labels[i] for i in indices], IGNORE)
        return Batch(ids.to(device), mask.to(device), labels.to(device))

    def train_batches(self, split: SlotSplit, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Batch]:
        for indices in training_batches([len(ids) for ids in split.input_ids], batch_size, order,
                                        by_length=self.cfg.optim.bucket_by_length):
            yield self._collate(split, indices, device)

    def loss(self, model: PromptedModel, batch: Batch) -> torch.Tensor:
        return slot_loss(model(batch.input_ids, batch.attention_mask), batch.labels)

    @torch.no_grad()
    def predict(self, model: PromptedModel, split: SlotSplit, batch_size: int, device: torch.device) -> list[list[str]]:
        """The predicted label of every word of every row (words cut off by truncation: `Other`)."""
        predicted: list[list[str]] = [[] for _ in range(len(split))]
        with eval_mode(model):
            lengths = [len(ids) for ids in split.input_ids]
            for indices in length_batches(lengths, batch_size):  # far less padding than file order
                batch = self._collate(split, indices, device)
                logits = model(batch.input_ids, batch.attention_mask).cpu()
                for row, i in enumerate(indices):
                    best = word_predictions(logits[row], split.word_ids[i], len(split.words[i]), outside=0)
                    predicted[i] = [self.slots[label] for label in best]
        return predicted

    def evaluate(self, model: PromptedModel, split: SlotSplit, batch_size: int, device: torch.device) -> Evaluation:
        predicted = self.predict(model, split, batch_size, device)
        score = slot_f1(predicted, split.gold)
        rows = [{"id": row.id, "utt": row.utt, "words": words, "gold": to_bio(gold), "predicted": to_bio(pred)}
                for row, words, gold, pred in zip(split.rows, split.words, split.gold, predicted)]
        return Evaluation(score, rows)


__all__ = ["SlotSplit", "SlotTask"]
