"""Task heads on the encoder's hidden states, RoBERTa-style (dense, tanh, dropout, projection) on `<s>`."""

from __future__ import annotations

import torch
from torch import nn


class ClassificationHead(nn.Module):
    """Sentence classification on the first token (`<s>` / `[CLS]`), as RobertaClassificationHead."""

    def __init__(self, hidden: int, num_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden, num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, T, H). Returns logits (B, num_labels)."""
        x = self.dropout(hidden_states[:, 0])
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

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states: (B, T, H). Returns logits (B, T, num_labels)."""
        return self.classifier(self.dropout(hidden_states))
