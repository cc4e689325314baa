"""Evaluation of an intent model on an encoded split."""

from __future__ import annotations

import torch

from xsweep.errors import XsweepError
from xsweep.train.batches import EncodedSplit, iter_batches


@torch.no_grad()
def predict(model: torch.nn.Module, split: EncodedSplit, batch_size: int, device: torch.device) -> torch.Tensor:
    """(N,) predicted intent indices, in the split's order."""
    was_training = model.training
    model.eval()
    predictions = [model(b.input_ids, b.attention_mask).argmax(-1).cpu()
                   for b in iter_batches(split, batch_size, shuffle=None, device=device)]
    model.train(was_training)
    return torch.cat(predictions)


def accuracy(model: torch.nn.Module, split: EncodedSplit, batch_size: int, device: torch.device) -> float:
    """Fraction of rows whose predicted intent is the gold one; an empty split is an error."""
    if len(split) == 0:
        raise XsweepError("cannot evaluate on an empty split", fix="check the data's partitions")
    return (predict(model, split, batch_size, device) == split.labels).float().mean().item()
