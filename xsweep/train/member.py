"""One trial inside the downstream loop (train/downstream.py): what it owns, and how it starts (or
resumes), ends an epoch, pauses, diverges and finishes.

A trial alone is a loop of one member; fused trials are several members taking their steps
together. Either way a member owns everything of its trial but the frozen backbone: seed, sample,
label map, task, prompt and head, optimiser, schedule, gradient scaler, data-order generator, dev
evaluations and patience, best state, checkpoint, record, report and TensorBoard writer.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from xsweep.atomic import write_json
from xsweep.config import ExperimentConfig
from xsweep.errors import XsweepError
from xsweep.models.precision import allow_tf32, backbone_dtype, resolve_precision, autocast
from xsweep.models.prompted import PromptedModel, load_prompt_for_apt, save_trainable
from xsweep.record import DevPoint, TrialRecord, write_record
from xsweep.train.align_folder import finished_folder
from xsweep.train.checkpoint import CHECKPOINT_FILE, read_checkpoint, restore_checkpoint, write_checkpoint
from xsweep.train.distributed import rank_and_world
from xsweep.train.evaluate import evaluate_locales, trial_device
from xsweep.train.schedule import linear_warmup_decay
from xsweep.train.spec import Reporter, TrialSpec
from xsweep.train.tasks import METRICS, Task, make_task, read_examples, sample_training, task_labels
from xsweep.trial_log import TrialWriter


def seed_everything(seed: int) -> None:
    """`seed` sets initialisation, data order and dropout: all three draw from these generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def new_record(spec: TrialSpec, cfg: ExperimentConfig) -> TrialRecord:
    """The record of a trial about to start: who it is, what it trains, and where it runs."""
    return TrialRecord(trial_id=spec.trial_id, group_key=spec.group_key, group_name=spec.group_name,
                       lr=cfg.optim.lr, seed=cfg.seed, metric=METRICS[cfg.head.kind], config=spec.config,
                       aligned_on=spec.aligned_on, worker=f"{socket.gethostname()}:{os.getpid()}",
                       workers=rank_and_world()[1])


@dataclass
class Member:
    spec: TrialSpec
    cfg: ExperimentConfig
    record: TrialRecord
    writer: TrialWriter
    report: Reporter
    started: float = field(default_factory=time.perf_counter)
    seconds: float = 0.0
    """Seconds of work on this trial, over its interrupted and resumed runs: its own set-up,
    evaluations and tests, and its share of each step (a fused step's time split among its members)."""
    # Set by `prepare`:
    device: torch.device = torch.device("cpu")
    precision: str = "fp32"
    labels: dict = field(default_factory=dict)
    task: Task | None = None
    model: PromptedModel | None = None
    train_split: Any = None
    dev_split: Any = None
    optimizer: Any = None
    scheduler: Any = None
    scaler: Any = None
    order: torch.Generator | None = None
    # Where it stands:
    epoch: int = 0
    """Epochs completed; the one being trained is epoch + 1."""
    step: int = 0
    since_best: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    losses: list[float] = field(default_factory=list)
    positions: int = 0
    """Token positions of this run's training batches that hold this member's rows (a fused batch
    is padded to its longest row, any member's), for the record's padding ratio."""
    tokens: int = 0
    batches: Iterator | None = None
    upcoming: Any = None
    """The epoch's next batch, fetched one ahead so the loop knows when an epoch ends; None: the
    next batch starts a new epoch (each epoch's order is drawn from `order` alone)."""
    done: bool = False

    @property
    def trial_dir(self) -> Path:
        return Path(self.spec.trial_dir)

    def next_batch(self) -> Any:
        if self.upcoming is None:
            self.batches = iter(self.task.train_batches(self.train_split, self.cfg.optim.batch_size, self.order,
                                                        self.device))
            self.upcoming = next(self.batches)
        batch, self.upcoming = self.upcoming, next(self.batches, None)
        return batch

    def epoch_ended(self) -> bool:
        return self.upcoming is None


def open_member(spec: TrialSpec, cfg: ExperimentConfig, report: Reporter, writer: TrialWriter | None
                ) -> tuple[Member, dict[str, Any] | None]:
    """The trial's record and writer, and its checkpoint if it has one. A fresh trial writes its
    record now; a resumed one keeps its record until it has more to say. An unreadable
    checkpoint fails the trial here (record `failed`, the error raised)."""
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = new_record(spec, cfg)
    try:
        checkpoint = read_checkpoint(trial_dir / CHECKPOINT_FILE, spec)
    except XsweepError as exc:
        record.status, record.error = "failed", exc.message
        write_record(record, trial_dir)
        if writer is not None:
            writer.close(record.status)
        raise
    if checkpoint is None:
        write_record(record, trial_dir)
    writer = writer if writer is not None else TrialWriter(Path(spec.tensorboard_dir))
    return Member(spec=spec, cfg=cfg, record=record, writer=writer, report=report), checkpoint


