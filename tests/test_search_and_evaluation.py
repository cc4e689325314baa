"""The multilingual evaluation stage (only the selected learning rate is tested on every language)
and Optuna's TPE search with the grid's seed handling, on real sweeps on Ray."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.record import read_records

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

CONFIG = """\
name: {name}
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE, es-ES]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 3, batch_size: 16, patience: 3}}
sweep:
  grid:
    optim.lr: [3.0e-2, 1.0e-3]
  seeds: [0, 1]
storage: {{root: {root}}}
resources: {{cpus_per_trial: 0.5}}
"""


def table(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "results" / "results.csv") as f:
        return list(csv.reader(f))


def test_selected_lr_evaluation_gives_the_tables_of_evaluating_every_trial(tmp_path, ray_session, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(CONFIG.format(name="stage", root=tmp_path))
    assert main(["run", str(config)]) == 0
    assert "evaluation stage: 2 trial(s) of the selected learning rates on 3 languages" in capsys.readouterr().out
    assert main(["run", str(config), "storage.name=every", "sweep.evaluate=all"]) == 0

    staged, every = read_records(tmp_path / "stage"), read_records(tmp_path / "every")
    tested = {r.lr for r in staged if r.test_scores}
    assert len(tested) == 1  # only the chosen rate's seeds were tested on every language ...
    assert all(set(r.test_scores) == {"en-US", "de-DE", "es-ES"} for r in staged if r.lr in tested)
    assert all(set(r.test_scores) == {"en-US", "de-DE", "es-ES"} for r in every)  # ... here, every trial
    # Same trials, same training: the dev histories agree, and so do the test scores of the chosen rate.
    by_id = {r.trial_id: r for r in every}
    for record in staged:
        assert record.dev_history == by_id[record.trial_id].dev_history
        if record.test_scores:
            assert record.test_scores == by_id[record.trial_id].test_scores
    assert table(tmp_path / "stage") == table(tmp_path / "every")


def test_optuna_runs_every_seed_of_each_point_and_resumes_without_rerunning(tmp_path, ray_session, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(CONFIG.format(name="tpe", root=tmp_path))
    search = ["sweep.search=optuna", "sweep.grid={}", "sweep.evaluate=all",
              "sweep.optuna={trials: 3, parallel: 2, seed: 7, space: {optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}}}"]
    assert main(["run", str(config), *search]) == 0
    records = read_records(tmp_path / "tpe")
    lrs = sorted({r.lr for r in records})
    assert len(lrs) == 3 and all(1e-3 <= lr <= 1e-1 for lr in lrs)
    assert sorted(r.seed for r in records) == [0, 0, 0, 1, 1, 1]  # every point ran both seeds
    study = json.loads((tmp_path / "tpe" / "search" / "optuna-0.json").read_text())
    assert sorted(p["point"]["optim.lr"] for p in study["points"]) == lrs
    for point in study["points"]:  # TPE was told the mean over seeds of the best English dev scores
        seeds = [r.best_dev for r in records if r.lr == point["point"]["optim.lr"]]
        assert point["mean_best_dev"] == pytest.approx(sum(seeds) / len(seeds))

    capsys.readouterr()
    stamps = {r.trial_id: (tmp_path / "tpe" / "trials" / r.trial_id / "record.json").stat().st_mtime_ns
              for r in records}
    assert main(["run", str(config), *search, "--resume"]) == 0
    # The seeded sampler, told the same scores, suggests the same points: nothing runs again.
    assert len(read_records(tmp_path / "tpe")) == 6
    assert all((tmp_path / "tpe" / "trials" / t / "record.json").stat().st_mtime_ns == m for t, m in stamps.items())


def test_resume_with_more_seeds_and_languages_reuses_every_finished_trial(tmp_path, ray_session, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(CONFIG.format(name="grow", root=tmp_path))
    narrow = ["sweep.seeds=[0]", "data.eval_locales=[en-US, de-DE]", "sweep.grid={optim.lr: [3.0e-2]}"]
    assert main(["run", str(config), *narrow]) == 0
    [first] = read_records(tmp_path / "grow")
    assert set(first.test_scores) == {"en-US", "de-DE"}

    capsys.readouterr()
    wider = ["sweep.seeds=[0, 1]", "data.eval_locales=[en-US, de-DE, es-ES]", "sweep.grid={optim.lr: [3.0e-2]}"]
    assert main(["run", str(config), *wider, "--resume"]) == 0
    assert "1 already completed, 1 to run" in capsys.readouterr().out
    records = {r.seed: r for r in read_records(tmp_path / "grow")}
    assert sorted(records) == [0, 1]
    again = records[0]
    assert again.trial_id == first.trial_id and again.dev_history == first.dev_history  # not retrained
    assert again.train_seconds == first.train_seconds
    assert set(again.test_scores) == {"en-US", "de-DE", "es-ES"}  # only tested on the new language
    assert again.test_scores["de-DE"] == first.test_scores["de-DE"]
    # Anything else changed is refused, naming the key.
    assert main(["run", str(config), *wider, "optim.epochs=5", "--resume"]) == 2
    assert "in optim.epochs" in capsys.readouterr().err


def test_budget_cap_stops_starting_trials_and_the_report_counts_device_time(tmp_path, ray_session, capsys):
    config = tmp_path / "exp.yaml"
    config.write_text(CONFIG.format(name="capped", root=tmp_path))
    capped = ["sweep.max_concurrent_trials=1", "sweep.budget_device_hours=1.0e-6", "sweep.evaluate=all",
              "sweep.seeds=[0]"]
    main(["run", str(config), *capped])
    assert "budget reached" in capsys.readouterr().out
    [record] = read_records(tmp_path / "capped")  # the first batch ran; then the budget was spent
    assert record.status == "completed" and record.train_seconds > 0
    cost = (tmp_path / "capped" / "results" / "cost.md").read_text()
    # cpus_per_trial 0.5: device-seconds are half the wall seconds of training and testing.
    expected = 0.5 * (record.train_seconds + record.eval_seconds)
    assert f"| {expected:.0f} | CPU |" in cost and "| **total** | 1 |" in cost

    # More budget and --resume run the rest.
    assert main(["run", str(config), *capped[:1], "sweep.budget_device_hours=100", *capped[2:], "--resume"]) == 0
    assert len(read_records(tmp_path / "capped")) == 2
