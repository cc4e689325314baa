"""End to end: a real 2-trial sweep on Ray with the built-in model and the demo data."""

from __future__ import annotations

import csv
import json

import pytest

from xsweep.cli import main
from xsweep.record import read_records
from xsweep.report.tensorboard import read_scalars

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]

CONFIG = """\
name: e2e
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 40}}
prompt: {{kind: layer, length: 8}}
optim: {{epochs: 6, batch_size: 32, patience: 3, lr: 1.0e-2}}
sweep:
  grid:
    optim.lr: [1.0e-2]
  seeds: [0, 1]
storage: {{root: {root}}}
resources: {{cpus_per_trial: 1}}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("runs")
    config = root / "e2e.yaml"
    config.write_text(CONFIG.format(root=root))
    assert main(["run", str(config)]) == 0
    return root / "e2e"


def test_run_directory_describes_itself(finished_run):
    assert (finished_run / "config.yaml").is_file()
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert manifest["packages"]["torch"] != "not installed"
    assert "en-US.jsonl" in manifest["data_files"] and len(manifest["data_files"]["en-US.jsonl"]) == 64


def test_trial_records_are_complete(finished_run):
    records = read_records(finished_run)
    assert sorted(r.seed for r in records) == [0, 1]
    assert len({r.group_key for r in records}) == 1
    for record in records:
        assert record.status == "completed"
        assert record.dev_history and record.best_dev == max(p.score for p in record.dev_history)
        assert record.best_step in [p.step for p in record.dev_history]
        assert set(record.test_scores) >= {"en-US", "de-DE"}
        trial_dir = finished_run / "trials" / record.trial_id
        assert (trial_dir / "few_shot_sample.json").is_file()
        assert (trial_dir / "labels.json").is_file()
        assert any((trial_dir / "best").glob("*.safetensors"))


def test_results_table_has_every_language_and_avg_with_std(finished_run):
    records = read_records(finished_run)
    locales = sorted(records[0].test_scores)
    with open(finished_run / "results" / "results.csv") as f:
        rows = list(csv.reader(f))
    first_column = [row[0] for row in rows]
    for locale in locales:
        assert locale in first_column
    assert "AVG" in first_column
    markdown = (finished_run / "results" / "results.md").read_text()
    avg_line = next(line for line in markdown.splitlines() if line.startswith("| AVG"))
    assert "(" in avg_line and ")" in avg_line  # mean (std) over the two seeds
    # The English score in the table is the mean over seeds of the trials' own scores.
    en_mean = 100 * sum(r.test_scores["en-US"] for r in records) / len(records)
    assert f"{en_mean:.1f}" in markdown


def test_tensorboard_events_read_back(finished_run):
    scalars = read_scalars(finished_run / "tensorboard")
    records = {r.trial_id: r for r in read_records(finished_run)}
    assert set(records) <= set(scalars)
    for trial_id, record in records.items():
        tags = scalars[trial_id]
        assert tags["train/loss"], "training loss logged"
        dev = [value for _, value in tags["dev/en-US/accuracy"]]
        assert dev == pytest.approx([p.score for p in record.dev_history])
        test_value = tags["test/de-DE/accuracy"][-1][1]
        assert test_value == pytest.approx(record.test_scores["de-DE"])


def test_resume_runs_nothing_new(finished_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in finished_run.glob("trials/*/record.json")}
    config = finished_run.parent / "e2e.yaml"
    assert main(["run", str(config), "--resume"]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in finished_run.glob("trials/*/record.json")}


def test_second_run_without_resume_is_refused(finished_run, capsys):
    config = finished_run.parent / "e2e.yaml"
    assert main(["run", str(config)]) == 2
    assert "--resume" in capsys.readouterr().err


def test_predict_reproduces_the_recorded_test_accuracy(finished_run):
    """`xsweep predict` runs the saved prompt and head: on en-US test it scores what the trial recorded."""
    from xsweep.data.massive import read_massive
    from xsweep.predict import predict_intents
    from xsweep.sweep.prepare import demo_data_dir

    record = read_records(finished_run)[0]
    rows = read_massive(demo_data_dir() / "massive", "en-US", ["test"])
    predictions = predict_intents(finished_run / "trials" / record.trial_id, [row.utt for row in rows])
    assert all(0 < p.probability <= 1 for p in predictions)
    accuracy = sum(p.intent == row.intent for p, row in zip(predictions, rows)) / len(rows)
    assert accuracy == pytest.approx(record.test_scores["en-US"], abs=1e-6)


def test_per_example_predictions_match_the_scores(finished_run):
    for record in read_records(finished_run):
        for locale, score in record.test_scores.items():
            path = finished_run / "trials" / record.trial_id / "predictions" / f"{locale}.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            assert rows and {"id", "utt", "gold", "predicted"} <= set(rows[0])
            assert sum(r["gold"] == r["predicted"] for r in rows) / len(rows) == pytest.approx(score)


def test_a_run_written_before_new_config_keys_existed_resumes_with_nothing_rerun(finished_run, capsys):
    """An older xsweep wrote config.yaml and the records without the keys added since
    (`record.ADDED_KEYS`); this version must find every trial of that run finished."""
    import shutil

    import yaml

    from xsweep.record import ADDED_KEYS

    assert ADDED_KEYS, "no added key to check with"
    older = finished_run.parent / "e2e-older"
    shutil.copytree(finished_run, older)

    def drop_added(config: dict) -> dict:
        for dotted in ADDED_KEYS:
            *parents, leaf = dotted.split(".")
            section = config
            for name in parents:
                section = section.get(name, {})
            section.pop(leaf, None)
        return config

    config_file = older / "config.yaml"
    config = drop_added(yaml.safe_load(config_file.read_text()))
    config["storage"]["name"] = "e2e-older"  # the copy's own name, as the resume below gives it
    config_file.write_text(yaml.safe_dump(config))
    for path in older.glob("trials/*/record.json"):
        record = json.loads(path.read_text())
        record["config"] = drop_added(record["config"])
        path.write_text(json.dumps(record))
    before = {p: p.stat().st_mtime_ns for p in older.glob("trials/*/record.json")}
    experiment = finished_run.parent / "e2e.yaml"
    assert main(["run", str(experiment), "storage.name=e2e-older", "--resume"]) == 0
    assert "0 to run" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in older.glob("trials/*/record.json")}
