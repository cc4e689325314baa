"""Slot filling on first sub-tokens: word labels -> token labels for training, token logits -> word labels.

Labels are MASSIVE's per-word slot names (`Other` outside slots), not BIO: span F1 merges adjacent
equal labels afterwards (xsweep.metrics.slot_f1). Only a word's first sub-token carries its label;
the other sub-tokens, specials and padding are IGNORE. Word labels become token labels when the
data is encoded (data.encode.first_subtoken_labels); this module reads predictions back the same way.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from xsweep.data.encode import IGNORE


def slot_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits: (B, T, S); labels: (B, T) with IGNORE off first sub-tokens. Mean cross-entropy."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1).to(logits.device),
                           ignore_index=IGNORE)


def word_predictions(logits: torch.Tensor, word_ids: Sequence[int | None], num_words: int,
                     outside: int) -> list[int]:
    """logits: (T, S) of one sequence. Returns one label per word, read at its first sub-token;
    words cut off by truncation get `outside`."""
    best = logits.argmax(-1).tolist()
    out, previous = [outside] * num_words, None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            out[word] = best[position]
        previous = word
    return out
