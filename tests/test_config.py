"""Config loading: shipped experiments validate; every bad config names its problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xsweep.cli import EXPERIMENTS_DIR, main
from xsweep.config import grid_points, load_config, parse_override, to_dict, with_overrides
from xsweep.errors import XsweepError

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("massive13")]  # the e5 experiments' data

SHIPPED = sorted(EXPERIMENTS_DIR.glob("*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_there_are_shipped_experiments():
    assert any(p.name == "quickstart.yaml" for p in SHIPPED)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_experiment_opens_with_its_launch_command(path):
    head = path.read_text().splitlines()[:5]
    assert any(f"xsweep run experiments/{path.name}" in line for line in head)


def test_defaults_and_seed_rule(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\nseed: 3\n"))
    assert cfg.effective_sample_seed == 3
    cfg = load_config(write(tmp_path, "name: x\nseed: 3\ndata: {sample_seed: 7}\n"))
    assert cfg.effective_sample_seed == 7


def test_override_grammar_is_shared_by_cli_and_grids(tmp_path):
    path = write(tmp_path, "name: x\n")
    cfg = load_config(path, ["optim.lr=1e-3", "sweep.seeds=[0,1,2]", "prompt.kind=input"])
    assert cfg.optim.lr == pytest.approx(1e-3) and cfg.sweep.seeds == [0, 1, 2]
    assert cfg.prompt.kind == "input"
    assert with_overrides(cfg, {"optim.lr": 5e-3}).optim.lr == 5e-3
    assert parse_override("prompt.length=100") == ("prompt.length", 100)


def test_yaml_float_without_dot_is_a_float(tmp_path):
    assert load_config(write(tmp_path, "optim: {lr: 1e-3}\n")).optim.lr == pytest.approx(1e-3)


def test_grid_is_a_cross_product_in_file_order(tmp_path):
    cfg = load_config(write(tmp_path, "sweep:\n  grid:\n    optim.lr: [0.1, 0.01]\n    prompt.length: [1, 8]\n"))
    assert grid_points(cfg) == [
        {"optim.lr": 0.1, "prompt.length": 1}, {"optim.lr": 0.1, "prompt.length": 8},
        {"optim.lr": 0.01, "prompt.length": 1}, {"optim.lr": 0.01, "prompt.length": 8}]


def test_round_trip_through_plain_data(tmp_path):
    cfg = load_config(write(tmp_path, "name: x\noptim: {lr: 0.05}\n"))
    from xsweep.config import from_dict

    assert from_dict(to_dict(cfg)) == cfg


BAD = [
    # (yaml text, overrides, words the message must contain)
    ("name: x\noptim:\n  lr: 0.1\n  learning_rate: 2\n", [], ["unknown key 'optim.learning_rate'", ":4", "lr"]),
    ("name: x\nprompt:\n  lenght: 4\n", [], ["unknown key 'prompt.lenght'", ":3", "did you mean length"]),
    ("optim:\n  epochs: ten\n", [], ["optim.epochs must be int", ":2"]),
    ("optim:\n  lr: 0\n", [], ["optim.lr must be positive", ":2"]),
    ("optim:\n  lr: -1.0e-3\n", [], ["optim.lr must be positive"]),
    ("prompt:\n  length: 0\n", [], ["prompt.length must be at least 1", ":2"]),
    ("prompt:\n  kind: deep\n", [], ["prompt.kind must be 'input' | 'layer' | 'none'"]),
    ("method: lora\n", [], ["method must be 'ft' | 'pt' | 'apt'"]),
    ("head: {kind: crf}\n", [], ["head.kind must be 'vanilla' | 'nli' | 'slot'"]),
    ("data:\n  path: /nonexistent/massive\n", [], ["does not exist", "data.path"]),
    ("data:\n  path: missing-folder\n", [], ["does not exist", "data.path"]),
    ("data: {shots: 0}\n", [], ["data.shots must be at least 1"]),
    ("method: apt\n", [], ["neither align.data", "prompt.init_from"]),
    ("sweep: {search: optuna}\n", [], ["(sweep.optuna.space)", "sweep.optuna.space is empty"]),
    ("method: ft\n", [], ["takes no prompt"]),
    ("method: pt\nprompt: {kind: none}\n", [], ["prompt.kind is 'none'"]),
    ("optim: {warmup_ratio: 1.5}\n", [], ["warmup_ratio must be in [0, 1)"]),
    ("sweep:\n  seeds: []\n", [], ["sweep.seeds is empty"]),
    ("sweep:\n  seeds: [1, 1]\n", [], ["repeats a seed"]),
    ("sweep:\n  grid:\n    optim.lr: [0.1, -0.1]\n", [], ["optim.lr=-0.1 is invalid", "must be positive", ":3"]),
    ("sweep:\n  grid:\n    optim.lrr: [0.1]\n", [], ["unknown key 'optim.lrr'"]),
    ("sweep:\n  grid:\n    seed: [1, 2]\n", [], ["cannot be a grid key", "sweep.seeds"]),
    ("name: x\n  bad: indentation\n", [], ["malformed YAML", ":2"]),
    ("- a list\n- not a mapping\n", [], ["top level must be a mapping"]),
    ("optim: 3\n", [], ["optim must be a mapping"]),
    ("name: x\n", ["optim.lr=abc"], ["optim.lr must be float", "'abc'"]),
    ("name: x\n", ["optim.lr"], ["is not of the form key.sub=value"]),
    ("optim: {lr: 0.1}\n", ["optim.lr.x=1"], ["'lr' is not a section"]),
]


@pytest.mark.parametrize("text,overrides,words", BAD, ids=[w[0] for _, _, w in BAD])
def test_bad_config_names_the_problem(tmp_path, text, overrides, words):
    path = write(tmp_path, text)
    with pytest.raises(XsweepError) as info:
        load_config(path, overrides)
    message = info.value.message
    for word in words:
        word = word.replace(":2", f"{path}:2").replace(":3", f"{path}:3").replace(":4", f"{path}:4")
        assert word in message, f"{word!r} not in {message!r}"
    assert info.value.fix, "every error says how to fix it"


def test_missing_config_file(tmp_path):
    with pytest.raises(XsweepError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_validate_cli_exits_nonzero_with_message(tmp_path, capsys):
    path = write(tmp_path, "optim:\n  lr: -1\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "optim.lr must be positive" in err and "fix:" in err


def test_validate_cli_accepts_every_shipped_experiment(capsys):
    assert main(["validate", *map(str, SHIPPED)]) == 0
    assert capsys.readouterr().out.count(": ok") == len(SHIPPED)


def test_run_with_bad_config_writes_nothing(tmp_path):
    path = write(tmp_path, f"storage: {{root: {tmp_path / 'runs'}}}\nprompt: {{length: 0}}\n")
    result = subprocess.run([sys.executable, "-m", "xsweep", "run", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "prompt.length must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_ls_lists_shipped_experiments(capsys):
    assert main(["ls"]) == 0
    assert "quickstart.yaml" in capsys.readouterr().out


def test_ls_lists_an_experiment_whose_data_is_not_there_yet_and_says_why(tmp_path, monkeypatch, capsys):
    import xsweep.cli as cli

    (tmp_path / "needs_data.yaml").write_text("name: needs_data\ndata: {path: ../runs/data/massive13}\n")
    (tmp_path / "fine.yaml").write_text("name: fine\ndescription: a fine one\n")
    monkeypatch.setattr(cli, "EXPERIMENTS_DIR", tmp_path)
    monkeypatch.setattr(cli, "REPO_ROOT", tmp_path)
    assert main(["ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "fine.yaml\ta fine one"
    assert out[1].startswith("needs_data.yaml\t(cannot load yet: data folder") and "does not exist" in out[1], out
