"""Scores: intent accuracy, slot micro F1 over BIO spans (as MASSIVE), Tatoeba retrieval accuracy."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from seqeval.metrics import f1_score

from xsweep.errors import XsweepError

OUTSIDE = "Other"  # MASSIVE's label for words outside every slot


def intent_accuracy(predicted: Sequence[int] | torch.Tensor, gold: Sequence[int] | torch.Tensor) -> float:
    """Fraction of exact matches, as an exact ratio (the same number however it is recomputed from
    the predictions files). -1 is out of scope: a -1 prediction is right only for a -1 gold (SGD);
    a gold intent the label map does not know (-1, MASSIVE) is always wrong. Empty is an error."""
    predicted, gold = torch.as_tensor(predicted), torch.as_tensor(gold)
    if predicted.shape != gold.shape or predicted.numel() == 0:
        raise XsweepError(f"cannot score {predicted.numel()} predictions against {gold.numel()} gold labels",
                          fix="check the data's partitions")
    return int((predicted == gold).sum()) / gold.numel()


def to_bio(labels: Sequence[str], outside: str = OUTSIDE) -> list[str]:
    """Word labels -> BIO tags: a run of equal adjacent labels is one span (MASSIVE's convention).

    ["Other", "date", "date", "time"] -> ["O", "B-date", "I-date", "B-time"].
    """
    tags, previous = [], None
    for label in labels:
        if label == outside:
            tags.append("O")
        else:
            tags.append(("I-" if label == previous else "B-") + label)
        previous = label
    return tags


def slot_f1(predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], outside: str = OUTSIDE) -> float:
    """Micro F1 over slot spans (seqeval, default CoNLL mode), from per-word labels of each utterance."""
    if len(predicted) != len(gold):
        raise XsweepError(f"cannot score {len(predicted)} predicted utterances against {len(gold)} gold ones")
    for i, (p, g) in enumerate(zip(predicted, gold)):
        if len(p) != len(g):
            raise XsweepError(f"utterance {i}: {len(p)} predicted word labels for {len(g)} words")
    return float(f1_score([to_bio(g, outside) for g in gold], [to_bio(p, outside) for p in predicted]))


def retrieval_accuracy(queries: torch.Tensor, candidates: torch.Tensor) -> float:
    """Tatoeba (XTREME) accuracy: row i of `queries` must find row i of `candidates` as its nearest
    neighbour by cosine similarity.

    queries: (N, H), e.g. `<s>` of the non-English sentences; candidates: (N, H), the English ones.
    """
    if queries.shape != candidates.shape or queries.shape[0] == 0:
        raise XsweepError(f"retrieval needs two equal, non-empty sets; got {tuple(queries.shape)} and "
                          f"{tuple(candidates.shape)}")
    sims = F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    return (sims.argmax(dim=1) == torch.arange(len(queries), device=sims.device)).float().mean().item()
