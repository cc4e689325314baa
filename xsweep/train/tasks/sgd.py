"""The paper's SGD intent task as a downstream task (`data.dataset: sgd`, head.kind nli).

Examples are user frames of SGD dialogues (data.sgd.intent_examples): the premise is the previous
system utterance + the user utterance, the candidates are the intents of the frame's service, each
hypothesis is an intent's schema description. Which frames carry an intent is `data.intent_turns`
(see data/sgd.py): `active_intent` (the state's active intent) or `intent_acts` (only frames whose
actions inform or affirm an intent); every other frame is out of scope.

Training set: `data.dialogues_per_service` dialogues sampled per service (the paper: 5), written to
`few_shot_sample.json`; services in fewer dialogues are used whole and listed there.
Training batches: an in-scope frame gives one positive (its intent) and one negative (another
intent of its service where there is one, preferring the gold intents of the batch; see
objectives.nli.nli_pairs); an out-of-scope frame gives one negative (one of its service's
intents), so that "no candidate passes the threshold" is learnt as well.
Evaluation: every frame against its service's candidates only; the prediction is the best
candidate if its entailment probability passes OUT_OF_SCOPE_THRESHOLD (0.5), else out of scope.
Accuracy counts an out-of-scope frame correct when nothing passes, and an in-scope frame correct
when its intent is predicted.

Unlike MASSIVE's tasks, candidates come from the evaluated split's schema: SGD's dev and test
hold services never seen in training, and scoring them zero-shot from their descriptions is the
point of the NLI formulation. `labels.json` records the task, the turn choice, the threshold and
the training services' intents (which `xsweep predict` offers a bare utterance).

Reading the frames of a locale and sampling the training dialogues is data/sgd.py's
(`read_locale_examples`, `sample_training_examples`); this module is the task only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from xsweep.config import ExperimentConfig
from xsweep.data.encode import NliPairs as TokenizedPairs
from xsweep.data.sgd import SgdIntentExample
from xsweep.metrics import intent_accuracy
from xsweep.models.pooling import with_prefix
from xsweep.models.prompted import PromptedModel, build_nli_model
from xsweep.objectives.nli import (ENTAILMENT, OUT_OF_SCOPE, entailment_probability, nli_loss, nli_pairs,
                                   nli_predict)
from xsweep.train.batches import Batch, batch_order, pad, training_batches
from xsweep.train.tasks.protocol import METRICS, Evaluation, eval_mode, model_options

OUT_OF_SCOPE_THRESHOLD = 0.5
"""An SGD frame is out of scope when no candidate's P(entails) is above this (the paper's 0.5)."""


@dataclass
class SgdSplit:
    examples: list[SgdIntentExample]
    hypotheses: list[str]
    """Every distinct intent description of the split (a description is one hypothesis)."""
    candidates: list[list[int]]
    """Per example: the hypothesis index of each of its service's intents, in schema order."""
    gold: list[int]
    """Per example: position of its intent among its candidates; -1 (OUT_OF_SCOPE) for none."""
    pairs: TokenizedPairs
    """Pair i * H + h = (premise of example i, hypothesis h), H = len(hypotheses)."""

    def __len__(self) -> int:
        return len(self.examples)