def prepare(member: Member, checkpoint: dict[str, Any] | None, load_backbone: Callable[..., tuple]) -> None:
    """Seed, data, model, optimiser, then the checkpoint's state if there is one, drawing the same
    random numbers in the same order whether the trial runs alone or fused. `load_backbone`: the
    frozen encoder and tokenizer (a fused run loads them once and hands the same to every member;
    loading draws no random numbers)."""
    cfg, spec, record, m = member.cfg, member.spec, member.record, member
    seed_everything(cfg.seed)
    m.device = trial_device(cfg)
    data_dir, locale = Path(spec.data_dir), cfg.data.train_locale
    # MASSIVE rows or SGD frames, as cfg.data.dataset says (train/tasks/).
    train_all = read_examples(cfg, data_dir, locale, "train")
    train_rows = sample_training(cfg, train_all, m.trial_dir / "few_shot_sample.json")  # k per intent, any task
    m.labels = task_labels(cfg, train_all)  # from all of train: the same map for every shot count
    write_json(m.trial_dir / "labels.json", m.labels)
    dev = read_examples(cfg, data_dir, locale, "dev")

    m.precision = resolve_precision(cfg.optim.precision, m.device)
    record.precision, record.matmul_tf32 = m.precision, allow_tf32(m.precision, m.device)
    encoder, tokenizer = load_backbone(spec.backbone_path, attn_implementation=cfg.backbone.attn_implementation,
                                       dtype=backbone_dtype(m.precision, cfg.method))
    m.task = make_task(cfg, m.labels, tokenizer)
    m.model = m.task.build_model(encoder)
    if cfg.method == "apt":
        load_prompt_for_apt(m.model, finished_folder(cfg.prompt.init_from))  # in a bucket run, a URI
    m.model.to(m.device)

    m.train_split, m.dev_split = m.task.encode(train_rows), m.task.encode(dev)
    trainable = [p for p in m.model.parameters() if p.requires_grad]
    m.optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    total_steps = math.ceil(len(m.train_split) / cfg.optim.batch_size) * cfg.optim.epochs
    m.scheduler = torch.optim.lr_scheduler.LambdaLR(
        m.optimizer, linear_warmup_decay(total_steps, int(cfg.optim.warmup_ratio * total_steps)))
    m.scaler = torch.amp.GradScaler(m.device.type, enabled=m.precision == "fp16")  # fp16 gradients underflow without it
    metrics = [f"dev/{locale}/{m.task.metric}", "best_dev", *(f"test/{loc}/{m.task.metric}" for loc in spec.eval_locales)]
    m.writer.hparams(spec.hparams or {"seed": cfg.seed}, metrics, config=spec.config)
    m.order = torch.Generator().manual_seed(cfg.seed)
    if checkpoint is not None:
        # Last, so that the random-number generators are those of the moment it was saved.
        m.epoch, m.step, m.since_best, m.best_state, before = restore_checkpoint(
            checkpoint, m.model, m.optimizer, m.scheduler, m.scaler, m.order, record)
        m.seconds += before


def take_time(member: Member) -> None:
    """Add the seconds since the member's last account to its own."""
    now = time.perf_counter()
    member.seconds += now - member.started
    member.started = now


def resume_point(member: Member) -> None:
    """A resumed member that already stands where it must stop: finish it, or pause it again."""
    cfg = member.cfg
    if member.since_best >= cfg.optim.patience or member.epoch >= cfg.optim.epochs:
        finish(member)  # resumed after its last evaluation: training had already stopped
    elif pauses_at(member, member.epoch):
        pause(member)  # asked again to stop where it already stands


