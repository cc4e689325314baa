"""Fused prompt-tuning trials (`run_trials` with K > 1, train/downstream.py) against the same
trials run one by one, and fused trials interrupted and resumed from their own checkpoints.

Trials run in-process on the built-in `micro` backbone and the demo data. With dropout off a fused
member must reproduce its trial run alone by `run_downstream`: the same dev history (steps,
scores, losses), best, status and test scores, and a best/ that `evaluate_saved_trial` scores the
same; in fp32 to 1e-5 (losses 1e-4), in bf16 to BF16_SCORE and BF16_LOSS. Members stop independently: learning rate 1e-9 is a member whose dev accuracy cannot move,
so it stops on patience after its third evaluation; 1e30 diverges at its second step (Adam moves
every weight by ~lr; 1e20 overflows only some steps later); the others go on without them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.record import read_record
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream, run_trials
from xsweep.train.spec import TrialSpec
from xsweep.train.evaluate import evaluate_saved_trial

from test_reliability import Killed, kill_after_evaluation  # the same stand-in for SIGKILL

pytestmark = pytest.mark.timeout(90)

EPOCHS, PATIENCE = 5, 2
LEARNING_LR = 0.01
FROZEN_LR = 1e-9  # moves no weight enough to change one dev prediction
DIVERGING_LR = 1.0e30
EXPERIMENT = """\
name: fused
method: pt
backbone: {{name: "builtin:micro", dropout: {backbone_dropout}}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: {kind}, length: 4, dropout: {dropout}}}
head: {{kind: vanilla, dropout: {dropout}}}
optim: {{epochs: {epochs}, batch_size: 16, patience: {patience}, eval_batch_size: 128, precision: {precision}}}
sweep: {{grid: {{optim.lr: [{lrs}]}}, seeds: [0, 1], evaluate: all}}
storage: {{root: {root}}}
"""


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """(prompt kind, dropout on?, run name) -> the 6 specs of the grid (3 lrs x 2 seeds), in grid order."""
    root = tmp_path_factory.mktemp("fused")
    torch.set_num_threads(1)  # as in a Ray worker with cpus_per_trial 1

    def make(kind: str, dropout: bool, name: str, precision: str = "auto") -> list[TrialSpec]:
        path = root / f"{name}.yaml"
        lrs = ", ".join(map(repr, [LEARNING_LR, FROZEN_LR, DIVERGING_LR]))
        path.write_text(EXPERIMENT.format(kind=kind, dropout=0.1 if dropout else 0, lrs=lrs, epochs=EPOCHS,
                                          backbone_dropout=str(dropout).lower(), patience=PATIENCE, root=root / "runs",
                                          precision=precision))
        cfg = load_config(path)
        return plan_trials(cfg, root / "runs" / name, prepare_inputs(cfg, log=lambda _: None))

    return make


def history(record) -> list[tuple[int, int]]:
    return [(p.step, p.epoch) for p in record.dev_history]


BF16_SCORE = 0.02
"""bf16: a fused member's dev and test accuracies within this (absolute) of its trial run alone; the
rounding of a bf16 forward depends on the batch's shapes (docs/trials.md)."""
BF16_LOSS = 0.005
"""bf16: a fused member's mean training losses within this of its trial run alone. Measured here
(2026-12-03, CPU): dev scores equal, test scores 0.0036 apart (one utterance), losses 0.0003."""


def assert_same_trial(fused, alone, *, score: float = 1e-5, loss: float = 1e-4, same_best: bool = True) -> None:
    assert (fused.trial_id, fused.status, fused.error, fused.lr, fused.seed) == \
        (alone.trial_id, alone.status, alone.error, alone.lr, alone.seed)
    assert history(fused) == history(alone)
    for f, a in zip(fused.dev_history, alone.dev_history):
        assert f.score == pytest.approx(a.score, abs=score)
        assert f.train_loss == pytest.approx(a.train_loss, abs=loss)
    if same_best:
        assert (fused.best_step, fused.best_epoch) == (alone.best_step, alone.best_epoch)
    if alone.status == "diverged":
        assert fused.best_dev is alone.best_dev is None and fused.test_scores == alone.test_scores == {}
        return
    assert fused.best_dev == pytest.approx(alone.best_dev, abs=score)
    assert fused.test_scores.keys() == alone.test_scores.keys() == {"en-US", "de-DE"}
    for locale, value in alone.test_scores.items():
        assert fused.test_scores[locale] == pytest.approx(value, abs=score)


