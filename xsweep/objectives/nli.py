"""NLI-based intent classification: pairs (premise, hypothesis) scored by a two-way entailment head.

Training: every example gives one positive pair (its utterance, its gold intent's hypothesis) and
one negative pair (its utterance, another intent's hypothesis), so a batch holds as many negatives
as positives. Negatives are drawn in-batch (the gold intents of the other examples), as in the
authors' code, but unlike their sampler a negative is never the example's own gold intent.
Inference: the candidate with the highest entailment probability wins; with a threshold (SGD:
0.5) an utterance whose best probability does not pass it is out of scope (-1).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from xsweep.errors import XsweepError

ENTAILMENT = 1  # class index of "entails" in the head's two logits; 0 is "does not entail"
OUT_OF_SCOPE = -1


def intent_hypothesis(intent: str) -> str:
    """The hypothesis for an intent, as the authors: the name with `_` as spaces (MASSIVE); a `/`
    (CoNLL data: `weather/find`) is a space too."""
    return intent.replace("_", " ").replace("/", " ")


@dataclass
class NliPairs:
    """A training batch of pairs: index into the batch's examples, hypothesis label, target."""

    example: list[int]
    """Which example (premise) each pair uses."""
    label: list[int]
    """Which label's hypothesis each pair uses."""
    target: torch.Tensor
    """(2B,) ENTAILMENT for the B positives (first), 0 for the B negatives (after)."""


def nli_pairs(gold: Sequence[int], num_labels: int, rng: random.Random,
              candidates: Sequence[Sequence[int]] | None = None) -> NliPairs:
    """One positive and one negative pair per example; a negative is never the gold label.

    gold: (B,) label of each example. candidates: optional per-example allowed labels (SGD: the
    intents of the turn's service). A negative is, in order of preference, the gold label of
    another example in the batch that is among this example's candidates, any other candidate,
    another example's gold label, then any other label; so every example gets one unless only a
    single label exists at all.
    """
    if num_labels < 2:
        raise XsweepError("NLI training needs at least 2 labels to draw negatives from")
    in_batch = sorted(set(gold))
    negatives = []
    for i, g in enumerate(gold):
        allowed = set(candidates[i]) if candidates is not None else None
        tiers = [
            [x for x in in_batch if x != g and (allowed is None or x in allowed)],
            sorted(allowed - {g}) if allowed is not None else [],
            [x for x in in_batch if x != g],
            [x for x in range(num_labels) if x != g],
        ]
        negatives.append(rng.choice(next(t for t in tiers if t)))
    batch = len(gold)
    target = torch.cat([torch.full((batch,), ENTAILMENT), torch.full((batch,), 1 - ENTAILMENT)])
    return NliPairs(example=list(range(batch)) * 2, label=list(gold) + negatives, target=target)


def nli_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits: (N, 2) from the entailment head; target: (N,) ENTAILMENT or not. Cross-entropy."""
    return F.cross_entropy(logits.float(), target.to(logits.device))


def entailment_probability(logits: torch.Tensor) -> torch.Tensor:
    """logits: (..., 2). Returns P(entails) (...)."""
    return logits.float().softmax(-1)[..., ENTAILMENT]


def nli_predict(entail_prob: torch.Tensor, threshold: float | None = None,
                candidate_mask: torch.Tensor | None = None) -> torch.Tensor:
    """entail_prob: (N, C) P(entails) of each utterance with each label's hypothesis.

    candidate_mask: optional (N, C) bool, True where a label is a candidate for that utterance.
    Returns (N,) the argmax label, or OUT_OF_SCOPE where `threshold` is set and not passed.
    """
    scores = entail_prob if candidate_mask is None else entail_prob.masked_fill(~candidate_mask, -1.0)
    best, label = scores.max(dim=1)
    if threshold is not None:
        label = torch.where(best > threshold, label, torch.full_like(label, OUT_OF_SCOPE))
    return label
