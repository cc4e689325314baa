"""Pruning phases, Optuna search and the device-hour cap in a bucket run (`storage.root: s3://...`).

Each decides from what the trials wrote: the records (and Optuna's study file) that the driver
pulls from the bucket into its copy of the run after every batch. Had it decided from its own copy
alone, it would see no score: nothing would be pruned, TPE would be told failures, and the budget
would never be spent. Against moto's S3 server on 127.0.0.1, as tests/test_storage_bucket.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.record import read_records
from xsweep.selection import summarise
from xsweep.storage import Mirror, join, listing, read_bytes
from xsweep.train.checkpoint import CHECKPOINT_FILE

from test_storage_bucket import BUCKET, root_of, s3_client

pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

CONFIG = """\
name: {name}
method: ft
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: null, eval_locales: [en-US, de-DE]}}
prompt: {{kind: none}}
optim: {{epochs: 4, batch_size: 16, patience: 10}}
sweep:
  grid:
    optim.lr: [3.0e-3, 1.0e-7]
  seeds: [0, 1]
  evaluate: all
storage: {{root: "{root}"}}
resources: {{cpus_per_trial: 0.5}}
"""
"""FT on the built-in `micro` backbone: it learns at lr 3e-3 and not at 1e-7 (tests/test_pruning.py)."""


@pytest.fixture(scope="module")
def endpoint(s3_endpoint):
    s3_client(s3_endpoint).create_bucket(Bucket=BUCKET)
    return s3_endpoint


def experiment(folder: Path, name: str, endpoint: str) -> tuple[Path, str]:
    """The experiment file, and its run's URI."""
    root = root_of(endpoint)
    path = folder / f"{name}.yaml"
    path.write_text(CONFIG.format(name=name, root=root))
    return path, join(root, name)


def pulled(run_uri: str, folder: Path) -> Path:
    Mirror(run_uri, folder).pull()
    return folder


def test_pruning_phases_decide_from_the_records_in_the_bucket(endpoint, tmp_path, ray_session, capsys):
    config, run_uri = experiment(tmp_path, "pruned", endpoint)
    args = ["run", str(config), "sweep.pruning.milestones=[2]"]
    assert main(args) == 0
    assert "kept lr 0.003 (" in (out := capsys.readouterr().out) and "; pruned lr 1e-07 (" in out

    run_dir = pulled(run_uri, tmp_path / "copy")
    records = read_records(run_dir)
    assert len(records) == 4
    pruned = [r for r in records if r.status == "pruned"]
    assert sorted(r.seed for r in pruned) == [0, 1] and {r.lr for r in pruned} == {1e-7}
    for record in pruned:  # stopped at the milestone, its checkpoint kept in the bucket to go on from
        assert [p.epoch for p in record.dev_history] == [1, 2] and record.pruned_at_epoch == 2
        assert CHECKPOINT_FILE in listing(join(run_uri, "trials", record.trial_id))
    for record in records:
        if record.status != "pruned":  # paused at the milestone, continued from its pushed checkpoint
            assert record.status == "completed" and [p.epoch for p in record.dev_history] == [1, 2, 3, 4]
            assert record.resumed_at == [record.dev_history[1].step]
    [summary] = summarise(records)
    assert summary.chosen_lr == 3e-3 and summary.lr_table[1e-7].reason == "pruned at epoch 2"
    assert "pruned at epoch 2" in read_bytes(join(run_uri, "results", "results.md")).decode()

    # --resume finds every decision in the bucket: nothing runs, no record is rewritten.
    before = {r.trial_id: read_bytes(join(run_uri, "trials", r.trial_id, "record.json")) for r in records}
    assert main([*args, "--resume"]) == 0
    assert "4 already completed, 0 to run" in capsys.readouterr().out
    assert {t: read_bytes(join(run_uri, "trials", t, "record.json")) for t in before} == before


def test_optuna_is_told_the_scores_the_trials_wrote_to_the_bucket(endpoint, tmp_path, ray_session):
    config, run_uri = experiment(tmp_path, "tpe", endpoint)
    search = ["sweep.search=optuna", "sweep.grid={}", "sweep.seeds=[0]",
              "sweep.optuna={trials: 2, parallel: 2, seed: 7, space: {optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}}}"]
    assert main(["run", str(config), *search]) == 0
    study = json.loads(read_bytes(join(run_uri, "search", "optuna-0.json")))
    best_dev = {r.lr: r.best_dev for r in read_records(pulled(run_uri, tmp_path / "copy"))}
    assert len(best_dev) == 2 and all(score is not None for score in best_dev.values())
    assert {p["point"]["optim.lr"]: p["mean_best_dev"] for p in study["points"]} == pytest.approx(best_dev)


def test_the_budget_cap_counts_the_device_time_recorded_in_the_bucket(endpoint, tmp_path, ray_session, capsys):
    config, run_uri = experiment(tmp_path, "capped", endpoint)
    capped = ["sweep.max_concurrent_trials=1", "sweep.budget_device_hours=1.0e-6", "sweep.seeds=[0]"]
    main(["run", str(config), *capped])
    assert "budget reached" in capsys.readouterr().out
    [record] = read_records(pulled(run_uri, tmp_path / "copy"))  # the first batch ran; then the budget was spent
    assert record.status == "completed" and record.train_seconds > 0
    cost = read_bytes(join(run_uri, "results", "cost.md")).decode()
    expected = 0.5 * (record.train_seconds + record.eval_seconds)  # cpus_per_trial 0.5
    assert f"| {expected:.0f} | CPU |" in cost and "| **total** | 1 |" in cost

    assert main(["run", str(config), capped[0], "sweep.budget_device_hours=100", capped[2], "--resume"]) == 0
    assert len(read_records(pulled(run_uri, tmp_path / "again"))) == 2
