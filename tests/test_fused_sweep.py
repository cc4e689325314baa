"""`sweep.fuse` in a sweep on Ray: fused runs report per trial and equal the same sweep unfused.

With dropout off, a fused member's record (dev history, best, test scores) equals its trial run
alone (tests/test_fused.py shows it for `run_trials`); here the runner's chunking, the Tune
trainable and the per-member reporting are checked end to end: each configuration keeps its own
record, progress lines and selection, and a resumed sweep runs nothing again. Fused trials pause at
a pruning milestone and continue from their own checkpoints, as lone trials do.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.record import read_records
from xsweep.report.run import report_run
from xsweep.sweep.fusion import fused_chunks
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials, run_sweep
from xsweep.train.downstream import CHECKPOINT_FILE, run_trials

# Two real sweeps each (fused and alone): about a minute on a quiet machine, four when the cores are shared.
pytestmark = pytest.mark.timeout(600)

EXPERIMENT = """\
name: {name}
method: pt
backbone: {{name: "builtin:micro", dropout: false}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4, dropout: 0.0}}
head: {{kind: vanilla, dropout: 0.0}}
optim: {{epochs: 4, batch_size: 16, patience: 2}}
sweep:
  grid: {{optim.lr: [0.03, 0.001]{grid}}}
  seeds: [0, 1]
  fuse: {fuse}
