"""The bad input table: each wrong input gets one clear error (what, where, how to fix), a
non-zero exit from the real CLI, and leaves nothing behind: no run directory, no half-written file.

The sweep's own checks run in the driver before Ray starts (`xsweep.sweep.preflight`), so every
`xsweep run` case here runs with Ray and the trials replaced by a guard that fails the test if
reached: a bad input must never become a failed trial. docs/reliability.md lists every case.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.data.sgd import intent_examples
from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT
from xsweep.record import TrialRecord, write_record

pytestmark = pytest.mark.timeout(60)

INTENTS = ("alarm_set", "play_music", "weather_query")
SPLIT = {"train": 4, "dev": 2, "test": 2}  # rows per intent and partition


class TrialStarted(Exception):
    """Raised by the guard in place of Ray: reaching it means a bad input got past the checks."""


@pytest.fixture(autouse=True)
def no_trials(monkeypatch):
    import xsweep.sweep.runner as runner

    def guard(*args, **kwargs):
        raise TrialStarted("the sweep reached Ray: the input was not rejected up front")

    monkeypatch.setattr(runner, "_run_on_ray", guard)
    monkeypatch.setattr(runner, "start_ray", guard)


def massive_rows(locale: str, *, with_slot: bool = False) -> list[dict]:
    """Rows of one locale in MASSIVE's format; `with_slot` marks a date slot in every `annot_utt`."""
    rows, n = [], 0
    for partition, count in SPLIT.items():
        for intent in INTENTS:
            for i in range(count):
                words = f"{intent.replace('_', ' ')} number {i}"
                rows.append({"id": str(n), "locale": locale, "partition": partition,
                             "scenario": intent.split("_")[0], "intent": intent, "utt": words,
                             "annot_utt": f"{words} [date : today]" if with_slot else words, "worker_id": "1"})
                n += 1
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A tiny MASSIVE 1.1 folder in the official format: en-US and de-DE, 3 intents."""
    folder = tmp_path / "massive"
    for locale in ("en-US", "de-DE"):
        write_jsonl(folder / f"{locale}.jsonl", massive_rows(locale))
    return folder


@pytest.fixture
def backbone_dir(tmp_path) -> Path:
    """A backbone folder as the up-front checks see it (its config); never loaded here."""
    folder = tmp_path / "backbone"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    return folder


@pytest.fixture
def runs(tmp_path) -> Path:
    return tmp_path / "runs"


@pytest.fixture
def experiment(tmp_path, data_dir, backbone_dir, runs):
    """Write a valid experiment, changed by `extra` YAML lines (later keys replace earlier ones)."""

    def make(extra: str = "", *, data: Path | None = None, backbone: str | None = None) -> Path:
        base = {
            "name": "bad", "method": "pt",
            "backbone": {"name": backbone or str(backbone_dir)},
            "data": {"path": str(data or data_dir), "eval_locales": ["en-US", "de-DE"]},
            "prompt": {"kind": "layer", "length": 4},
            "optim": {"epochs": 1},
            "sweep": {"grid": {"optim.lr": [0.01]}, "seeds": [0]},
            "storage": {"root": str(runs)},
        }
        import yaml

        for key, value in (yaml.safe_load(extra) or {}).items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                base[key] = {**base[key], **value}
            else:
                base[key] = value
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(base, sort_keys=False))
        return path

    return make


def fails(capsys, argv: list[str], *words: str) -> str:
    """Run the CLI, expect exit 2 and one clear message containing `words`; return stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, f"exit {code}, stderr: {err}"
    assert err.startswith("xsweep: error: "), err
    assert "\n  fix: " in err, f"no fix in {err!r}"
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


def nothing_written(runs: Path) -> None:
    assert not runs.exists(), f"partial output left: {sorted(p.name for p in runs.rglob('*'))}"


def test_the_valid_baseline_reaches_the_trials(experiment, runs):
    """The cases below are wrong in one way each: the same experiment unchanged passes every check."""
    with pytest.raises(TrialStarted):
        main(["run", str(experiment())])
    assert (runs / "bad" / "config.yaml").is_file()


# --- the experiment file -----------------------------------------------------------------------


