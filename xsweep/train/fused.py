"""Fused prompt-tuning trials: K trials of one group share one frozen backbone and one forward.

Under PT and APT the backbone is frozen, so trials that differ only in learning rate and seed can
run as one batch: each training step concatenates every running member's batch along the batch
dimension into ONE encoder forward, in which row r uses the prompt of its member m(r); each
member's head reads its own slice, and the loss is the sum of the members' losses. A member's
loss depends only on its own prompt and head, so the gradient of the sum with respect to them is
the gradient of that member's loss alone, and each member's own AdamW takes exactly the step it
would take alone.

Each member keeps everything else of a trial (train/downstream.py): its seed (initialisation and
few-shot sample), its own data-order generator, learning-rate schedule, English dev evaluation,
patience, best prompt+head, record, report and TensorBoard folder. Members stop independently: a
member that runs out of patience or epochs (or diverges) saves its best, is tested, and leaves
the fused batch while the others go on.

With dropout off, a member's dev history, best and test scores equal those of the same trial run
alone by `run_downstream`, within floating-point tolerance (tests/test_fused.py). With dropout on,
every row draws its own masks from the one torch generator, so members draw independent masks, but
not the masks they would draw alone: results are reproducible for the same fused group, not equal
to the separate runs.

Limits: vanilla intent heads only (head.kind vanilla, MASSIVE); frozen backbones only (pt, apt);
no checkpoint: a fused group that is interrupted starts again from its beginning.
Why it pays: on a GPU, one forward of K x B rows costs far less than K forwards of B rows when B
is small; on a CPU, compute-bound, it only costs the same (bench/bench_fused.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from xsweep.atomic import write_json
from xsweep.config import ExperimentConfig, from_dict
from xsweep.errors import XsweepError
from xsweep.models.backbone import load_backbone
from xsweep.models.precision import autocast, backbone_dtype, resolve_precision
from xsweep.models.prompted import PromptedModel, load_prompt_for_apt, save_trainable
from xsweep.models.prompts import InputPrompt, LayerPrompt, encode_plain, position_ids, prefix_attention_mask
from xsweep.record import DevPoint, TrialRecord, write_record
from xsweep.train.batches import pad, training_batches
from xsweep.train.downstream import new_record, seed_everything
from xsweep.train.schedule import linear_warmup_decay
from xsweep.train.spec import Reporter, TrialSpec
from xsweep.trial_log import TrialWriter
from xsweep.train.evaluate import evaluate_locales, trial_device
from xsweep.train.tasks import IntentSplit, IntentTask, make_task, read_examples, sample_training, \
    task_labels


@dataclass
class Member:
    """One trial of a fused group: its model (the shared encoder, its own prompt and head), its
    optimiser, and where it is in its own epochs."""

    spec: TrialSpec
    cfg: ExperimentConfig
    record: TrialRecord
    task: IntentTask
    model: PromptedModel
    train_split: IntentSplit
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    order: torch.Generator
    writer: TrialWriter
    report: Reporter
    labels: dict
    epoch: int = 1
    """The epoch being trained (1-based)."""
    batches: list[list[int]] = field(default_factory=list)
    """Row indices of this epoch's batches, drawn from `order` when the epoch starts."""
    next_batch: int = 0
    step: int = 0
    since_best: int = 0
    losses: list[float] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    """This member's fair share of the work: each fused step's time split among the members in it,
    plus its own dev evaluations and tests (so a group's seconds sum to its wall time, not K times it)."""
    done: bool = False
    precision: str = "fp32"
    """What the fused run computes in (`optim.precision` resolved; the same for every member)."""

    def start_epoch(self) -> None:
        # The same draw as the single-trial loop's `task.train_batches`: one randperm per epoch.
        self.batches = training_batches([len(ids) for ids in self.train_split.encoded.input_ids],
                                        self.cfg.optim.batch_size, self.order,
                                        by_length=self.cfg.optim.bucket_by_length)
        self.next_batch = 0


