"""`data.max_dev_examples` / `data.max_test_examples_per_locale` through the shipped loop and
report: trials score the run's stratified subset, the same ids in every locale, the run directory
keeps the ids, and the tables and plots say a subset was used."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.config import load_config, to_dict
from xsweep.data.massive import read_massive
from xsweep.data.subsets import SUBSETS_FILE, stratified_ids
from xsweep.record import ADDED_KEYS, group_of
from xsweep.report.run import report_run
from xsweep.sweep.prepare import prepare_inputs, write_manifest
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream

pytestmark = pytest.mark.timeout(120)

DEV, TEST = 23, 17

EXPERIMENT = """\
name: subsets
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]{extra}}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 2, batch_size: 16, lr: 0.03}}
sweep: {{evaluate: all}}
storage: {{root: {root}}}
"""


def experiment(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "subsets.yaml"
    path.write_text(EXPERIMENT.format(root=tmp_path / "runs", extra=extra))
    return path


@pytest.fixture(scope="module")
def trial(tmp_path_factory, one_thread):
    tmp_path = tmp_path_factory.mktemp("subsets")
    cfg = load_config(experiment(tmp_path, f", max_dev_examples: {DEV}, max_test_examples_per_locale: {TEST}"))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    run_dir = tmp_path / "runs" / "subsets"
    [spec] = plan_trials(cfg, run_dir, inputs)
    record = run_downstream(spec)
    write_manifest(run_dir, cfg, inputs)
    return {"cfg": cfg, "inputs": inputs, "run_dir": run_dir, "spec": spec, "record": record}


def test_every_locale_is_tested_on_the_same_stratified_ids(trial):
    data_dir = trial["inputs"].data_dir
    english = read_massive(data_dir, "en-US", ["test"])
    expected = stratified_ids(english, TEST)
    for locale in ("en-US", "de-DE"):
        lines = (Path(trial["spec"].trial_dir) / "predictions" / f"{locale}.jsonl").read_text().splitlines()
        assert sorted((json.loads(line)["id"] for line in lines), key=int) == expected, locale
    assert set(trial["record"].test_scores) == {"en-US", "de-DE"}


def test_dev_scores_are_over_the_dev_subset(trial):
    full_dev = len(read_massive(trial["inputs"].data_dir, "en-US", ["dev"]))
    assert full_dev > DEV
    # Accuracy over 23 utterances is k/23: a score over the whole dev set would not be, here.
    assert all(Fraction(p.score).limit_denominator(1000).denominator in (1, DEV) for p in trial["record"].dev_history)
    assert any(Fraction(p.score).limit_denominator(1000).denominator == DEV for p in trial["record"].dev_history) \
        or all(p.score in (0.0, 1.0) for p in trial["record"].dev_history)


def test_the_run_directory_keeps_the_ids(trial):
    saved = json.loads((trial["run_dir"] / SUBSETS_FILE).read_text())
    english = read_massive(trial["inputs"].data_dir, "en-US", ["test"])
    assert saved["test"] == {str(TEST): stratified_ids(english, TEST)}
    assert len(saved["dev"][str(DEV)]) == DEV
    manifest = json.loads((trial["run_dir"] / "manifest.json").read_text())
    assert manifest["eval_subsets"] == {"dev": [DEV], "test": [TEST]}


def test_tables_and_plots_say_a_subset_was_used(trial, plot_figures):
    report_run(trial["run_dir"])
    said = f"dev on a stratified subset of {DEV} utterances"
    assert said in (trial["run_dir"] / "results" / "results.md").read_text()
    assert said in (trial["run_dir"] / "results" / "tables" / "methods.md").read_text()
    assert said in plot_figures["languages.png"].axes[0].get_title()


def test_subsets_are_part_of_the_group_key_only_when_set(trial):
    assert ADDED_KEYS["data.max_dev_examples"] is None and ADDED_KEYS["data.max_test_examples_per_locale"] is None
    cut = group_of(to_dict(trial["cfg"]))
    whole = to_dict(load_config(experiment(trial["run_dir"].parent.parent, "")))
    assert group_of(whole)[0] != cut[0]
    # At their default (off) the keys leave the group key as it was before they existed.
    del whole["data"]["max_dev_examples"], whole["data"]["max_test_examples_per_locale"]
    assert group_of(whole)[0] == group_of(to_dict(load_config(experiment(trial["run_dir"].parent.parent, ""))))[0]


@pytest.mark.parametrize("extra, key, said", [
    (", max_dev_examples: 0", "data.max_dev_examples", "must be at least 1"),
    (", max_test_examples_per_locale: -5", "data.max_test_examples_per_locale", "must be at least 1"),
])
def test_a_bad_subset_size_is_named(tmp_path, capsys, extra, key, said):
    assert main(["validate", str(experiment(tmp_path, extra))]) == 2
    err = capsys.readouterr().err
    assert key in err and said in err


def test_subsets_of_a_non_massive_data_set_are_refused(tmp_path, capsys):
    path = tmp_path / "sgd.yaml"
    path.write_text("name: s\nmethod: pt\nhead: {kind: nli}\n"
                    "data: {dataset: sgd, path: demo, max_dev_examples: 10}\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "data.max_dev_examples" in err and "data.dataset: massive" in err