def test_malformed_yaml(tmp_path, capsys, runs):
    path = tmp_path / "exp.yaml"
    path.write_text(f"name: x\nstorage: {{root: {runs}}}\noptim:\n  lr: 0.1\n   epochs: 3\n")
    fails(capsys, ["run", str(path)], "malformed YAML", f"{path}:5")
    nothing_written(runs)


def test_unknown_key(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("optim: {learning_rate: 0.1}"))],
          "unknown key 'optim.learning_rate'", "exp.yaml:", "valid keys in optim: lr, epochs")
    nothing_written(runs)


def test_wrong_type(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("optim: {epochs: ten}"))],
          "optim.epochs must be int, got 'ten'", "exp.yaml:", "fix: set optim.epochs to int")
    nothing_written(runs)


def test_negative_learning_rate(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("sweep: {grid: {optim.lr: [0.01, -0.001]}}"))],
          "optim.lr=-0.001 is invalid", "must be positive", "sweep.grid.optim.lr")
    nothing_written(runs)


def test_prompt_length_zero(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("prompt: {length: 0}"))],
          "prompt.length must be at least 1, got 0", "(prompt.length)", "use 1, 8, 16 or 100")
    nothing_written(runs)


def test_text_prefix_with_slot_filling(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("head: {kind: slot}\nbackbone: {text_prefix: 'query: '}"))],
          "backbone.text_prefix 'query: '", "slot filling labels the utterance's words",
          "leave backbone.text_prefix empty")
    nothing_written(runs)


def test_unknown_pooling(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("backbone: {pooling: max}"))], "backbone.pooling", "cls", "mean")
    nothing_written(runs)


def test_duplicate_key(tmp_path, capsys, runs):
    path = tmp_path / "exp.yaml"
    path.write_text(f"storage: {{root: {runs}}}\noptim:\n  lr: 0.1\n  lr: 0.2\n")
    fails(capsys, ["run", str(path)], "key 'optim.lr' appears twice", f"{path}:4", "line 3")
    nothing_written(runs)


def test_empty_experiment_file(tmp_path, capsys):
    path = tmp_path / "exp.yaml"
    path.write_text("\n# nothing\n")
    fails(capsys, ["run", str(path)], "the config file is empty", str(path), "quickstart.yaml")


def test_missing_experiment_file(tmp_path, capsys):
    fails(capsys, ["run", str(tmp_path / "nope.yaml")], "does not exist", "xsweep ls")


def test_bad_override_syntax(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment()), "optim.lr:0.1"], "is not of the form key.sub=value",
          "optim.lr=1e-3")
    nothing_written(runs)


def test_override_with_unknown_key(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment()), "optim.lrr=0.1"], "unknown key 'optim.lrr'", "did you mean lr")
    nothing_written(runs)


# --- languages and data ------------------------------------------------------------------------


def test_unknown_train_locale(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("data: {train_locale: en-UK}"))],
          "unknown MASSIVE locale 'en-UK'", "nearest valid: en-US", "(data.train_locale)")
    nothing_written(runs)


def test_unknown_eval_locale(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("data: {eval_locales: [en-US, de-de]}"))],
          "unknown MASSIVE locale 'de-de'", "nearest valid: de-DE", "(data.eval_locales)")
    nothing_written(runs)


def test_missing_data_folder(experiment, tmp_path, capsys, runs):
    fails(capsys, ["run", str(experiment(data=tmp_path / "no-such-folder"))],
          "data folder", "does not exist", "data.path")
    nothing_written(runs)


def test_missing_locale_file(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment("data: {eval_locales: [en-US, fr-FR]}"))],
          "no data file for eval locale(s) fr-FR", "data.eval_locales", "locales found there: de-DE, en-US")
    nothing_written(runs)


def test_truncated_jsonl_line(experiment, data_dir, capsys, runs):
    path = data_dir / "de-DE.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1] + [lines[-1][:40]]) + "\n")  # cut mid-line, as a broken copy does
    fails(capsys, ["run", str(experiment())], "malformed JSON", f"{path}:{len(lines)}", "re-download")
    nothing_written(runs)


