"""Task heads on the encoder's hidden states: RoBERTa-style sentence classification (dense, tanh,
dropout, projection) on the pooled sentence vector, and a per-token tagger."""

from __future__ import annotations

import torch
from torch import nn

from xsweep.models.pooling import pool


class ClassificationHead(nn.Module):
    """Sentence classification, as RobertaClassificationHead, on the sentence's vector: the first
    token's state (`pooling` "cls", `<s>` / `[CLS]`) or the mean of the real tokens' ("mean")."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1, pooling: str = "cls"):
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, T, H); attention_mask: (B, T). Returns logits (B, num_labels)."""
        x = self.dropout(pool(hidden_states, attention_mask, self.pooling))
        x = torch.tanh(self.dense(x))
        return self.out_proj(self.dropout(x))


class TokenTagger(nn.Module):
    """Per-token slot logits (dropout, linear), as HF's token classification heads.

    It sees only the hidden states of the input tokens (the prompt's positions are removed before
    any head), and training reads only each word's first sub-token (see objectives.slots).
    """

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, T, H); attention_mask (B, T), unused: padded positions are never scored.
        Returns logits (B, T, num_labels)."""
        return self.classifier(self.dropout(hidden_states))
