"""NLI-based intent classification as a downstream task (the paper's NLI classifier).

Training: each utterance of a batch gives one positive pair (utterance, its gold intent's
hypothesis) and one negative (utterance, another intent's hypothesis, never the gold one; see
objectives.nli.nli_pairs), so B utterances make a forward of 2B pairs.
Evaluation: every utterance against ALL intents' hypotheses; the prediction is the intent with
the highest entailment probability (MASSIVE has no out-of-scope, so no threshold).

Premises and hypotheses are tokenized once per split and joined on demand
(data.encode.NliPairs); evaluation runs the N x C pairs in forwards of `eval_batch_size` pairs,
in utterance-major order, so the probabilities reshape to (N, C) with no bookkeeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.data.encode import NliPairs as TokenizedPairs
from xsweep.data.massive import MassiveExample, intent_labels
from xsweep.metrics import intent_accuracy
from xsweep.models.pooling import with_prefix
from xsweep.models.prompted import PromptedModel, build_nli_model
from xsweep.objectives.nli import entailment_probability, intent_hypothesis, nli_loss, nli_pairs, nli_predict
from xsweep.train.batches import Batch, length_batches, pad, training_batches
from xsweep.train.tasks.protocol import METRICS, Evaluation, eval_mode, model_options


@dataclass
class NliSplit:
    rows: list[MassiveExample]
    gold: list[int]
    """Intent index of each row; -1 for an intent the label map does not know."""
    pairs: TokenizedPairs
    """Pair k = (row k // C, hypothesis k % C), C = number of intents."""

    def __len__(self) -> int:
        return len(self.rows)


class NliTask:
    metric = METRICS["nli"]

    def __init__(self, cfg: ExperimentConfig, intents: list[str], hypotheses: list[str], tokenizer: Any):
        self.cfg, self.intents, self.hypotheses, self.tokenizer = cfg, intents, hypotheses, tokenizer
        self.index = {name: i for i, name in enumerate(intents)}

    @classmethod
    def from_labels(cls, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> NliTask:
        return cls(cfg, labels["intents"], labels["hypotheses"], tokenizer)

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[MassiveExample]) -> dict[str, Any]:
        intents = intent_labels(train)
        # Saved, not recomputed: the hypotheses are part of what the model was trained on.
        return {"task": cfg.head.kind, "intents": intents, "hypotheses": [intent_hypothesis(name) for name in intents]}

    def build_model(self, encoder: Any) -> PromptedModel:
        return build_nli_model(encoder, **model_options(self.cfg))

    def encode(self, rows: Sequence[MassiveExample]) -> NliSplit:
        rows = list(rows)
        premises = with_prefix([row.utt for row in rows], self.cfg.backbone.text_prefix)
        pairs = TokenizedPairs(premises, self.hypotheses, self.tokenizer, self.cfg.data.max_seq_len)
        return NliSplit(rows, [self.index.get(row.intent, -1) for row in rows], pairs)

    def _collate(self, split: NliSplit, pair_indices: Sequence[int],
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = pad([split.pairs[k]["input_ids"] for k in pair_indices], self.tokenizer.pad_token_id)
        return ids.to(device), mask.to(device)

    def train_batches(self, split: NliSplit, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Batch]:
        """Batches of 2 x `batch_size` pairs: the positives first, then one negative per utterance."""
        labels = len(self.intents)
        for indices in training_batches(split.pairs.premise_lengths(), batch_size, order,
                                        by_length=self.cfg.optim.bucket_by_length):
            # Negatives are drawn from a stream seeded off `order`, which the trial's checkpoint
            # saves: a resumed trial draws the same negatives as an uninterrupted one.
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=order)))
            pairs = nli_pairs([split.gold[i] for i in indices], labels, rng)
            ids, mask = self._collate(split, [indices[e] * labels + k for e, k in zip(pairs.example, pairs.label)],
                                      device)
            yield Batch(ids, mask, pairs.target.to(device))

    def loss(self, model: PromptedModel, batch: Batch) -> torch.Tensor:
        return nli_loss(model(batch.input_ids, batch.attention_mask), batch.labels)

    @torch.no_grad()
    def entailment(self, model: PromptedModel, split: NliSplit, batch_size: int, device: torch.device) -> torch.Tensor:
        """(N, C) P(entails) of every utterance with every intent's hypothesis; `batch_size` pairs a forward.

        Pairs go through in order of length, so a batch is padded to its own longest pair rather
        than to the longest utterance among several (padding changes no real token's state)."""
        lengths = split.pairs.lengths()
        probs = torch.empty(len(lengths))
        with eval_mode(model):
            for indices in length_batches(lengths, batch_size):
                probs[indices] = entailment_probability(model(*self._collate(split, indices, device))).float().cpu()
        return probs.view(len(split), len(self.intents))

    def evaluate(self, model: PromptedModel, split: NliSplit, batch_size: int, device: torch.device) -> Evaluation:
        probs = self.entailment(model, split, batch_size, device)
        predicted = nli_predict(probs)
        score = intent_accuracy(predicted, split.gold)
        rows = [{"id": row.id, "utt": row.utt, "gold": row.intent, "predicted": self.intents[p],
                 "entailment": round(probs[i, p].item(), 6)}
                for i, (row, p) in enumerate(zip(split.rows, predicted.tolist()))]
        return Evaluation(score, rows)


__all__ = ["NliSplit", "NliTask"]