def test_jsonl_field_of_wrong_type(experiment, data_dir, capsys, runs):
    rows = massive_rows("en-US")
    rows[5]["intent"] = 7
    path = write_jsonl(data_dir / "en-US.jsonl", rows)
    fails(capsys, ["run", str(experiment())], "field 'intent' must be a string, got int 7", f"{path}:6")
    nothing_written(runs)


def test_empty_data_file(experiment, data_dir, capsys, runs):
    path = data_dir / "de-DE.jsonl"
    path.write_text("")
    fails(capsys, ["run", str(experiment())], "file is empty", str(path), "fix: re-download")
    nothing_written(runs)


def test_empty_test_partition(experiment, data_dir, capsys, runs):
    write_jsonl(data_dir / "de-DE.jsonl", [r for r in massive_rows("de-DE") if r["partition"] != "test"])
    fails(capsys, ["run", str(experiment())], "the test partition of de-DE is empty", str(data_dir))
    nothing_written(runs)


def test_row_of_another_locale(experiment, data_dir, capsys, runs):
    write_jsonl(data_dir / "de-DE.jsonl", massive_rows("es-ES"))
    fails(capsys, ["run", str(experiment())], "row has locale 'es-ES' in the file for de-DE", "de-DE.jsonl:1")
    nothing_written(runs)


def test_shots_larger_than_every_class(experiment, capsys, runs):
    # Each intent has 4 training rows; 5-shot would silently be an all-data run.
    fails(capsys, ["run", str(experiment("sweep: {grid: {data.shots: [2, 5]}}"))],
          "data.shots=5", "larger than every intent (largest has 4)", "in the en-US training data",
          "use shots <= 4")
    nothing_written(runs)


def test_sgd_dialogue_names_a_service_missing_from_the_schema(tmp_path):
    # SGD is read by the data layer (and alignment); the check is there, not in `xsweep run`.
    from xsweep.data.sgd import SgdService

    schema = {"Alarm_1": SgdService("Alarm_1", "alarms", {"AddAlarm": "set an alarm"}, ("time",))}
    dialogue = {"dialogue_id": "1_00001", "services": ["Banks_1"], "turns": [
        {"speaker": "USER", "utterance": "send money", "frames": [
            {"service": "Banks_1", "actions": [], "state": {"active_intent": "TransferMoney"}}]}]}
    with pytest.raises(XsweepError) as info:
        intent_examples([dialogue], schema)
    assert "service 'Banks_1' is not in the schema" in info.value.what
    assert info.value.where.endswith("dialogue 1_00001 turn 0")
    assert "services there: Alarm_1" in info.value.fix and "schema.json" in info.value.fix


# --- aligned prompts (APT) and the backbone ----------------------------------------------------


def write_aligned_prompt(folder: Path, **prompt) -> Path:
    folder.mkdir(parents=True)
    description = {"kind": "layer", "length": 16, "shift_positions": True, "reparam_hidden": None, **prompt}
    (folder / "prompt.json").write_text(json.dumps({"format": 1, "prompt": description}))
    (folder / "prompt.safetensors").write_bytes(b"")  # not read by the checks
    return folder


def test_apt_without_an_alignment_run(experiment, tmp_path, capsys, runs):
    (tmp_path / "align-run").mkdir()
    fails(capsys, ["run", str(experiment(f"method: apt\nprompt: {{init_from: {tmp_path / 'align-run'}}}"))],
          "holds no saved prompt (prompt.json, prompt.safetensors missing)", "prompt.init_from",
          "the `prompt/` folder an alignment run wrote")
    nothing_written(runs)


def test_apt_init_from_missing_folder(experiment, tmp_path, capsys, runs):
    fails(capsys, ["run", str(experiment(f"method: apt\nprompt: {{init_from: {tmp_path / 'nowhere'}}}"))],
          "no alignment run at", "the folder does not exist", "prompt.init_from")
    nothing_written(runs)


def test_apt_prompt_length_mismatch(experiment, tmp_path, capsys, runs):
    aligned = write_aligned_prompt(tmp_path / "align" / "prompt", length=16)
    fails(capsys, ["run", str(experiment(f"method: apt\nprompt: {{init_from: {aligned}, length: 4}}"))],
          "the aligned prompt has length 16 but this run asks for prompt.length 4",
          "prompt.init_from", "set prompt.length=16")
    nothing_written(runs)


