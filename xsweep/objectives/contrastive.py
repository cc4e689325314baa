"""Contrastive alignment: InfoNCE over `<s>` representations with cosine similarity."""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.05  # the paper's value


def info_nce(x: torch.Tensor, y: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Row i of x must be closest to row i of y among all rows of y (the in-batch negatives).

    x, y: (B, H), the `<s>` states of the masked source and target sequences. Returns the mean
    cross-entropy over the B rows of cosine(x_i, y_j) / temperature.
    """
    logits = F.normalize(x.float(), dim=-1) @ F.normalize(y.float(), dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(x.shape[0], device=x.device))
