"""TensorBoard's HParams view of a sweep: a trial run by the shipped loop lists the keys its sweep
varies and its metrics, not every key of its config; the whole config is its text summary."""

from __future__ import annotations

from pathlib import Path

import pytest
from tensorboard.plugins.hparams import metadata as hp_metadata

from test_report_tensorboard import config_text
from xsweep.config import load_config
from xsweep.report.tensorboard import read_plugin_content
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream

pytestmark = pytest.mark.timeout(300)  # 80 s on 2 loaded cores

EXPERIMENT = """\
name: hparams
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 1, batch_size: 16}}
sweep:
  grid:
    optim.lr: [3.0e-2, 1.0e-2]
    prompt.length: [2, 4]
  seeds: [0, 1]
  evaluate: all
storage: {{root: {root}}}
"""


def test_a_trial_lists_the_swept_keys_and_its_metrics_and_keeps_its_config_as_text(tmp_path):
    path = tmp_path / "hparams.yaml"
    path.write_text(EXPERIMENT.format(root=tmp_path / "runs"))
    cfg = load_config(path)
    specs = plan_trials(cfg, tmp_path / "run", prepare_inputs(cfg, log=lambda _: None))
    assert len(specs) == 8 and all(list(s.hparams) == ["optim.lr", "prompt.length", "seed"] for s in specs)
    spec = specs[-1]
    run_downstream(spec)

    content = read_plugin_content(Path(spec.tensorboard_dir), "hparams")["."]
    experiment = hp_metadata.parse_experiment_plugin_data(content[hp_metadata.EXPERIMENT_TAG])
    assert [h.name for h in experiment.hparam_infos] == ["optim.lr", "prompt.length", "seed"]
    assert [m.name.tag for m in experiment.metric_infos] == [
        "dev/en-US/accuracy", "best_dev", "test/en-US/accuracy", "test/de-DE/accuracy"]
    start = hp_metadata.parse_session_start_info_plugin_data(content[hp_metadata.SESSION_START_INFO_TAG])
    assert {k: v.number_value for k, v in start.hparams.items()} == {"optim.lr": 1e-2, "prompt.length": 4, "seed": 1}
    # The config holds a whole `align` section this PT run never reads: none of it is a column.
    assert any(key.startswith("align") for key in spec.config)
    assert config_text(Path(spec.tensorboard_dir)) == spec.config


def test_an_optuna_batch_lists_the_searched_keys_beside_the_grid_s(tmp_path):
    """Optuna's points (sweep/search.py) are a grid point and the suggested values: both are swept."""
    from xsweep.sweep.prepare import PreparedInputs

    path = tmp_path / "hparams.yaml"
    path.write_text(EXPERIMENT.format(root=tmp_path / "runs"))
    cfg = load_config(path)
    inputs = PreparedInputs(data_dir=tmp_path, eval_locales=["en-US"], backbone_path="builtin:micro", data_files=[])
    points = [{"prompt.length": 2, "optim.lr": 0.02, "optim.weight_decay": 0.1},
              {"prompt.length": 2, "optim.lr": 0.005, "optim.weight_decay": 0.0}]
    specs = plan_trials(cfg, tmp_path / "run", inputs, points=points, first_index=4)
    assert [s.hparams for s in specs] == [{**point, "seed": seed} for point in points for seed in (0, 1)]