def run_fused(specs: list[TrialSpec], reports: list[Reporter] | None = None, *,
              writers: list[TrialWriter] | None = None,
              load_backbone: Callable[..., tuple] = load_backbone) -> list[TrialRecord]:
    """Run the trials `specs` (one group: same config but learning rate and seed) as one fused
    loop; returns their records, in order, each also written to its `spec.trial_dir` as
    `run_downstream` writes it (record.json, labels.json, few_shot_sample.json, best/, predictions/).
    `reports[i]` and `writers[i]` receive member i's metrics and TensorBoard scalars, as
    `run_downstream`'s `report` and `writer` would (default writers: one on each `tensorboard_dir`)."""
    reports = list(reports) if reports is not None else [lambda metrics: None] * len(specs)
    if len(reports) != len(specs) or (writers is not None and len(writers) != len(specs)):
        raise XsweepError(f"run_fused got {len(specs)} trials but {len(reports)} reporters"
                          + ("" if writers is None else f" and {len(writers)} writers"), where="run_fused")
    writers = list(writers) if writers is not None else [None] * len(specs)
    cfgs = [from_dict(s.config, source=f"trial {s.trial_id}") for s in specs]
    check_fusable(specs, cfgs)
    device = trial_device(cfgs[0])
    precision = resolve_precision(cfgs[0].optim.precision, device)  # one group: one precision
    encoder, tokenizer = load_backbone(specs[0].backbone_path, attn_implementation=cfgs[0].backbone.attn_implementation,
                                       dtype=backbone_dtype(precision, cfgs[0].method))
    members: list[Member] = []
    try:
        for spec, cfg, report, writer in zip(specs, cfgs, reports, writers):
            members.append(_build_member(spec, cfg, report, writer, encoder, tokenizer, device))
            members[-1].precision = members[-1].record.precision = precision
        dev = read_examples(cfgs[0], Path(specs[0].data_dir), cfgs[0].data.train_locale, "dev")
        dev_split = members[0].task.encode(dev)  # one group: one label map, one English dev set
        _train(members, encoder, dev_split, device)
    except Exception as exc:  # every unfinished record must say how the group ended
        for member in members:
            if not member.done:
                member.record.status, member.record.error = "failed", f"{type(exc).__name__}: {exc}"
                _close(member)
        raise
    return [m.record for m in members]


def check_fusable(specs: list[TrialSpec], cfgs: list[ExperimentConfig]) -> None:
    """Refuse trials that cannot share one forward: other groups, trained backbones, other heads."""
    if not specs:
        raise XsweepError("run_fused needs at least one trial", where="run_fused")
    first = specs[0]
    for spec, cfg in zip(specs, cfgs):
        if (spec.group_key, spec.backbone_path, spec.data_dir) != (first.group_key, first.backbone_path,
                                                                   first.data_dir):
            raise XsweepError(f"trial {spec.trial_id} is not of the group of {first.trial_id}: fused trials "
                              "must share group (config but lr and seed), backbone and data", where="run_fused",
                              fix="fuse only trials of one group")
        if cfg.method not in ("pt", "apt"):
            raise XsweepError(f"method {cfg.method} trains the backbone: its trials cannot share one",
                              where="method", fix="fuse pt or apt trials only")
        if cfg.optim.precision == "fp16":
            raise XsweepError("fused trials compute in fp32 or bf16; fp16 would need a gradient scaler per member",
                              where="optim.precision", fix="use bf16 (or fp32), or sweep.fuse=1")
        if cfg.head.kind != "vanilla" or cfg.data.dataset != "massive":
            raise XsweepError(f"fused trials support the vanilla intent head on MASSIVE, not "
                              f"{cfg.data.dataset}/{cfg.head.kind}", where="head.kind",
                              fix="run these trials one by one (run_downstream)")
    ids = [s.trial_id for s in specs]
    if len(set(ids)) != len(ids):
        raise XsweepError(f"run_fused got the same trial twice: {sorted(ids)}", where="run_fused")


def _build_member(spec: TrialSpec, cfg: ExperimentConfig, report: Reporter, writer: TrialWriter | None,
                  encoder, tokenizer, device: torch.device) -> Member:
    """What `run_downstream` does before its first step, for one member, drawing the same random
    numbers in the same order (the backbone is loaded already, which draws none)."""
    trial_dir = Path(spec.trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    record = new_record(spec, cfg)
    write_record(record, trial_dir)
    seed_everything(cfg.seed)
    locale = cfg.data.train_locale
    train_all = read_examples(cfg, Path(spec.data_dir), locale, "train")
    train_rows = sample_training(cfg, train_all, trial_dir / "few_shot_sample.json")
    labels = task_labels(cfg, train_all)
    write_json(trial_dir / "labels.json", labels)
    task = make_task(cfg, labels, tokenizer)
    assert isinstance(task, IntentTask)  # check_fusable admits vanilla MASSIVE only
    model = task.build_model(encoder)
    if cfg.method == "apt":
        load_prompt_for_apt(model, Path(cfg.prompt.init_from))
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.optim.lr,
                                  weight_decay=cfg.optim.weight_decay)
    train_split = task.encode(train_rows)
    total_steps = math.ceil(len(train_split) / cfg.optim.batch_size) * cfg.optim.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(total_steps, int(cfg.optim.warmup_ratio * total_steps)))
    writer = writer if writer is not None else TrialWriter(Path(spec.tensorboard_dir))
    writer.hparams(spec.config, [f"dev/{locale}/{task.metric}", "best_dev",
                                 *(f"test/{loc}/{task.metric}" for loc in spec.eval_locales)])
    member = Member(spec=spec, cfg=cfg, record=record, task=task, model=model, train_split=train_split,
                    optimizer=optimizer, scheduler=scheduler, order=torch.Generator().manual_seed(cfg.seed),
                    writer=writer, report=report, labels=labels)
    member.start_epoch()
    return member


