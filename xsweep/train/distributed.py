"""Data parallelism for the worker loops: the rank and world of torch.distributed and the few
collectives the loops use (alignment, train/align.py; a downstream trial on a worker group,
train/downstream.py). Without a process group the world is 1 and every helper does nothing, so
the loops run unchanged in one process.

A downstream trial on W workers keeps its global batch: every worker draws the same batches from
the trial's data-order generator (the same seed), takes its own contiguous slice of each
(`shard`), weights its slice's mean loss by the slice's share of the batch's labelled targets,
and the workers sum their gradients (`sum_gradients`). The sum is the gradient of the global
batch's mean loss, the one a single process computes, up to the order of float additions.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

import torch
import torch.distributed as dist

from xsweep.data.encode import IGNORE


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    world = rank_and_world()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def sum_over_workers(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over the workers, in place (every rank gets the same values)."""
    if rank_and_world()[1] > 1:
        dist.all_reduce(tensor)
    return tensor


def sum_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Sum the trainable parameters' gradients over the workers, as one flat buffer (one collective
    a step). A parameter that got no gradient on this rank counts as zeros."""
    if rank_and_world()[1] == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p.grad))
        offset += p.numel()


def shard(batch: Any) -> tuple[Any, float]:
    """This rank's contiguous slice of a global training batch (rows of `input_ids`,
    `attention_mask`, `labels`), and the weight of its mean loss: its labelled targets over the
    batch's (targets equal to IGNORE count in no loss). A rank left without rows (a last batch
    smaller than the world) computes the first row's loss with weight 0, so it still takes part
    in the gradient sum with zeros."""
    rank, world = rank_and_world()
    if world == 1:
        return batch, 1.0
    rows = torch.arange(batch.labels.shape[0]).tensor_split(world)[rank]
    weight = None
    if len(rows) == 0:
        rows, weight = torch.arange(1), 0.0
    part = replace(batch, input_ids=batch.input_ids[rows], attention_mask=batch.attention_mask[rows],
                   labels=batch.labels[rows])
    if weight is None:
        weight = int((part.labels != IGNORE).sum()) / max(1, int((batch.labels != IGNORE).sum()))
    return part, weight


__all__ = ["barrier", "broadcast", "gather", "rank_and_world", "shard", "sum_gradients", "sum_over_workers"]