def test_apt_prompt_kind_mismatch(experiment, tmp_path, capsys, runs):
    aligned = write_aligned_prompt(tmp_path / "align" / "prompt", kind="input", length=4)
    fails(capsys, ["run", str(experiment(f"method: apt\nprompt: {{init_from: {aligned}}}"))],
          "the aligned prompt has kind 'input' but this run asks for prompt.kind 'layer'")
    nothing_written(runs)


def test_unknown_backbone_folder(experiment, tmp_path, capsys, runs):
    fails(capsys, ["run", str(experiment(backbone=str(tmp_path / "models" / "xlmr")))],
          "backbone folder", "does not exist", "backbone.name")
    nothing_written(runs)


def test_backbone_folder_without_config(experiment, tmp_path, capsys, runs):
    (tmp_path / "empty-model").mkdir()
    fails(capsys, ["run", str(experiment(backbone=str(tmp_path / "empty-model")))],
          "holds no readable config.json", "backbone.name", "save_pretrained")
    nothing_written(runs)


def test_unsupported_backbone_family(experiment, tmp_path, capsys, runs):
    folder = tmp_path / "gpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    fails(capsys, ["run", str(experiment(backbone=str(folder)))], "is a 'gpt2' model", "xlm-roberta")
    nothing_written(runs)


def test_unknown_builtin_backbone(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment(backbone="builtin:huge"))],
          "unknown built-in backbone 'builtin:huge'", "builtin:tiny")
    nothing_written(runs)


# --- cluster and storage -----------------------------------------------------------------------