def _train(members: list[Member], encoder, dev_split: IntentSplit, device: torch.device) -> None:
    """Fused steps until every member has stopped; a member's epoch ends after its last batch."""
    for member in members:
        member.model.train()  # the members share the encoder, and its mode (backbone.dropout)
    while running := [m for m in members if not m.done]:
        step_started = time.perf_counter()
        batches = [m.batches[m.next_batch] for m in running]
        with autocast(running[0].precision, device):
            losses = fused_losses(encoder, [m.model for m in running], [m.train_split for m in running], batches,
                                  device)
        values = torch.stack(losses).detach().tolist()  # one device sync per step, not one per member
        for member, value in zip(running, values):
            if not math.isfinite(value):
                member.record.status = "diverged"
                member.record.error = f"training loss became {value} at step {member.step + 1} (epoch {member.epoch})"
                member.report({"step": member.step, "epoch": member.epoch, "status": "diverged"})
                _close(member)
        for member in running:
            member.optimizer.zero_grad(set_to_none=True)
        finite = [loss for loss, value in zip(losses, values) if math.isfinite(value)]
        if finite:
            torch.stack(finite).sum().backward()  # each member's gradient reaches only its own prompt and head
        for member, value in zip(running, values):
            if member.done:
                continue
            member.optimizer.step()
            member.scheduler.step()
            member.step += 1
            member.losses.append(value)
            member.writer.scalar("train/loss", value, member.step)
            member.next_batch += 1
        shared = (time.perf_counter() - step_started) / len(running)
        for member in running:
            member.seconds += shared
        for member in running:
            if not member.done and member.next_batch == len(member.batches):
                own_started = time.perf_counter()
                _end_epoch(member, dev_split, device)
                member.seconds += time.perf_counter() - own_started
                if member.done:  # its record was written when it stopped: now with its full share
                    member.record.train_seconds = member.seconds
                    write_record(member.record, Path(member.spec.trial_dir))


def fused_losses(encoder, models: list[PromptedModel], splits: list[IntentSplit], batches: list[list[int]],
                 device: torch.device) -> list[torch.Tensor]:
    """One forward for every member's batch; returns each member's mean cross-entropy.

    Member k's rows are `splits[k]` rows `batches[k]`; all rows are padded together to the longest,
    which changes no real token's hidden state (padding is masked out of attention).
    """
    sizes = [len(b) for b in batches]
    ids, mask = pad([split.encoded.input_ids[i] for split, rows in zip(splits, batches) for i in rows],
                    splits[0].encoded.pad_id)
    member_of_row = torch.repeat_interleave(torch.arange(len(models)), torch.tensor(sizes)).to(device)
    hidden = fused_features(encoder, [m.prompt for m in models], member_of_row, ids.to(device), mask.to(device))
    losses = []
    for model, split, rows, part in zip(models, splits, batches, hidden.split(sizes)):
        losses.append(F.cross_entropy(model.head(part), split.encoded.labels[rows].to(device)))
    return losses