def end_epoch(member: Member) -> None:
    """The epoch's last step is taken: evaluate English dev if due, keep the best, checkpoint,
    report; then stop on patience, pause at a milestone, finish after the last epoch, or go on."""
    m, cfg, record = member, member.cfg, member.record
    m.epoch += 1
    epoch, locale, metric = m.epoch, cfg.data.train_locale, record.metric
    if epoch % cfg.optim.eval_every_epochs and epoch != cfg.optim.epochs:
        return
    with autocast(m.precision, m.device):
        dev_score = m.task.evaluate(m.model, m.dev_split, cfg.optim.eval_batch_size, m.device).score
    mean_loss = float(np.mean(m.losses)) if m.losses else float("nan")
    m.losses = []
    record.padding_ratio = m.positions / m.tokens if m.tokens else None
    improved = record.add_dev(DevPoint(step=m.step, epoch=epoch, score=dev_score, train_loss=mean_loss))
    m.writer.scalar(f"dev/{locale}/{metric}", dev_score, m.step)
    if m.spec.test_at_every_evaluation:  # draws no random numbers: training is unchanged
        for test_locale, score in evaluate_locales(m.task, m.model, Path(m.spec.data_dir), m.spec.eval_locales,
                                                   m.trial_dir, cfg.optim.eval_batch_size, m.device,
                                                   m.precision).items():
            m.writer.scalar(f"test_curve/{test_locale}/{metric}", score, m.step)
    if improved:
        m.since_best = 0
        m.best_state = {k: v.detach().clone() for k, v in m.model.trainable_state_dict().items()}
    else:
        m.since_best += 1
    take_time(m)
    write_checkpoint(m.trial_dir / CHECKPOINT_FILE, model=m.model, best_state=None if improved else m.best_state,
                     optimizer=m.optimizer, scheduler=m.scheduler, scaler=m.scaler, order=m.order, epoch=epoch,
                     step=m.step, since_best=m.since_best, record=record, seconds=m.seconds)
    write_record(record, m.trial_dir)
    m.report({"step": m.step, "epoch": epoch, "train": {"loss": mean_loss}, "metric": metric,
              "dev": {locale: {metric: dev_score}}, "best_dev": record.best_dev})
    if m.since_best >= cfg.optim.patience or epoch == cfg.optim.epochs:
        finish(m)
    elif pauses_at(m, epoch):
        # The checkpoint just written holds everything: a later run continues bit for bit.
        pause(m)


def pauses_at(member: Member, epoch: int) -> bool:
    """Whether the trial stops here for now: it reached its stop, and training has not ended anyway."""
    stop = member.spec.stop_after_epoch
    return stop is not None and stop <= epoch < member.cfg.optim.epochs


def pause(member: Member) -> None:
    member.record.status = "paused"
    member.report({"step": member.step, "epoch": member.epoch, "best_dev": member.record.best_dev,
                   "status": "paused", "metric": member.record.metric})
    close(member)


def diverge(member: Member, loss: float) -> None:
    """A non-finite training loss ends the trial at once: no best to keep, nothing to test."""
    member.record.status = "diverged"
    member.record.error = f"training loss became {loss} at step {member.step + 1} (epoch {member.epoch + 1})"
    member.report({"step": member.step, "epoch": member.epoch + 1, "status": "diverged"})
    close(member)


def finish(member: Member) -> None:
    """Save the kept best prompt+head (not the last state), test it on the eval locales, complete."""
    m, cfg, spec, record = member, member.cfg, member.spec, member.record
    m.model.load_state_dict(m.best_state, strict=False)
    save_trainable(m.model, m.trial_dir / "best", meta={"labels": m.labels, "best_step": record.best_step,
                                                        "backbone": cfg.backbone.name, **spec.extra_meta})
    # The same code as evaluate_saved_trial, on the same tensors: a later evaluation of best/ agrees.
    scores = evaluate_locales(m.task, m.model, Path(spec.data_dir), spec.eval_locales, m.trial_dir,
                              cfg.optim.eval_batch_size, m.device, m.precision)
    for test_locale, score in scores.items():
        record.test_scores[test_locale] = score
        m.writer.scalar(f"test/{test_locale}/{record.metric}", score, record.best_step or m.step)
    m.writer.scalar("best_dev", record.best_dev, record.best_step)
    record.status = "completed"
    m.report({"step": m.step, "epoch": m.epoch, "best_dev": record.best_dev, "status": "completed",
              "metric": record.metric, "test": {loc: {record.metric: s} for loc, s in record.test_scores.items()}})
    close(m)


def close(member: Member) -> None:
    """The trial leaves the loop: its record is final for this run, its TensorBoard session closed
    with its status (completed, failed, diverged, paused). A trial that ended keeps no checkpoint:
    its best is in best/ and it is never resumed."""
    member.done = True
    take_time(member)
    member.record.train_seconds = member.seconds
    write_record(member.record, member.trial_dir)
    member.writer.close(member.record.status)
    if member.record.status in ("completed", "diverged"):
        (member.trial_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


__all__ = ["Member", "new_record", "open_member", "prepare", "seed_everything"]