class SgdTask:
    metric = METRICS["nli"]

    def __init__(self, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any):
        self.cfg, self.labels, self.tokenizer = cfg, labels, tokenizer
        self.threshold = float(labels.get("threshold", OUT_OF_SCOPE_THRESHOLD))

    @classmethod
    def from_labels(cls, cfg: ExperimentConfig, labels: dict[str, Any], tokenizer: Any) -> SgdTask:
        return cls(cfg, labels, tokenizer)

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[SgdIntentExample]) -> dict[str, Any]:
        """`labels.json` of an SGD trial (from all training frames, not the sample)."""
        services: dict[str, dict[str, str]] = {}
        for example in train:
            services.setdefault(example.service, dict(zip(example.candidates, example.descriptions)))
        return {"task": "sgd", "intent_turns": cfg.data.intent_turns, "threshold": OUT_OF_SCOPE_THRESHOLD,
                "services": dict(sorted(services.items()))}

    def build_model(self, encoder: Any) -> PromptedModel:
        return build_nli_model(encoder, **model_options(self.cfg))

    def encode(self, examples: Sequence[SgdIntentExample]) -> SgdSplit:
        examples = list(examples)
        index: dict[str, int] = {}
        candidates = [[index.setdefault(text, len(index)) for text in e.descriptions] for e in examples]
        gold = [OUT_OF_SCOPE if e.intent is None else e.candidates.index(e.intent) for e in examples]
        premises = with_prefix([e.premise for e in examples], self.cfg.backbone.text_prefix)
        pairs = TokenizedPairs(premises, list(index), self.tokenizer, self.cfg.data.max_seq_len)
        return SgdSplit(examples, list(index), candidates, gold, pairs)

    def _collate(self, split: SgdSplit, keys: Sequence[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = pad([split.pairs[k]["input_ids"] for k in keys], self.tokenizer.pad_token_id)
        return ids.to(device), mask.to(device)

    def train_batches(self, split: SgdSplit, batch_size: int, order: torch.Generator,
                      device: torch.device) -> Iterator[Batch]:
        """Per batch of `batch_size` frames: the in-scope frames' positives, their negatives, then
        one negative per out-of-scope frame."""
        width = len(split.hypotheses)
        for indices in training_batches(split.pairs.premise_lengths(), batch_size, order,
                                        by_length=self.cfg.optim.bucket_by_length):
            # Seeded off `order` (saved in the trial checkpoint): a resumed trial draws the same negatives.
            rng = random.Random(int(torch.randint(0, 2**62, (1,), generator=order)))
            scoped = [i for i in indices if split.gold[i] != OUT_OF_SCOPE]
            unscoped = [i for i in indices if split.gold[i] == OUT_OF_SCOPE]
            keys: list[int] = []
            targets = []
            if scoped:
                pairs = nli_pairs([split.candidates[i][split.gold[i]] for i in scoped], width, rng,
                                  [split.candidates[i] for i in scoped])
                keys += [scoped[e] * width + h for e, h in zip(pairs.example, pairs.label)]
                targets.append(pairs.target)
            keys += [i * width + rng.choice(split.candidates[i]) for i in unscoped]
            targets.append(torch.full((len(unscoped),), 1 - ENTAILMENT))
            ids, mask = self._collate(split, keys, device)
            yield Batch(ids, mask, torch.cat(targets).to(device))

    def loss(self, model: PromptedModel, batch: Batch) -> torch.Tensor:
        return nli_loss(model(batch.input_ids, batch.attention_mask), batch.labels)

    @torch.no_grad()
    def entailment(self, model: PromptedModel, split: SgdSplit, batch_size: int,
                   device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) P(entails) of every frame with each of its candidates, C = the most candidates of
        any frame, and the (N, C) bool mask of real candidates; `batch_size` pairs a forward."""
        width = len(split.hypotheses)
        keys = [i * width + h for i, hyps in enumerate(split.candidates) for h in hyps]
        flat = []
        with eval_mode(model):
            for chunk in batch_order(len(keys), batch_size, None):
                logits = model(*self._collate(split, [keys[k] for k in chunk], device))
                flat.append(entailment_probability(logits).cpu())
        probs = torch.cat(flat)
        most = max(len(c) for c in split.candidates)
        mask = torch.tensor([[j < len(c) for j in range(most)] for c in split.candidates])
        table = torch.zeros(len(split), most)
        table[mask] = probs  # row-major: the flat order of `keys`
        return table, mask

    def predictions(self, model: PromptedModel, split: SgdSplit, batch_size: int,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) position of the predicted candidate (-1: out of scope) and (N,) its best P(entails)."""
        probs, mask = self.entailment(model, split, batch_size, device)
        predicted = nli_predict(probs, threshold=self.threshold, candidate_mask=mask)
        return predicted, probs.masked_fill(~mask, -1.0).max(dim=1).values

    def evaluate(self, model: PromptedModel, split: SgdSplit, batch_size: int, device: torch.device) -> Evaluation:
        predicted, best = self.predictions(model, split, batch_size, device)
        score = intent_accuracy(predicted, split.gold)  # -1 == -1: out of scope predicted for an out-of-scope frame
        rows = [{"id": f"{e.dialogue_id}/{e.turn_index}/{e.service}", "service": e.service, "premise": e.premise,
                 "gold": e.intent, "predicted": None if p == OUT_OF_SCOPE else e.candidates[p],
                 "entailment": round(b, 6)}
                for e, p, b in zip(split.examples, predicted.tolist(), best.tolist())]
        return Evaluation(score, rows)

    def predict_utterances(self, model: PromptedModel, utterances: Sequence[str], batch_size: int,
                           device: torch.device) -> list[tuple[str | None, float]]:
        """(intent as `Service/Intent`, or None when out of scope; its P(entails)) of each bare
        utterance against every intent of the training services (it names no service of its own)."""
        names = [f"{svc}/{intent}" for svc, intents in self.labels["services"].items() for intent in intents]
        texts = [text for intents in self.labels["services"].values() for text in intents.values()]
        examples = [SgdIntentExample(dialogue_id="predict", turn_index=i, service="", system_utterance="",
                                     user_utterance=utt, intent=None, candidates=tuple(names),
                                     descriptions=tuple(texts)) for i, utt in enumerate(utterances)]
        predicted, best = self.predictions(model, self.encode(examples), batch_size, device)
        return [(None if p == OUT_OF_SCOPE else names[p], b) for p, b in zip(predicted.tolist(), best.tolist())]


__all__ = ["OUT_OF_SCOPE_THRESHOLD", "SgdSplit", "SgdTask"]