def fused_features(encoder, prompts: list, member_of_row: torch.Tensor, input_ids: torch.Tensor,
                   attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (N, T, H) of the input tokens, row r through `prompts[member_of_row[r]]`.

    prompts: K prompts of one kind and shape (LayerPrompt, InputPrompt, or all None).
    member_of_row: (N,) long in [0, K). input_ids, attention_mask: (N, T).
    The same computation as each prompt's own `encode`, with the per-member tables stacked (K, ...)
    and indexed by row. Dropout draws as each prompt's `encode` does: a mask per row for layer
    prompts (there, on each row of `expand`), one per member for input prompts.
    """
    first = prompts[0]
    if first is None:
        return encode_plain(encoder, input_ids, attention_mask)
    dtype = encoder.get_input_embeddings().weight.dtype
    if isinstance(first, LayerPrompt):
        info, length = first.info, first.length
        tables = torch.stack([p.embedding.weight if p.reparam is None else p.reparam(p.embedding.weight)
                              for p in prompts])  # (K, P, 2 x layers x hidden)
        prefix = tables.to(dtype).view(len(prompts), length, 2 * info.num_layers, info.num_heads, info.head_dim)
        # One group, one prompt.dropout: the first member's module serves every row.
        prefix = first.dropout(prefix[member_of_row]).permute(2, 0, 3, 1, 4)  # (2L, N, heads, P, head_dim)
        cache = DynamicCache()  # fresh per call: the encoder appends this call's keys to it
        for layer in range(info.num_layers):
            cache.update(prefix[2 * layer], prefix[2 * layer + 1], layer)
        positions = position_ids(info, attention_mask, length if first.shift_positions else 0)
        mask = prefix_attention_mask(attention_mask, length, dtype, encoder.config._attn_implementation)
        return encoder(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache).last_hidden_state
    if isinstance(first, InputPrompt):
        batch, p = input_ids.shape[0], first.length
        words = encoder.get_input_embeddings()(input_ids)
        # As InputPrompt.encode: one dropout mask per member's table, shared by its rows.
        soft = torch.stack([q.dropout(q.embedding.weight.to(words.dtype)) for q in prompts])[member_of_row]
        embeds = torch.cat([words[:, :1], soft, words[:, 1:]], dim=1)
        mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(batch, p), attention_mask[:, 1:]], dim=1)
        hidden = encoder(inputs_embeds=embeds, attention_mask=mask,
                         position_ids=position_ids(first.info, mask, 0)).last_hidden_state
        return torch.cat([hidden[:, :1], hidden[:, 1 + p:]], dim=1)
    raise XsweepError(f"cannot fuse prompts of type {type(first).__name__}", where="prompt.kind")


def _end_epoch(member: Member, dev_split: IntentSplit, device: torch.device) -> None:
    """The single-trial loop's end of an epoch: evaluate if due, keep the best, stop or go on."""
    cfg, record, epoch = member.cfg, member.record, member.epoch
    locale, metric = cfg.data.train_locale, record.metric
    if epoch % cfg.optim.eval_every_epochs == 0 or epoch == cfg.optim.epochs:
        with autocast(member.precision, device):
            dev_score = member.task.evaluate(member.model, dev_split, cfg.optim.eval_batch_size, device).score
        mean_loss = float(np.mean(member.losses)) if member.losses else float("nan")
        member.losses = []
        improved = record.add_dev(DevPoint(step=member.step, epoch=epoch, score=dev_score, train_loss=mean_loss))
        member.writer.scalar(f"dev/{locale}/{metric}", dev_score, member.step)
        if improved:
            member.since_best = 0
            member.best_state = {k: v.detach().clone() for k, v in member.model.trainable_state_dict().items()}
        else:
            member.since_best += 1
        write_record(record, Path(member.spec.trial_dir))
        member.report({"step": member.step, "epoch": epoch, "train": {"loss": mean_loss}, "metric": metric,
                       "dev": {locale: {metric: dev_score}}, "best_dev": record.best_dev})
        if member.since_best >= cfg.optim.patience:
            _finish(member, device)
            return
    if epoch == cfg.optim.epochs:
        _finish(member, device)
        return
    member.epoch += 1
    member.start_epoch()


def _finish(member: Member, device: torch.device) -> None:
    """Save the member's best prompt+head, test it on its eval locales, and close its record."""
    cfg, spec, record, model = member.cfg, member.spec, member.record, member.model
    trial_dir = Path(spec.trial_dir)
    model.load_state_dict(member.best_state, strict=False)
    save_trainable(model, trial_dir / "best", meta={"labels": member.labels, "best_step": record.best_step,
                                                      "backbone": cfg.backbone.name, **spec.extra_meta})
    scores = evaluate_locales(member.task, model, Path(spec.data_dir), spec.eval_locales, trial_dir,
                              cfg.optim.eval_batch_size, device, member.precision)
    for test_locale, score in scores.items():
        record.test_scores[test_locale] = score
        member.writer.scalar(f"test/{test_locale}/{record.metric}", score, record.best_step or member.step)
    member.writer.scalar("best_dev", record.best_dev, record.best_step)
    record.status = "completed"
    member.report({"step": member.step, "epoch": member.epoch, "best_dev": record.best_dev, "status": "completed",
                   "metric": record.metric, "test": {loc: {record.metric: s} for loc, s in record.test_scores.items()}})
    _close(member)


def _close(member: Member) -> None:
    """The member leaves the fused batch; its record and TensorBoard session are final."""
    member.done = True
    member.record.train_seconds = member.seconds
    write_record(member.record, Path(member.spec.trial_dir))
    member.writer.close(member.record.status)
