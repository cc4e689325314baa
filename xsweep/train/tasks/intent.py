"""Vanilla intent classification: a head over all intents on the pooled sentence, cross-entropy, accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.data.massive import MassiveExample, intent_labels
from xsweep.metrics import intent_accuracy
from xsweep.models.prompted import PromptedModel, build_intent_model, shared_features
from xsweep.train.batches import Batch, EncodedSplit, collate, encode_split, iter_batches, length_batches, stack_batches
from xsweep.train.tasks.protocol import METRICS, Evaluation, eval_mode, model_options


@dataclass
class IntentSplit:
    rows: list[MassiveExample]
    encoded: EncodedSplit

    def __len__(self) -> int:
        return len(self.rows)


class IntentTask:
    """Vanilla intent classification: a head over all intents on the pooled sentence, cross-entropy."""

    metric = METRICS["vanilla"]

    def __init__(self, cfg: ExperimentConfig, intents: list[str], tokenizer: Any):
        self.cfg, self.intents, self.tokenizer = cfg, intents, tokenizer
        self.index = {name: i for i, name in enumerate(intents)}

    @classmethod
    def from_labels(cls, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> IntentTask:
        return cls(cfg, labels["intents"], tokenizer)

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[MassiveExample]) -> dict[str, Any]:
        """From ALL training rows of the training locale, not the few-shot sample: the map, and so
        the head's shape, is the same for every shot count and sample seed."""
        return {"task": cfg.head.kind, "intents": intent_labels(train)}

    def build_model(self, encoder: Any) -> PromptedModel:
        return build_intent_model(encoder, num_labels=len(self.intents), **model_options(self.cfg))

    def encode(self, rows: Sequence[MassiveExample]) -> IntentSplit:
        return IntentSplit(list(rows), encode_split(rows, self.tokenizer, self.index, self.cfg.data.max_seq_len,
                                                      self.cfg.backbone.text_prefix))

    def train_batches(self, split: IntentSplit, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Batch]:
        return iter_batches(split.encoded, batch_size, shuffle=order, device=device,
                            by_length=self.cfg.optim.bucket_by_length)

    def loss(self, model: PromptedModel, batch: Batch) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(model(batch.input_ids, batch.attention_mask), batch.labels)

    def shared_losses(self, models: Sequence[PromptedModel], batches: Sequence[Batch]) -> list[torch.Tensor]:
        """`loss(models[k], batches[k])` for each k, in one forward of the frozen encoder the models
        share (fused trials, train/downstream.py): the batches are padded to the longest and stacked,
        which changes no real token's hidden state (padding is masked out of attention)."""
        ids, mask = stack_batches(batches, self.tokenizer.pad_token_id)
        hidden = shared_features(models, ids, mask, [len(b.labels) for b in batches])
        masks = mask.split([len(b.labels) for b in batches])
        return [torch.nn.functional.cross_entropy(model.head(part, part_mask), batch.labels)
                for model, part, part_mask, batch in zip(models, hidden, masks, batches)]

    @torch.no_grad()
    def evaluate(self, model: PromptedModel, split: IntentSplit, batch_size: int, device: torch.device) -> Evaluation:
        predicted = torch.empty(len(split), dtype=torch.long)
        with eval_mode(model):
            lengths = [len(ids) for ids in split.encoded.input_ids]
            for indices in length_batches(lengths, batch_size):  # far less padding than file order
                batch = collate(split.encoded, indices, device)
                predicted[indices] = model(batch.input_ids, batch.attention_mask).argmax(-1).cpu()
        score = intent_accuracy(predicted, split.encoded.labels)
        rows = [{"id": row.id, "utt": row.utt, "gold": row.intent, "predicted": self.intents[p]}
                for row, p in zip(split.rows, predicted.tolist())]
        return Evaluation(score, rows)


__all__ = ["IntentSplit", "IntentTask"]
