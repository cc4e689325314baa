"""A finished run directory made by hand: `report_run` writes every output, and TensorBoard,
started on a loopback port, serves the trials' per-language tags and the HParams data."""

from __future__ import annotations

import json
import time
import urllib.request
from statistics import mean, stdev

import pytest

from test_report_paper import LOCALES, group
from test_report_plots import bars_of
from xsweep.record import write_record
from xsweep.report.run import report_run
from xsweep.report.tensorboard import read_scalars, start_tensorboard
from xsweep.trial_log import TrialWriter

# Loopback requests must not go through a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with OPENER.open(request, timeout=10) as response:
        return json.load(response)


def make_run(run_dir):
    """Two groups (PT, APT) x 2 seeds, written as the sweep writes them: records and event files."""
    records = group("pt", 5, 16, [0.24, 0.26]) + group("apt", 5, 16, [0.55, 0.57])
    for record in records:
        write_record(record, run_dir / "trials" / record.trial_id)
        with TrialWriter(run_dir / "tensorboard" / record.trial_id) as writer:
            writer.hparams({"method": record.config["method"], "optim.lr": record.lr, "seed": record.seed},
                           ["dev/en-US/accuracy"], config={**record.config, "optim": {"lr": record.lr}, "seed": record.seed})
            writer.scalar("train/loss", 1.0, 1)
            writer.scalar("dev/en-US/accuracy", record.best_dev, 1)
            for locale, score in record.test_scores.items():
                writer.scalar(f"test/{locale}/accuracy", score, 1)
    return records


@pytest.mark.timeout(60)
def test_report_run_writes_tables_plots_and_group_runs(tmp_path, plot_figures):
    make_run(tmp_path)
    paths = report_run(tmp_path)
    assert "| AVG |" in paths.table_markdown.read_text()
    assert paths.table_latex.read_text().startswith("\\begin{table}")
    assert {"methods.md", "languages.tex"} <= set(paths.paper_tables)
    assert set(paths.plots) == {"languages"}
    assert paths.plots["languages"].read_bytes()[:4] == b"\x89PNG"
    # The plot shows the run's records: every language of each group at its seeds' mean (the
    # records score all languages alike), std error bars over the 2 seeds.
    bars = bars_of(plot_figures[paths.plots["languages"].name])
    for method, seeds in (("PT", [24.0, 26.0]), ("APT", [55.0, 57.0])):
        assert list(bars[method].values()) == [pytest.approx((mean(seeds), stdev(seeds)))] * (len(LOCALES) + 1), bars
    scalars = read_scalars(paths.tensorboard)
    assert any(run.startswith("_groups/") and run.endswith("/mean") for run in scalars)
    # A second report rewrites the derived runs instead of appending to them.
    report_run(tmp_path)
    again = read_scalars(paths.tensorboard)
    mean_run = next(run for run in again if run.endswith("/mean"))
    assert again[mean_run]["dev/en-US/accuracy"] == scalars[mean_run]["dev/en-US/accuracy"]


@pytest.mark.timeout(60)
def test_tensorboard_serves_runs_tags_and_hparams_on_loopback(tmp_path):
    records = make_run(tmp_path)
    report_run(tmp_path)
    process, url = start_tensorboard(tmp_path / "tensorboard")
    try:
        assert url.startswith("http://127.0.0.1:")
        trial = records[0].trial_id
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # TensorBoard loads event files in the background
            runs = get(url + "data/runs")
            if trial in runs and any(r.startswith("_groups/") for r in runs):
                break
            time.sleep(0.5)
        assert {r.trial_id for r in records} <= set(runs)
        tags = get(url + "data/plugin/scalars/tags")
        assert {"test/en-US/accuracy", "test/ja-JP/accuracy", "test/zh-CN/accuracy",
                "dev/en-US/accuracy", "train/loss"} <= set(tags[trial])
        experiment = get(url + "data/plugin/hparams/experiment", {"experimentName": ""})
        # The columns are the keys the sweep varies, not every key of the config.
        assert {h["name"] for h in experiment["hparamInfos"]} == {"method", "optim.lr", "seed"}
        assert [m["name"]["tag"] for m in experiment["metricInfos"]] == ["dev/en-US/accuracy"]
    finally:
        process.terminate()
        process.wait(timeout=20)