def test_unreachable_cluster_address_fails_fast(experiment, capsys, runs, monkeypatch, silent_host):
    """A cluster address that never answers is probed once, with a bounded connect timeout, and
    refused before Ray is asked to connect (Ray's own connect retries for a minute)."""
    import ray

    def ray_init(*args, **kwargs):
        raise TrialStarted("ray.init was called for an address the driver could not reach")

    monkeypatch.setattr(ray, "init", ray_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"{silent_host.host}:6379"
    fails(capsys, ["run", str(experiment()), "--address", address],
          f"cannot reach the Ray cluster at '{address}'", "timed out", "--address / RAY_ADDRESS",
          "ray start --head")
    assert len(silent_host.probes) == 1, silent_host.probes
    (probed, timeout), = silent_host.probes
    assert probed == (silent_host.host, 6379)
    assert timeout is not None and 0 < timeout <= 10, f"connect timeout {timeout!r} s is not a bound of seconds"
    nothing_written(runs)

    # An address that refuses at once gets the same error, with the OS's reason.
    fails(capsys, ["run", str(experiment()), "--address", "127.0.0.1:1"],
          "cannot reach the Ray cluster at '127.0.0.1:1'", "refused", "ray start --head")
    nothing_written(runs)


def test_malformed_cluster_address(experiment, capsys, runs):
    fails(capsys, ["run", str(experiment()), "--address", "127.0.0.1"], "is not of the form host:port")
    nothing_written(runs)


def test_storage_path_under_a_regular_file(experiment, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be\n")
    fails(capsys, ["run", str(experiment(f"storage: {{root: {blocker / 'runs'}}}"))],
          "cannot create the run directory", "is a file, not a folder", "storage.root", "writable folder")
    assert blocker.read_text() == "a file where a folder should be\n"


def test_second_run_into_the_same_directory(experiment, capsys, runs):
    path = experiment()
    (runs / "bad").mkdir(parents=True)
    (runs / "bad" / "config.yaml").write_text("name: bad\n")
    fails(capsys, ["run", str(path)], "already holds a run", "add --resume")
    assert (runs / "bad" / "config.yaml").read_text() == "name: bad\n"


def test_resume_with_a_different_config(experiment, capsys, runs):
    (runs / "bad").mkdir(parents=True)
    (runs / "bad" / "config.yaml").write_text("name: bad\noptim: {epochs: 99}\n")
    fails(capsys, ["run", str(experiment()), "--resume"], "the config differs", "config.yaml",
          "resume with the same config")
    assert sorted(p.name for p in (runs / "bad").iterdir()) == ["config.yaml"]


def _limited_file_size(limit_bytes: int):
    def apply() -> None:  # in the child: writes past the limit fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


def finished_record(trial_dir: Path, seed: int) -> None:
    config = {"data": {"train_locale": "en-US"}, "sweep": {"seeds": [0, 1]}}
    record = TrialRecord(trial_id=trial_dir.name, group_key="g1", group_name="massive-vanilla/pt/layer4",
                         lr=0.01, seed=seed, status="completed", best_dev=0.5, best_step=3, best_epoch=1,
                         test_scores={"en-US": 0.5 + seed / 10, "de-DE": 0.25}, config=config)
    write_record(record, trial_dir)


@pytest.mark.timeout(120)
def test_disk_full_when_writing_results(tmp_path):
    run_dir = tmp_path / "runs" / "full"
    for seed in (0, 1):
        finished_record(run_dir / "trials" / f"t000-s{seed}", seed)
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, "-m", "xsweep", "report", str(run_dir)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=110, preexec_fn=_limited_file_size(200))
    assert result.returncode == 2, result.stderr
    assert "xsweep: error: " in result.stderr and "File too large" in result.stderr
    assert str(run_dir / "results" / "results.md") in result.stderr  # the real name, not the temporary one
    assert "fix: the file-size limit was reached" in result.stderr and "Traceback" not in result.stderr
    after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert after == before, "no result file, temporary or half-written, may be left"


@pytest.mark.timeout(120)
def test_disk_full_when_creating_the_run_directory(experiment, runs):
    # The checks pass (the limit does not stop reading); writing config.yaml hits the limit.
    result = subprocess.run([sys.executable, "-m", "xsweep", "run", str(experiment())], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=110, preexec_fn=_limited_file_size(64))
    assert result.returncode == 2, result.stderr
    assert "cannot write the run directory" in result.stderr and "File too large" in result.stderr
    assert "fix: set storage.root to a writable folder with free space" in result.stderr
    nothing_written(runs / "bad")


# --- reports and TensorBoard -------------------------------------------------------------------


def test_report_on_a_folder_without_records(tmp_path, capsys):
    (tmp_path / "empty-run").mkdir()
    fails(capsys, ["report", str(tmp_path / "empty-run")], "no trial records under", "xsweep run")
    assert list((tmp_path / "empty-run").iterdir()) == []


def test_report_on_a_corrupt_record(tmp_path, capsys):
    run_dir = tmp_path / "run"
    finished_record(run_dir / "trials" / "t000-s0", 0)
    (run_dir / "trials" / "t000-s0" / "record.json").write_text('{"trial_id": "t000-s0", "lr":')
    fails(capsys, ["report", str(run_dir)], "cannot read trial record", "record.json",
          "delete the trial's folder to re-run it")
    assert not (run_dir / "results").exists()


def test_tensorboard_on_a_missing_folder(tmp_path, capsys):
    fails(capsys, ["tensorboard", str(tmp_path / "no-run")], "no TensorBoard logs", "xsweep run")


def test_demo_data_into_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    fails(capsys, ["data", "synth", "--out", str(tmp_path / "out")], "exists and is not empty", "--out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_demo_data_under_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    fails(capsys, ["data", "synth", "--out", str(blocker / "demo")], "is a file, not a folder", "--out")
    fails(capsys, ["data", "synth", "--out", str(blocker)], "is a file, not a folder", "--out")
    assert blocker.read_text() == "x" and [p.name for p in tmp_path.iterdir()] == ["a-file"]


def test_python_tag_in_yaml_is_rejected(tmp_path, capsys, runs):
    path = tmp_path / "exp.yaml"
    marker = tmp_path / "pwned"
    path.write_text(f"storage: {{root: {runs}}}\nname: !!python/object/apply:os.system ['touch {marker}']\n")
    fails(capsys, ["run", str(path)], "YAML tag not allowed", f"{path}:2", "remove the `!!` tag")
    assert not marker.exists()
    nothing_written(runs)
