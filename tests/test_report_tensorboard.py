"""TensorBoard: a trial's writer read back through TensorBoard's own reader, and group runs."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hp_metadata

from test_selection import tie_sweep
from xsweep.record import DevPoint
from xsweep.selection import summarise
from xsweep.report.tensorboard import read_plugin_content, read_scalars, write_group_summaries
from xsweep.trial_log import TrialWriter, flatten_config, pick_hparams

CONFIG = {
    "name": "quick", "method": "pt", "seed": 3,
    "optim": {"lr": 0.01, "epochs": 30},
    "data": {"shots": None, "eval_locales": ["de-DE", "en-US"], "train_locale": "en-US"},
    "backbone": {"dropout": True},
    "sweep": {"grid": {"optim.lr": [0.01, 0.001]}},
    "align": {"data": [], "optim": {"lr": 5e-5, "steps": 1000}},
}
SWEPT = {"optim.lr": 0.01, "seed": 3, "data.shots": "null"}


@pytest.mark.timeout(60)
def test_flatten_config_dotted_keys_and_strings():
    flat = flatten_config(CONFIG)
    assert flat["optim.lr"] == 0.01 and flat["seed"] == 3
    assert flat["data.eval_locales"] == '["de-DE", "en-US"]'
    assert flat["data.shots"] == "null"
    assert flat["backbone.dropout"] == "true"
    assert flat["sweep.grid.optim.lr"] == "[0.01, 0.001]"


@pytest.mark.timeout(60)
def test_picked_hparams_are_the_named_keys_in_their_order():
    flat = flatten_config(CONFIG)
    assert list(pick_hparams(flat, ["seed", "optim.lr"])) == ["seed", "optim.lr"]
    # A section stands for its leaves; a key the config lacks is "null", never silently absent.
    assert pick_hparams(flat, ["align.optim", "prompt.length"]) == {
        "align.optim.lr": 5e-5, "align.optim.steps": 1000, "prompt.length": "null"}
    # "optim" names the section, not every key that starts with the letters "optim".
    assert set(pick_hparams({"optim.lr": 1.0, "optimizer": "adam"}, ["optim"])) == {"optim.lr"}


@pytest.mark.timeout(60)
def test_trial_writer_round_trip_and_hparams_at_start(tmp_path):
    values = [(1, 2.5), (2, 1.25), (3, 0.123456789)]
    writer = TrialWriter(tmp_path / "t000")
    writer.hparams(SWEPT, ["dev/en-US/accuracy", "best_dev"], config=CONFIG)
    # HParams must be on disk as soon as the trial starts, before any metric or close.
    started = read_plugin_content(tmp_path, "hparams")["t000"]
    start_info = hp_metadata.parse_session_start_info_plugin_data(started[hp_metadata.SESSION_START_INFO_TAG])
    assert set(start_info.hparams) == {"optim.lr", "seed", "data.shots"}  # no align.*, no data.eval_locales
    assert start_info.hparams["optim.lr"].number_value == 0.01
    assert start_info.hparams["seed"].number_value == 3
    assert start_info.hparams["data.shots"].string_value == "null"
    assert hp_metadata.SESSION_END_INFO_TAG not in started
    # The whole resolved config is the trial's text summary, also there from the start.
    assert config_text(tmp_path / "t000") == CONFIG

    for step, value in values:
        writer.scalar("train/loss", value, step)
    writer.scalar("dev/en-US/accuracy", 0.75, 3)
    writer.scalars({"test/de-DE/accuracy": 0.5, "best_dev": 0.75}, 3)
    writer.text("notes", "hello *markdown*")
    writer.close()

    scalars = read_scalars(tmp_path)
    assert set(scalars) == {"t000"}
    run = scalars["t000"]
    assert set(run) == {"train/loss", "dev/en-US/accuracy", "test/de-DE/accuracy", "best_dev"}
    # Event files hold float32: equal to the float32 rounding of what was written.
    assert run["train/loss"] == [(s, float(np.float32(v))) for s, v in values]
    assert run["dev/en-US/accuracy"] == [(3, 0.75)]

    content = read_plugin_content(tmp_path, "hparams")["t000"]
    experiment = hp_metadata.parse_experiment_plugin_data(content[hp_metadata.EXPERIMENT_TAG])
    assert {m.name.tag for m in experiment.metric_infos} == {"dev/en-US/accuracy", "best_dev"}
    assert [h.name for h in experiment.hparam_infos] == list(SWEPT)
    assert hp_metadata.SESSION_END_INFO_TAG in content
    assert {"notes/text_summary", "config/text_summary"} <= set(read_plugin_content(tmp_path, "text")["t000"])


def config_text(run_dir) -> dict:
    """The resolved config a trial wrote as its `config` text summary (a YAML code block)."""
    import yaml

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("config/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert text.startswith("```yaml\n") and text.endswith("```")
    return yaml.safe_load(text.removeprefix("```yaml\n").removesuffix("```"))


@pytest.mark.timeout(60)
def test_group_runs_hold_mean_and_std_curves(tmp_path):
    records = tie_sweep()
    # Give the chosen lr (1e-3) a third evaluation on seeds 0 and 1 only (seed 2 stopped early).
    for record, score in zip(records[6:8], (0.3, 0.5)):
        record.dev_history.append(DevPoint(step=30, epoch=3, score=score, train_loss=0.25))
    summaries = summarise(records)
    written = write_group_summaries(summaries, records, tmp_path)
    assert all(path.is_dir() for path in written)

    scalars = read_scalars(tmp_path)
    base = "_groups/massive-vanilla_pt_layer16-g1"
    mean, plus, minus = (scalars[f"{base}/{name}"] for name in ("mean", "mean+std", "mean-std"))
    tag = "dev/en-US/accuracy"
    # Step 20 holds the best dev of seeds 0, 1, 2 at lr 1e-3: 0.60, 0.80, 0.70.
    dev20 = [0.60, 0.80, 0.70]
    m, s = statistics.fmean(dev20), statistics.stdev(dev20)
    assert dict(mean[tag])[20] == pytest.approx(m, rel=1e-6)
    assert dict(plus[tag])[20] == pytest.approx(m + s, rel=1e-6)
    assert dict(minus[tag])[20] == pytest.approx(m - s, rel=1e-6)
    assert dict(mean[f"{tag}/n_seeds"]) == {10: 3.0, 20: 3.0, 30: 2.0}
    assert dict(mean[tag])[30] == pytest.approx(0.4, rel=1e-6)
    assert dict(mean["test/ja-JP/accuracy"]) == {0: pytest.approx(0.5, rel=1e-6)}

    acc = EventAccumulator(str(tmp_path / "_summary"), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("results/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| AVG | 66.7 (5.8) |" in text


@pytest.mark.timeout(60)
def test_session_end_status_follows_the_record(tmp_path):
    from tensorboard.plugins.hparams import api_pb2

    for name, status in (("ok", "completed"), ("nan", "diverged"), ("live", "running"), ("cut", "paused"),
                         ("halt", "stopped")):
        writer = TrialWriter(tmp_path / name)
        writer.hparams(SWEPT, ["best_dev"], config=CONFIG)
        writer.close(status)
    with TrialWriter(tmp_path / "cut") as later:  # the runner prunes a paused trial afterwards
        later.end_session("pruned")
    content = read_plugin_content(tmp_path, "hparams")
    end = {run: hp_metadata.parse_session_end_info_plugin_data(tags[hp_metadata.SESSION_END_INFO_TAG]).status
           for run, tags in content.items() if hp_metadata.SESSION_END_INFO_TAG in tags}
    assert end == {"ok": api_pb2.STATUS_SUCCESS, "nan": api_pb2.STATUS_FAILURE, "cut": api_pb2.STATUS_UNKNOWN,
                   "halt": api_pb2.STATUS_UNKNOWN}