@pytest.mark.parametrize("kind", ["layer", "input"])
def test_fused_members_equal_their_trials_run_alone_and_stop_independently(plan, kind):
    # Learning (seeds 0 and 1), frozen (seed 0) and diverging (seed 0): 4 of the 3 lrs x 2 seeds.
    fused_specs, alone_specs = (plan(kind, False, f"{how}-{kind}")[:5] for how in ("fused", "alone"))
    del fused_specs[3], alone_specs[3]
    assert [(s.config["optim"]["lr"], s.config["seed"]) for s in fused_specs] == \
        [(LEARNING_LR, 0), (LEARNING_LR, 1), (FROZEN_LR, 0), (DIVERGING_LR, 0)]
    reports: list[list[dict]] = [[] for _ in fused_specs]
    fused = run_trials(fused_specs, [r.append for r in reports])
    alone = [run_downstream(spec) for spec in alone_specs]

    for spec, f, a in zip(fused_specs, fused, alone):
        assert_same_trial(f, a)
        assert read_record(Path(spec.trial_dir) / "record.json") == f
        assert not (Path(spec.trial_dir) / CHECKPOINT_FILE).exists()  # ended: best/ holds what is kept
        # Its rows were padded to the fused batch's longest row: at least as much padding as alone.
        if a.status == "completed":
            assert f.padding_ratio is not None and f.padding_ratio >= a.padding_ratio > 1.0
    learning, frozen, diverged = fused[:2], fused[2], fused[3]
    # Stopped on patience before the last epoch; diverged at once; the learning members trained on
    # after both left the fused batch (their histories equal those of their trials alone).
    assert frozen.status == "completed" and len(frozen.dev_history) == PATIENCE + 1 < EPOCHS
    assert diverged.status == "diverged" and diverged.error.endswith("at step 2 (epoch 1)")
    assert all(r.status == "completed" and r.dev_history[-1].step > 2 for r in learning)
    assert max(len(r.dev_history) for r in learning) >= len(frozen.dev_history)
    # Each member's reports are its own, ending with how it ended.
    for member, record in zip(reports, fused):
        assert [r["step"] for r in member if "dev" in r] == [p.step for p in record.dev_history]
        assert member[-1]["status"] == record.status
        assert member[-1].get("best_dev") == record.best_dev


def test_a_fused_members_saved_best_is_what_the_evaluation_stage_scores(plan):
    specs = plan("layer", False, "fused-saved")[:2]
    started = time.perf_counter()
    records = run_trials(specs)
    wall = time.perf_counter() - started
    # Device time is shared fairly: the members' seconds sum to at most the group's wall time.
    assert all(r.train_seconds > 0 for r in records) and sum(r.train_seconds for r in records) <= wall
    for spec, record in zip(specs, records):
        for name in ("best/trainable.safetensors", "labels.json", "few_shot_sample.json", "predictions/de-DE.jsonl"):
            assert (Path(spec.trial_dir) / name).is_file(), name
        scores = evaluate_saved_trial(spec, ["en-US", "de-DE"], update_record=False)
        assert scores == pytest.approx(record.test_scores, abs=1e-9)


def copies(spec: TrialSpec, n: int) -> list[TrialSpec]:
    """`n` trials with the same config (lr and seed) as `spec` under their own ids and folders."""
    return [dataclasses.replace(spec, trial_id=f"{spec.trial_id}-copy{i}", trial_dir=f"{spec.trial_dir}-copy{i}",
                                tensorboard_dir=f"{spec.tensorboard_dir}-copy{i}") for i in range(n)]


