"""The downstream worker loop: intents (vanilla or NLI head) or slots, with a prompt (PT/APT) or
fine-tuning (FT); one trial, or K trials of one group fused on one backbone forward.

Read top to bottom in a fixed order: each trial is prepared (seed, data, model, optimiser, its
checkpoint if it has one: train/member.py), then every step takes one batch of each running
trial, computes their losses, steps each trial's own optimiser and schedule, and a trial whose
epoch ended evaluates English dev (every `optim.eval_every_epochs`), keeps its best prompt+head,
checkpoints, reports, and stops on patience, pauses at its milestone (`TrialSpec.stop_after_epoch`,
sweep.pruning) or goes on; a non-finite loss ends it as diverged. A trial that stops leaves the
loop: its best is saved, tested on every locale of `spec.eval_locales` (none: English dev only;
`evaluate.evaluate_saved_trial` can score best/ later), and its record written, while the others
go on. What differs between tasks (model, batches, loss, score) is behind train/tasks/protocol.py.

**One trial** (`run_downstream`) is the loop with one member: its step is `task.loss(model, batch)`.

**Fused trials** (`run_trials` with K > 1, `sweep.fuse`): under PT and APT the backbone is
frozen, so trials of one group (same config but learning rate and seed) share it, and each step
stacks the running members' batches into ONE encoder forward in which every row goes through its
own member's prompt (`models.prompts.fused_features`, the same forward a lone trial runs with K = 1);
each member's head reads its own rows and the loss summed over members is backpropagated once. A
member's loss depends only on its own prompt and head, so each member's AdamW gets exactly its
own gradient. Each member keeps everything else of a trial: seed, data order, schedule, dev
evaluations, patience, checkpoint at every evaluation (`trials/<id>/checkpoint.pt`, resumed as a
lone trial's), record, report and TensorBoard folder; its padding ratio counts the positions its
rows took in the shared, padded batches. Limits: pt or apt, the vanilla intent head on MASSIVE,
not fp16 (`check_fusable`).

Equality, with dropout off (tests/test_fused.py): in fp32 a fused member's dev history, best and
test scores equal its trial run alone to 1e-5 (losses 1e-4): padding the rows to another width
changes sums' order, not results. In bf16 (backbone kept in bf16, autocast) its dev and test
scores stay within 0.02 (absolute accuracy) and its mean training losses within 0.005 of the
trial run alone: the rounding of a bf16 forward depends on the batch's shapes. With dropout on, every row
draws its own masks, so members draw independent masks, but not those they would draw alone.
Resumption is exact: a member continues from its checkpoint with the state it saved; with
dropout on, the shared torch generator continues exactly when the members' checkpoints are of one
step (as at a pruning milestone), otherwise as the last member's set-up leaves it.

**One trial on a worker group** (`resources.num_workers` W > 1, sweep/workers.py): every worker runs
this loop for the same trial under torch.distributed. Each draws the same global batches from the
trial's seed, computes the loss of its own slice of each, and the workers sum their gradients
(train/distributed.py), so every worker takes the step a single process takes on the whole batch
and they stay identical; the loss values are summed too, so every worker logs the batch's mean
loss and judges divergence alike. Dev evaluations run on every worker (same weights, same score,
same patience decision); only rank 0's files and reports are the trial's. Fused runs are one process.

Every evaluation writes the trial's `checkpoint.pt` (train/checkpoint.py); a trial started again
(a killed worker retried by Ray, `xsweep run --resume`, a paused trial) continues from it and ends
exactly where an uninterrupted trial would have.

The loop knows nothing of Ray: `report` is a callable, so the same code runs inside a Ray Tune
actor, in a plain process, or in a test.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import torch

from xsweep.config import ExperimentConfig, from_dict
from xsweep.errors import XsweepError
from xsweep.models.backbone import load_backbone
from xsweep.models.precision import autocast
from xsweep.record import TrialRecord
from xsweep.train.batches import token_counts
from xsweep.train.checkpoint import CHECKPOINT_FILE
from xsweep.train.distributed import rank_and_world, shard, sum_gradients, sum_over_workers
from xsweep.train.member import (Member, close, diverge, end_epoch, new_record, open_member, prepare, resume_point,
                                 seed_everything, take_time)
from xsweep.train.spec import Reporter, TrialSpec
from xsweep.trial_log import TrialWriter


def run_downstream(spec: TrialSpec, report: Reporter | None = None, *, writer: TrialWriter | None = None,
                   load_backbone: Callable[..., tuple] = load_backbone) -> TrialRecord:
    """Run one downstream trial and return its record (also written to `spec.trial_dir`).
    `report` receives the metrics of every evaluation; `writer` the TensorBoard scalars, and the
    loop closes it with the trial's status (default: a writer on `spec.tensorboard_dir`).
    `load_backbone`: how the frozen encoder and tokenizer are obtained (a process that hosts many
    trials passes its cache, `sweep.hosting.backbone_loader`)."""
    return run_trials([spec], [report], writers=[writer], load_backbone=load_backbone)[0]


def run_trials(specs: Sequence[TrialSpec], reports: Sequence[Reporter | None] | None = None, *,
               writers: Sequence[TrialWriter | None] | None = None,
               load_backbone: Callable[..., tuple] = load_backbone) -> list[TrialRecord]:
    """Run the trials `specs` in one loop, one alone or several of one group fused (see above), and
    return their records in order, each also written to its `spec.trial_dir`. `reports[i]` and
    `writers[i]` are member i's, as `run_downstream`'s `report` and `writer`."""
    reports = list(reports) if reports is not None else [None] * len(specs)
    writers = list(writers) if writers is not None else [None] * len(specs)
    if len(reports) != len(specs) or len(writers) != len(specs):
        raise XsweepError(f"run_trials got {len(specs)} trials but {len(reports)} reporters and {len(writers)} writers",
                          where="run_trials")
    cfgs = [from_dict(s.config, source=f"trial {s.trial_id}") for s in specs]
    check_fusable(specs, cfgs)
    members: list[Member] = []
    shared: dict[str, tuple] = {}

    def backbone(*args, **kwargs) -> tuple:  # fused: one frozen encoder, loaded once, for every member
        if "loaded" not in shared:
            shared["loaded"] = load_backbone(*args, **kwargs)
        return shared["loaded"]

    try:
        for spec, cfg, report, writer in zip(specs, cfgs, reports, writers):
            member, checkpoint = open_member(spec, cfg, report or (lambda metrics: None), writer)
            members.append(member)
            prepare(member, checkpoint, backbone if len(specs) > 1 else load_backbone)
            take_time(member)
            if checkpoint is not None:
                resume_point(member)
        _train(members)
    except Exception as exc:  # the record must say how the trial ended, whatever ended it
        for member in members:
            if not member.done:
                member.record.status, member.record.error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        for member in members:
            if not member.done:
                close(member)  # marks the HParams session as completed, failed or diverged
    return [m.record for m in members]


def _train(members: list[Member]) -> None:
    """Steps until every member has stopped; each member's epoch ends after its own last batch."""
    for member in members:
        member.model.train()  # keeps a frozen backbone in eval mode if backbone.dropout is off
    while running := [m for m in members if not m.done]:
        started = time.perf_counter()
        batches = [m.next_batch() for m in running]
        width = max(b.attention_mask.shape[1] for b in batches)  # of the fused batch (alone: its own)
        for member, batch in zip(running, batches):
            member.positions += batch.attention_mask.shape[0] * width
            member.tokens += token_counts(batch.attention_mask)[1]
        first = running[0]
        with autocast(first.precision, first.device):
            if len(running) == 1:
                # On a worker group this worker's slice, weighted so the workers' sum is the batch's mean.
                part, weight = shard(batches[0])
                losses = [first.task.loss(first.model, part) * weight]
            else:
                losses = first.task.shared_losses([m.model for m in running], batches)
        # One device sync per step; on a worker group also the one agreement on the loss (so every
        # worker decides divergence alike).
        values = sum_over_workers(torch.stack([loss.detach() for loss in losses])).tolist()
        live = []
        for member, loss, value in zip(running, losses, values):
            if math.isfinite(value):
                live.append((member, loss, value))
            else:
                diverge(member, value)
        for member, _, _ in live:
            member.optimizer.zero_grad(set_to_none=True)
        if live:
            # Each loss reaches only its own member's prompt and head; the scaler acts only under fp16.
            sum(member.scaler.scale(loss) for member, loss, _ in live).backward()
        for member, _, value in live:
            sum_gradients(p for group in member.optimizer.param_groups for p in group["params"])  # W > 1: the batch's
            member.scaler.step(member.optimizer)
            member.scaler.update()
            member.scheduler.step()
            member.step += 1
            member.losses.append(value)
            member.writer.scalar("train/loss", value, member.step)
        share = (time.perf_counter() - started) / len(running)
        for member in running:
            member.seconds += share
        for member, _, _ in live:
            if member.epoch_ended():
                member.started = time.perf_counter()
                end_epoch(member)


