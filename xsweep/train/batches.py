"""Tokenized splits and batches with dynamic padding (each batch padded to its own longest row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

from xsweep.data.encode import tokenize_cached
from xsweep.data.massive import MassiveExample
from xsweep.models.pooling import with_prefix


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
    """(B,) intent indices, or (B, T) token labels padded with the loss's ignore index."""


def encode_split(rows: Sequence[MassiveExample], tokenizer, label_index: dict[str, int],
                 max_seq_len: int, text_prefix: str = "") -> EncodedSplit:
    """Every row's utterance after `text_prefix` (`backbone.text_prefix`), tokenized once per node."""
    encoded = tokenize_cached(with_prefix([row.utt for row in rows], text_prefix), tokenizer, "text", max_seq_len)
    labels = torch.tensor([label_index.get(row.intent, -1) for row in rows], dtype=torch.long)
    return EncodedSplit(input_ids=encoded.input_ids, labels=labels, pad_id=tokenizer.pad_token_id)


def pad(sequences: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad `sequences` to the longest: ((B, T) values, (B, T) mask of 1 on real entries).

    One tensor built from one padded list: an NLI evaluation pads hundreds of thousands of pairs,
    where a per-row copy into a preallocated tensor costs several times more.
    """
    width = max(len(s) for s in sequences)
    values = torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences], dtype=torch.long)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], dtype=torch.long)
    return values, mask


def collate(split: EncodedSplit, indices: Sequence[int], device: torch.device) -> Batch:
    ids, mask = pad([split.input_ids[i] for i in indices], split.pad_id)
    return Batch(ids.to(device), mask.to(device), split.labels[list(indices)].to(device))


def batch_order(size: int, batch_size: int, shuffle: torch.Generator | None) -> Iterator[list[int]]:
    """Row indices of each batch: a seeded random order (training) or file order (evaluation)."""
    order = torch.randperm(size, generator=shuffle).tolist() if shuffle is not None else list(range(size))
    for start in range(0, size, batch_size):
        yield order[start : start + batch_size]


POOL_BATCHES = 50
"""Length-bucketed training sorts pools of this many batches by length (see `training_batches`)."""


def training_batches(lengths: Sequence[int], batch_size: int, order: torch.Generator, *,
                     by_length: bool) -> list[list[int]]:
    """Row indices of one epoch's training batches, every row once, drawn from `order` alone (so a
    checkpoint of `order` replays the epoch).

    `by_length` False: a random permutation cut into batches (`batch_order`). True: the random
    permutation is cut into pools of POOL_BATCHES batches, each pool is sorted by length and cut
    into batches, and the batches are shuffled; a batch then holds rows of similar length, so it
    pads far less, while each pool is still a random sample of the data.
    """
    if not by_length:
        return list(batch_order(len(lengths), batch_size, order))
    permuted = torch.randperm(len(lengths), generator=order).tolist()
    pool = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(permuted), pool):
        by_size = sorted(permuted[start : start + pool], key=lengths.__getitem__)  # stable: ties keep the draw
        batches += [by_size[i : i + batch_size] for i in range(0, len(by_size), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=order).tolist()]


def stack_batches(batches: Sequence[Batch], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Several batches as one forward's rows, each right-padded to the longest: ((N, T) token ids,
    (N, T) attention mask), N the batches' rows in order (fused trials: one batch per member)."""
    width = max(b.input_ids.shape[1] for b in batches)
    ids = torch.cat([torch.nn.functional.pad(b.input_ids, (0, width - b.input_ids.shape[1]), value=pad_id)
                     for b in batches])
    mask = torch.cat([torch.nn.functional.pad(b.attention_mask, (0, width - b.attention_mask.shape[1]), value=0)
                      for b in batches])
    return ids, mask


def token_counts(mask: torch.Tensor) -> tuple[int, int]:
    """(positions, real tokens) of a batch's (B, T) attention mask; positions / tokens is its padding ratio."""
    return mask.numel(), int(mask.sum())


def length_batches(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Row indices of evaluation batches, shortest rows first (ties in file order).

    Each batch is padded to its own longest row, so batches of similar lengths pad far less than
    batches in file order; padding is masked out, so every row's result is the same either way.
    Callers put results back in file order by these indices.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def iter_batches(split: EncodedSplit, batch_size: int, *, shuffle: torch.Generator | None,
                 device: torch.device, by_length: bool = False) -> Iterator[Batch]:
    """Batches in a seeded random order (training, bucketed by length if `by_length`) or in file
    order (evaluation)."""
    if shuffle is None:
        indices_of = batch_order(len(split), batch_size, None)
    else:
        indices_of = training_batches([len(ids) for ids in split.input_ids], batch_size, shuffle, by_length=by_length)
    for indices in indices_of:
        yield collate(split, indices, device)