def losses(record) -> list[float]:
    return [p.train_loss for p in record.dev_history]


def test_with_dropout_on_members_of_the_same_seed_draw_their_own_masks(plan):
    # Control: with dropout off two members of the same lr and seed are the same trial, bit for bit.
    off = run_trials(copies(plan("layer", False, "same-seed-off")[0], 2))
    assert losses(off[0]) == losses(off[1])
    # With dropout on (prompt, head and backbone) the same two members draw different masks.
    on = run_trials(copies(plan("layer", True, "same-seed-on")[0], 2))
    assert [r.status for r in on] == ["completed", "completed"]
    assert all(math.isfinite(x) for r in on for x in losses(r))
    assert losses(on[0]) != losses(on[1])
    assert losses(on[0]) != losses(off[0])  # dropout did act


def test_in_bf16_fused_members_stay_within_the_stated_tolerance_of_their_trials_alone(plan):
    # Learning (seeds 0 and 1) and frozen: the backbone in bf16 and the forward under autocast.
    fused_specs, alone_specs = (plan("layer", False, f"bf16-{how}", "bf16")[:3] for how in ("fused", "alone"))
    fused = run_trials(fused_specs)
    alone = [run_downstream(spec) for spec in alone_specs]
    for f, a in zip(fused, alone):
        assert f.precision == a.precision == "bf16"
        # The best may move to a neighbouring evaluation whose score is as close: it is compared by value.
        assert_same_trial(f, a, score=BF16_SCORE, loss=BF16_LOSS, same_best=False)


def test_a_killed_fused_run_resumes_each_member_from_its_own_checkpoint(plan):
    # Learning (seeds 0 and 1) and frozen (stops on patience at epoch 3). The process dies in the
    # second member's report of epoch 2: the first two members have checkpoints of epoch 2, the
    # third only of epoch 1, so the resumed run holds members at different epochs.
    whole = run_trials(plan("layer", False, "kill-whole")[:3])
    specs = plan("layer", False, "kill-cut")[:3]
    with pytest.raises(Killed):
        run_trials(specs, [None, kill_after_evaluation(2), None])
    cut = [read_record(Path(s.trial_dir) / "record.json") for s in specs]
    assert [r.status for r in cut] == ["running"] * 3 and [len(r.dev_history) for r in cut] == [2, 2, 1]
    assert all((Path(s.trial_dir) / CHECKPOINT_FILE).is_file() for s in specs)

    resumed = run_trials(specs)
    for r, c, w in zip(resumed, cut, whole):
        assert r.resumed_at == [c.dev_history[-1].step]  # each from its own last evaluation
        assert_same_trial(r, w)
    assert resumed[2].status == "completed" and len(resumed[2].dev_history) == PATIENCE + 1


def test_fused_members_paused_at_a_milestone_continue_exactly_with_dropout_on(plan):
    # Dropout on everywhere: equal losses mean the members' own and the shared generators were restored.
    whole = run_trials(plan("layer", True, "pause-whole")[:2])
    specs = plan("layer", True, "pause-cut")[:2]
    paused = run_trials([dataclasses.replace(s, stop_after_epoch=2) for s in specs])
    assert [(r.status, len(r.dev_history), r.test_scores) for r in paused] == [("paused", 2, {})] * 2
    resumed = run_trials(specs)
    for r, w in zip(resumed, whole):
        assert r.status == w.status == "completed" and r.resumed_at == [r.dev_history[1].step]
        assert r.dev_history == w.dev_history and r.test_scores == w.test_scores  # exactly


def test_trials_of_other_groups_or_methods_are_refused(plan):
    layer, inputs = plan("layer", False, "refuse-layer")[0], plan("input", False, "refuse-input")[0]
    with pytest.raises(XsweepError, match="not of the group"):
        run_trials([layer, dataclasses.replace(inputs, trial_id="other")])
    with pytest.raises(XsweepError, match="same trial twice"):
        run_trials([layer, layer])
