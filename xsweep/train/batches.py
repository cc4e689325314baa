"""Tokenized splits and batches with dynamic padding (each batch padded to its own longest row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from xsweep.data.massive import MassiveExample


@dataclass
class EncodedSplit:
    input_ids: list[list[int]]
    labels: torch.Tensor
    """(N,) intent index of each row; -1 for an intent the label map does not know."""
    pad_id: int

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor
    """(B, T) token ids, right-padded with the tokenizer's pad id."""
    attention_mask: torch.Tensor
    """(B, T) 1 for real tokens, 0 for padding."""
    labels: torch.Tensor
    """(B,) intent indices."""


def encode_split(rows: Sequence[MassiveExample], tokenizer, label_index: dict[str, int],
                 max_seq_len: int) -> EncodedSplit:
    encoded = tokenizer([row.utt for row in rows], truncation=True, max_length=max_seq_len)
    labels = torch.tensor([label_index.get(row.intent, -1) for row in rows], dtype=torch.long)
    return EncodedSplit(input_ids=encoded["input_ids"], labels=labels, pad_id=tokenizer.pad_token_id)


def collate(split: EncodedSplit, indices: Sequence[int], device: torch.device) -> Batch:
    width = max(len(split.input_ids[i]) for i in indices)
    ids = torch.full((len(indices), width), split.pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        tokens = split.input_ids[i]
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, : len(tokens)] = 1
    return Batch(ids.to(device), mask.to(device), split.labels[list(indices)].to(device))


def iter_batches(split: EncodedSplit, batch_size: int, *, shuffle: torch.Generator | None,
                 device: torch.device) -> Iterator[Batch]:
    """Batches in a seeded random order (training) or in file order (evaluation)."""
    order = torch.randperm(len(split), generator=shuffle).tolist() if shuffle is not None else range(len(split))
    order = list(order)
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], device)