resources: {{cpus_per_trial: 1}}
storage: {{root: {root}}}
"""


def experiment(folder: Path, name: str, fuse: int, grid: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, fuse=fuse, grid=grid, root=folder / "runs"))
    return path


def by_config(run_dir: Path) -> dict[tuple[float, int], object]:
    return {(r.lr, r.seed): r for r in read_records(run_dir)}


def test_a_fused_sweep_reports_each_trial_and_equals_the_unfused_sweep(tmp_path, ray_session):
    lines: list[str] = []
    fused_dir, failed = run_sweep(load_config(experiment(tmp_path, "fused", fuse=4)), log=lines.append)
    assert failed == []
    alone_dir, failed = run_sweep(load_config(experiment(tmp_path, "alone", fuse=1)), log=lambda _: None)
    assert failed == []

    starts = [line for line in lines if line.strip().startswith("start")]
    assert len(starts) == 1 and "fused: 4 trials" in starts[0], lines
    fused, alone = by_config(fused_dir), by_config(alone_dir)
    assert fused.keys() == alone.keys() and len(fused) == 4
    for key, record in fused.items():
        other = alone[key]
        assert record.status == other.status == "completed"
        assert [(p.step, p.epoch) for p in record.dev_history] == [(p.step, p.epoch) for p in other.dev_history]
        assert [p.score for p in record.dev_history] == pytest.approx([p.score for p in other.dev_history], abs=1e-6)
        assert record.test_scores.keys() == other.test_scores.keys()
        for locale, score in record.test_scores.items():
            assert score == pytest.approx(other.test_scores[locale], abs=1e-6)
        # Each member has its own progress lines and its fair share of the run's seconds.
        assert any(record.trial_id in line and "done" in line for line in lines)
        assert record.train_seconds > 0
    # The evaluation stage tested the selected learning rate's trials only, in both sweeps.
    tested = sorted(key for key, r in fused.items() if r.test_scores)
    assert tested == sorted(key for key, r in alone.items() if r.test_scores) and len(tested) == 2
    report_run(fused_dir), report_run(alone_dir)
    assert (fused_dir / "results" / "results.csv").read_text() == (alone_dir / "results" / "results.csv").read_text()

    # Resumed, the fused sweep runs nothing again.
    again: list[str] = []
    run_sweep(load_config(experiment(tmp_path, "fused", fuse=4)), resume=True, log=again.append)
    assert not any(line.strip().startswith("start") for line in again), again


def test_fused_trials_pause_at_a_pruning_milestone_and_the_survivors_end_as_if_never_paused(tmp_path, ray_session):
    cfg = load_config(experiment(tmp_path, "pruned", fuse=2), ["optim.epochs=3", "sweep.pruning.milestones=[1]",
                                                                     "sweep.max_concurrent_trials=1"])
    lines: list[str] = []
    run_dir, failed = run_sweep(cfg, log=lines.append)
    assert failed == []
    # Phase 1: both fused runs of 2 (one group, 2 lr x 2 seeds) to epoch 1; phase 2: the kept rate's seeds.
    starts = [line for line in lines if line.strip().startswith("start")]
    assert len(starts) == 3 and all("fused: 2 trials" in line for line in starts), lines
    assert any(line.startswith("pruning ") and " at epoch 1 " in line for line in lines), lines
    records = by_config(run_dir)
    pruned = [r for r in records.values() if r.status == "pruned"]
    kept = [r for r in records.values() if r.status != "pruned"]
    assert len({r.lr for r in pruned}) == 1 and sorted(r.seed for r in pruned) == [0, 1]
    for record in pruned:  # paused at the milestone, untested, checkpoint kept
        assert [p.epoch for p in record.dev_history] == [1] and not record.test_scores
        assert (run_dir / "trials" / record.trial_id / CHECKPOINT_FILE).is_file()
    for record in kept:  # continued from its own checkpoint of epoch 1
        assert record.status == "completed" and record.resumed_at == [record.dev_history[0].step]
        assert record.padding_ratio is not None

    # The survivors, fused again here without a pause, end where the paused ones ended (to the fp32
    # tolerance of tests/test_fused.py: before the milestone each was fused with a pruned trial).
    kept_ids = {r.trial_id for r in kept}
    specs = [dataclasses.replace(s, trial_dir=str(tmp_path / "again" / s.trial_id),
                                 tensorboard_dir=str(tmp_path / "again-tb" / s.trial_id))
             for s in plan_trials(cfg, run_dir, prepare_inputs(cfg, log=lambda _: None)) if s.trial_id in kept_ids]
    for again in run_trials(specs):
        paused = records[(again.lr, again.seed)]
        assert [(p.step, p.epoch) for p in again.dev_history] == [(p.step, p.epoch) for p in paused.dev_history]
        assert [p.score for p in again.dev_history] == pytest.approx([p.score for p in paused.dev_history], abs=1e-5)
        assert [p.train_loss for p in again.dev_history] == \
            pytest.approx([p.train_loss for p in paused.dev_history], abs=1e-4)
        assert (again.best_step, again.status) == (paused.best_step, paused.status)


def test_fused_runs_hold_one_group_each_in_grid_order(tmp_path):
    cfg = load_config(experiment(tmp_path, "chunks", fuse=3, grid=", prompt.length: [2, 4]"))
    specs = plan_trials(cfg, tmp_path / "chunks", prepare_inputs(cfg, log=lambda _: None))
    chunks = fused_chunks(specs, 3)
    # 2 groups (prompt length) x 2 lr x 2 seeds, the groups interleaved in grid order: each group's
    # 4 trials in runs of 3 and 1, each run placed where its first trial is.
    assert [len(c) for c in chunks] == [3, 3, 1, 1]
    position = {s.trial_id: i for i, s in enumerate(specs)}
    for chunk in chunks:
        assert len({spec.group_key for spec in chunk}) == 1
        assert [position[s.trial_id] for s in chunk] == sorted(position[s.trial_id] for s in chunk)
    assert [position[c[0].trial_id] for c in chunks] == sorted(position[c[0].trial_id] for c in chunks)
    assert sorted(s.trial_id for c in chunks for s in c) == sorted(position)
    assert [len(c) for c in fused_chunks(specs, 1)] == [1] * 8


def test_fuse_is_refused_where_trials_cannot_share_a_forward(tmp_path):
    path = experiment(tmp_path, "ft", fuse=2)
    with pytest.raises(XsweepError) as error:
        load_config(path, ["method=ft", "prompt.kind=none"])
    assert "sweep.fuse" in str(error.value) and "ft" in str(error.value)
    with pytest.raises(XsweepError, match="sweep.fuse"):
        load_config(path, ["sweep.fuse=0"])
    with pytest.raises(XsweepError, match="fp16"):
        load_config(path, ["optim.precision=fp16"])
    assert load_config(path, ["sweep.pruning.milestones=[2]"]).sweep.fuse == 2  # fused trials pause and resume
