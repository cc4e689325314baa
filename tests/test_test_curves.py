"""`TrialSpec.test_at_every_evaluation`: test curves over training, with training unchanged.

The benchmark baseline of bench/bench_sweep.py (the issue's naive sweep) relies on it: testing
every language at every evaluation must cost time only, never change what the trial learns.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from xsweep.config import load_config
from xsweep.record import read_record
from xsweep.report.tensorboard import read_scalars
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream

pytestmark = pytest.mark.timeout(120)

EXPERIMENT = """\
name: curves
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 3, batch_size: 16, lr: 0.03}}
sweep: {{evaluate: all}}
storage: {{root: {root}}}
"""


def test_testing_at_every_evaluation_adds_curves_and_changes_nothing_else(tmp_path):
    path = tmp_path / "curves.yaml"
    path.write_text(EXPERIMENT.format(root=tmp_path / "runs"))
    cfg = load_config(path)
    inputs = prepare_inputs(cfg, log=lambda _: None)
    [plain] = plan_trials(cfg, tmp_path / "plain", inputs)
    [curves] = plan_trials(cfg, tmp_path / "curves", inputs)
    curves = replace(curves, test_at_every_evaluation=True)

    run_downstream(plain)
    run_downstream(curves)
    a, b = read_record(Path(plain.trial_dir) / "record.json"), read_record(Path(curves.trial_dir) / "record.json")
    assert [(p.step, p.score, p.train_loss) for p in a.dev_history] == \
        [(p.step, p.score, p.train_loss) for p in b.dev_history]
    assert a.test_scores == b.test_scores and set(a.test_scores) == {"en-US", "de-DE"}

    [plain_tags] = read_scalars(Path(plain.tensorboard_dir)).values()
    [curve_tags] = read_scalars(Path(curves.tensorboard_dir)).values()
    assert not any(tag.startswith("test_curve/") for tag in plain_tags)
    for locale in ("en-US", "de-DE"):
        points = curve_tags[f"test_curve/{locale}/accuracy"]
        assert [step for step, _ in points] == [p.step for p in b.dev_history]  # one per evaluation
        # At the best evaluation the curve is the kept best's final test score.
        at_best = dict(points)[b.best_step]
        assert at_best == pytest.approx(b.test_scores[locale], abs=1e-6)