def check_fusable(specs: Sequence[TrialSpec], cfgs: Sequence[ExperimentConfig]) -> None:
    """Refuse trials that cannot share one loop: none, one twice, other groups, trained backbones,
    other heads, fp16 (one trial alone is always fine)."""
    if not specs:
        raise XsweepError("run_trials needs at least one trial", where="run_trials")
    ids = [s.trial_id for s in specs]
    if len(set(ids)) != len(ids):
        raise XsweepError(f"run_trials got the same trial twice: {sorted(ids)}", where="run_trials")
    if len(specs) == 1:
        return
    if rank_and_world()[1] > 1:
        raise XsweepError(f"run_trials got {len(specs)} trials on a worker group of {rank_and_world()[1]}: a worker "
                          "group runs one trial", where="resources.num_workers",
                          fix="set sweep.fuse: 1, or resources.num_workers: 1")
    first = specs[0]
    for spec, cfg in zip(specs, cfgs):
        if (spec.group_key, spec.backbone_path, spec.data_dir) != (first.group_key, first.backbone_path,
                                                                   first.data_dir):
            raise XsweepError(f"trial {spec.trial_id} is not of the group of {first.trial_id}: fused trials "
                              "must share group (config but lr and seed), backbone and data", where="run_trials",
                              fix="fuse only trials of one group")
        if cfg.method not in ("pt", "apt"):
            raise XsweepError(f"method {cfg.method} trains the backbone: its trials cannot share one",
                              where="method", fix="fuse pt or apt trials only")
        if cfg.optim.precision == "fp16":
            raise XsweepError("fused trials compute in fp32 or bf16, not fp16", where="optim.precision",
                              fix="use bf16 (or fp32), or sweep.fuse=1")
        if cfg.head.kind != "vanilla" or cfg.data.dataset != "massive":
            raise XsweepError(f"fused trials support the vanilla intent head on MASSIVE, not "
                              f"{cfg.data.dataset}/{cfg.head.kind}", where="head.kind",
                              fix="run these trials one by one (sweep.fuse=1)")


__all__ = ["CHECKPOINT_FILE", "check_fusable", "new_record", "run_downstream", "run_trials", "seed_everything"]
