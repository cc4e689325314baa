"""The downstream worker loop: intents (vanilla or NLI head) or slots, with a prompt (PT/APT) or
fine-tuning (FT).

One trial, read top to bottom in a fixed order: seed, data, model, then per epoch: train steps,
periodic English dev evaluation, keep the best prompt+head, checkpoint, report, stop on patience
or on a non-finite loss. At the end the best checkpoint is evaluated on the test set of every
locale in `spec.eval_locales` (none: English dev only; `evaluate.evaluate_saved_trial` can score
the saved checkpoint later). What differs between tasks (model, batches, loss, score and its name)
is behind the protocol in train/tasks/ (protocol.py); this loop is the same for all of them.

Every dev evaluation also writes `checkpoint.pt` into the trial directory (atomically): the
trained tensors, the best ones so far, optimiser, scheduler, every random-number generator and
the record. A trial started again (a killed worker retried by Ray, `xsweep run --resume`, or a
trial paused at a pruning milestone, `TrialSpec.stop_after_epoch`) continues from it and ends
exactly where an uninterrupted trial would have.

The loop knows nothing of Ray: `report` is a callable, so the same code runs inside a Ray Train
worker, in a plain process, or in a test.
"""

from __future__ import annotations

import json
import math
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from xsweep.atomic import atomic_path, write_json
from xsweep.config import ExperimentConfig, from_dict
from xsweep.errors import XsweepError
from xsweep.models.backbone import load_backbone
from xsweep.models.precision import allow_tf32, autocast, backbone_dtype, resolve_precision
from xsweep.models.prompted import load_prompt_for_apt, save_trainable
from xsweep.record import DevPoint, TrialRecord, training_config, write_record
from xsweep.train import rng
from xsweep.train.evaluate import evaluate_locales, trial_device
from xsweep.train.batches import token_counts
from xsweep.train.schedule import linear_warmup_decay
from xsweep.train.spec import Reporter, TrialSpec
from xsweep.trial_log import TrialWriter
from xsweep.train.tasks import METRICS, make_task, read_examples, sample_training, task_labels

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def seed_everything(seed: int) -> None:
    """`seed` sets initialisation, data order and dropout: all three draw from these generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_downstream(spec: TrialSpec, report: Reporter | None = None, *, writer: TrialWriter | None = None,
                   load_backbone: Callable[..., tuple] = load_backbone) -> TrialRecord:
    """Run one downstream trial and return its record (also written to `spec.trial_dir`).
    `report` receives the metrics of every evaluation; `writer` the TensorBoard scalars, and the
    loop closes it with the trial's status (default: a writer on `spec.tensorboard_dir`).
    `load_backbone`: how the frozen encoder and tokenizer are obtained (a process that hosts many
    trials passes its cache, `sweep.hosting.backbone_loader`)."""
    report = report or (lambda metrics: None)
    cfg: ExperimentConfig = from_dict(spec.config, source=f"trial {spec.trial_id}")
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = new_record(spec, cfg)
    try:
        checkpoint = _read_checkpoint(trial_dir / CHECKPOINT_FILE, spec)
    except XsweepError as exc:
        record.status, record.error = "failed", exc.message
        write_record(record, trial_dir)
        if writer is not None:
            writer.close(record.status)
        raise
    if checkpoint is None:
        write_record(record, trial_dir)  # a resumed trial keeps its record until it has more to say
    writer = writer if writer is not None else TrialWriter(Path(spec.tensorboard_dir))
    clock = _Clock()
    try:
        _train_and_evaluate(cfg, spec, record, writer, report, checkpoint, clock, load_backbone)
    except Exception as exc:  # the record must say how the trial ended, whatever ended it
        record.status = "failed"
        record.error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        record.train_seconds = clock.total()
        write_record(record, trial_dir)
        writer.close(record.status)  # marks the HParams session as completed, failed or diverged
    if record.status in ("completed", "diverged"):
        # Final: the best prompt and head are in best/, and a finished trial is never resumed.
        (trial_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    return record


def new_record(spec: TrialSpec, cfg: ExperimentConfig) -> TrialRecord:
    """The record of a trial about to start: who it is, what it trains, and where it runs."""
    return TrialRecord(trial_id=spec.trial_id, group_key=spec.group_key, group_name=spec.group_name,
                       lr=cfg.optim.lr, seed=cfg.seed, metric=METRICS[cfg.head.kind], config=spec.config,
                       aligned_on=spec.aligned_on, worker=f"{socket.gethostname()}:{os.getpid()}")


class _Clock:
    """Seconds of work on a trial, summed over its interrupted and resumed parts."""

    def __init__(self) -> None:
        self.before, self.started = 0.0, time.perf_counter()

    def total(self) -> float:
        return self.before + time.perf_counter() - self.started


def _train_and_evaluate(cfg: ExperimentConfig, spec: TrialSpec, record: TrialRecord,
                        writer: TrialWriter, report: Reporter, checkpoint: dict[str, Any] | None,
                        clock: _Clock, load_backbone: Callable[..., tuple]) -> None:
    seed_everything(cfg.seed)
    device = trial_device(cfg)
    trial_dir = Path(spec.trial_dir)
    data_dir = Path(spec.data_dir)
    locale = cfg.data.train_locale

    # MASSIVE rows or SGD frames, as cfg.data.dataset says (train/tasks/).
    train_all = read_examples(cfg, data_dir, locale, "train")
    train_rows = sample_training(cfg, train_all, trial_dir / "few_shot_sample.json")  # k per intent, any task
    labels = task_labels(cfg, train_all)  # from all of train: the same map for every shot count
    write_json(trial_dir / "labels.json", labels)
    dev = read_examples(cfg, data_dir, locale, "dev")

    precision = resolve_precision(cfg.optim.precision, device)
    record.precision, record.matmul_tf32 = precision, allow_tf32(precision, device)
    encoder, tokenizer = load_backbone(spec.backbone_path, attn_implementation=cfg.backbone.attn_implementation,
                                       dtype=backbone_dtype(precision, cfg.method))
    task = make_task(cfg, labels, tokenizer)
    model = task.build_model(encoder)
    if cfg.method == "apt":
        load_prompt_for_apt(model, Path(cfg.prompt.init_from))
    model.to(device)
    metric = task.metric

    train_split, dev_split = task.encode(train_rows), task.encode(dev)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    steps_per_epoch = math.ceil(len(train_split) / cfg.optim.batch_size)
    total_steps = steps_per_epoch * cfg.optim.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, int(cfg.optim.warmup_ratio * total_steps)))
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")  # fp16 gradients underflow without it
    writer.hparams(spec.config, [f"dev/{locale}/{metric}", "best_dev",
                                 *(f"test/{loc}/{metric}" for loc in spec.eval_locales)])

    order = torch.Generator().manual_seed(cfg.seed)
    step, since_best, losses, epoch = 0, 0, [], 0
    positions = tokens = 0  # of the training batches, for the record's padding ratio
    best_state: dict[str, torch.Tensor] | None = None
    if checkpoint is not None:
        # Last, so that the random-number generators are those of the moment it was saved.
        epoch, step, since_best, best_state = _restore(checkpoint, model, optimizer, scheduler, scaler, order,
                                                       record, clock)
        if since_best < cfg.optim.patience and _pauses_at(spec, cfg, epoch):
            _pause(record, report, step, epoch)  # asked again to stop where it already stands
            return
    for epoch in range(epoch + 1, cfg.optim.epochs + 1):
        if since_best >= cfg.optim.patience:
            break  # a trial resumed after its last evaluation: training had already stopped
        model.train()  # the model keeps a frozen backbone in eval mode if backbone.dropout is off
        for batch in task.train_batches(train_split, cfg.optim.batch_size, order, device):
            batch_positions, batch_tokens = token_counts(batch.attention_mask)
            positions, tokens = positions + batch_positions, tokens + batch_tokens
            with autocast(precision, device):
                loss = task.loss(model, batch)
            if not torch.isfinite(loss):
                record.status = "diverged"
                record.error = f"training loss became {loss.item()} at step {step + 1} (epoch {epoch})"
                report({"step": step, "epoch": epoch, "status": "diverged"})
                return
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # the scaler only acts under fp16
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            losses.append(loss.item())
            writer.scalar("train/loss", losses[-1], step)
        if epoch % cfg.optim.eval_every_epochs and epoch != cfg.optim.epochs:
            continue
        with autocast(precision, device):
            dev_score = task.evaluate(model, dev_split, cfg.optim.eval_batch_size, device).score
        mean_loss = float(np.mean(losses)) if losses else float("nan")
        losses = []
        record.padding_ratio = positions / tokens if tokens else None
        improved = record.add_dev(DevPoint(step=step, epoch=epoch, score=dev_score, train_loss=mean_loss))
        writer.scalar(f"dev/{locale}/{metric}", dev_score, step)
        if spec.test_at_every_evaluation:  # draws no random numbers: training is unchanged
            for test_locale, score in evaluate_locales(task, model, data_dir, spec.eval_locales, trial_dir,
                                                       cfg.optim.eval_batch_size, device, precision).items():
                writer.scalar(f"test_curve/{test_locale}/{metric}", score, step)
        if improved:
            since_best = 0
            best_state = {k: v.detach().clone() for k, v in model.trainable_state_dict().items()}
        else:
            since_best += 1
        _write_checkpoint(trial_dir / CHECKPOINT_FILE, model=model, best_state=None if improved else best_state,
                          optimizer=optimizer, scheduler=scheduler, scaler=scaler, order=order, epoch=epoch, step=step,
                          since_best=since_best, record=record, clock=clock)
        write_record(record, trial_dir)
        report({"step": step, "epoch": epoch, "train": {"loss": mean_loss}, "metric": metric,
                "dev": {locale: {metric: dev_score}}, "best_dev": record.best_dev})
        if since_best >= cfg.optim.patience:
            break
        if _pauses_at(spec, cfg, epoch):
            # The checkpoint just written holds everything: a later run continues bit for bit.
            _pause(record, report, step, epoch)
            return

    # Evaluate the kept best checkpoint, not the last state.
    model.load_state_dict(best_state, strict=False)
    save_trainable(model, trial_dir / "best", meta={"labels": labels, "best_step": record.best_step,
                                                      "backbone": cfg.backbone.name, **spec.extra_meta})
    # The same code as evaluate_saved_trial, on the same tensors: a later evaluation of best/ agrees.
    scores = evaluate_locales(task, model, data_dir, spec.eval_locales, trial_dir, cfg.optim.eval_batch_size,
                              device, precision)
    for test_locale, score in scores.items():
        record.test_scores[test_locale] = score
        writer.scalar(f"test/{test_locale}/{metric}", score, record.best_step or step)
    writer.scalar("best_dev", record.best_dev, record.best_step)
    record.status = "completed"
    report({"step": step, "epoch": epoch, "best_dev": record.best_dev, "status": "completed", "metric": metric,
            "test": {loc: {metric: s} for loc, s in record.test_scores.items()}})


def _pauses_at(spec: TrialSpec, cfg: ExperimentConfig, epoch: int) -> bool:
    """Whether the trial stops here for now: it reached its stop, and training has not ended anyway."""
    return spec.stop_after_epoch is not None and spec.stop_after_epoch <= epoch < cfg.optim.epochs


def _pause(record: TrialRecord, report: Reporter, step: int, epoch: int) -> None:
    record.status = "paused"
    report({"step": step, "epoch": epoch, "best_dev": record.best_dev, "status": "paused", "metric": record.metric})


def _write_checkpoint(path: Path, *, model: torch.nn.Module, best_state: dict[str, torch.Tensor] | None,
                      optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
                      order: torch.Generator, epoch: int,
                      step: int, since_best: int, record: TrialRecord, clock: _Clock) -> None:
    """Everything needed to continue the trial bit for bit, in one file replaced atomically.

    `best_state` None means the best is the current state (stored once, not twice). Only tensors
    and plain Python values go in, so `torch.load(weights_only=True)` reads it without unpickling
    arbitrary objects.
    """
    snapshot = dict(record.to_dict(), train_seconds=clock.total())
    state = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps(record.config, sort_keys=True),
        "epoch": epoch, "step": step, "since_best": since_best,
        "trainable": {k: v.detach().cpu() for k, v in model.trainable_state_dict().items()},
        "best": None if best_state is None else {k: v.detach().cpu() for k, v in best_state.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),  # empty unless fp16
        "rng": rng.capture({"order": order}),
        "record": json.dumps(snapshot),
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _read_checkpoint(path: Path, spec: TrialSpec) -> dict[str, Any] | None:
    """The trial's checkpoint, or None if it has none. Read with `weights_only=True`: a file that
    would need arbitrary unpickling is refused, never executed."""
    if not path.is_file():
        return None
    fix = f"delete {path.name} to restart this trial from its beginning"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe file gets the same answer
        raise XsweepError(f"cannot read the trial checkpoint safely: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}", where=str(path), fix=fix) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise XsweepError("the trial checkpoint is not one this version of xsweep writes", where=str(path), fix=fix)
    if training_config(json.loads(state["config"])) != training_config(spec.config):
        raise XsweepError("the trial checkpoint was written for another configuration", where=str(path), fix=fix)
    return state


def _restore(state: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             scaler: torch.amp.GradScaler,
             order: torch.Generator, record: TrialRecord, clock: _Clock
             ) -> tuple[int, int, int, dict[str, torch.Tensor]]:
    """Load a checkpoint into the freshly built trial; returns (epoch, step, since_best, best state)."""
    model.load_state_dict(state["trainable"], strict=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    best = state["best"] if state["best"] is not None else {k: v.clone() for k, v in state["trainable"].items()}
    saved = TrialRecord.from_dict(json.loads(state["record"]))
    for name in ("dev_history", "best_dev", "best_step", "best_epoch", "resumed_at"):
        setattr(record, name, getattr(saved, name))
    record.resumed_at.append(state["step"])
    clock.before = saved.train_seconds
    rng.restore(state["rng"], {"order": order})
    return state["epoch"], state["step"], state["since_best"], best


__all__ = ["run_downstream", "new_record", "seed_everything", "CHECKPOINT_FILE"]
