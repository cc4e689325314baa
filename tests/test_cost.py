"""The dry run's cost projection: its arithmetic on a tiny MASSIVE-format folder, and that
`xsweep run --dry-run` prints it and runs nothing (no Ray, no run directory)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.sweep.cost import (BackboneSize, backbone_size, data_size, describe_cost, parse_throughput,
                               project)

# train: intent a 7 utterances, b 3, c 5; dev 4; test 6 (en-US) and 2 (de-DE)
TRAIN = {"a": 7, "b": 3, "c": 5}
DEV, TEST = 4, {"en-US": 6, "de-DE": 2}


def write_massive(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for locale in ("en-US", "de-DE"):
        rows, n = [], 0

        def add(partition: str, intent: str) -> None:
            nonlocal n
            rows.append({"id": str(n), "locale": locale, "partition": partition, "scenario": "s", "intent": intent,
                         "utt": "one two three four five", "annot_utt": "one two three four five"})
            n += 1

        for intent, count in TRAIN.items():
            for _ in range(count):
                add("train", intent)
        for i in range(DEV):
            add("dev", "abc"[i % 3])
        for i in range(TEST[locale]):
            add("test", "abc"[i % 3])
        (folder / f"{locale}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return folder


def write_config(tmp_path: Path, head: str = "vanilla", evaluate: str = "selected") -> Path:
    data = write_massive(tmp_path / "data")
    path = tmp_path / "exp.yaml"
    path.write_text(f"""
name: tiny_cost
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: {data}, eval_locales: all}}
prompt: {{kind: layer, length: 4}}
head: {{kind: {head}}}
optim: {{epochs: 10, batch_size: 4, eval_every_epochs: 3}}
storage: {{root: {tmp_path / 'runs'}}}
sweep:
  evaluate: {evaluate}
  grid:
    variant:
      - {{method: ft, prompt.kind: none, optim.epochs: 2, optim.eval_every_epochs: 1}}
      - {{method: pt}}
    data.shots: [2, null]
    optim.lr: [0.1, 0.01, 0.001]
  seeds: [0, 1]
""", encoding="utf-8")
    return path


def test_counts_of_a_small_grid(tmp_path):
    cfg = load_config(write_config(tmp_path))
    data = data_size(cfg)
    assert data.intents == 3 and data.dev == DEV and data.test == TEST
    assert data.train(2) == 2 + 2 + 2 and data.train(None) == 15 and data.train(4) == 4 + 3 + 4
    p = project(cfg, data, None)
    # 2 variants x 2 shot counts x 3 lrs x 2 seeds
    assert p.trials == 24 and p.trials_by_method == {"ft": 12, "pt": 12}
    per_lr_seed = (6 * 2 + 15 * 2) + (6 * 10 + 15 * 10)  # ft: 2 epochs; pt: 10 epochs
    assert p.train_examples == p.train_sequences == 3 * 2 * per_lr_seed
    steps = (2 * 2 + 4 * 2) + (2 * 10 + 4 * 10)  # ceil(6/4)=2, ceil(15/4)=4 steps an epoch
    assert p.steps == 6 * steps
    # ft: 2 evaluations (every epoch); pt: epochs 3, 6, 9 and the last (10)
    assert p.dev_evaluations == 6 * 2 * (2 + 4)
    assert p.dev_sequences == p.dev_evaluations * DEV
    # selected: every ft trial (12) tests itself; pt tests one lr's 2 seeds in each of 2 groups
    assert p.tested_trials == 12 + 2 * 2
    assert p.test_sequences == 16 * sum(TEST.values())


def test_evaluate_all_and_nli_multiply(tmp_path):
    cfg = load_config(write_config(tmp_path, head="nli", evaluate="all"))
    data = data_size(cfg)
    vanilla = project(load_config(write_config(tmp_path / "v")), data, None)
    p = project(cfg, data, None)
    assert p.tested_trials == 24
    assert p.train_examples == vanilla.train_examples
    assert p.train_sequences == 2 * p.train_examples  # a positive and a negative pair an utterance
    assert p.dev_sequences == vanilla.dev_sequences * 3  # every utterance against all 3 intents
    assert p.test_sequences == 24 * sum(TEST.values()) * 3


def test_flops_follow_the_stated_approximation(tmp_path):
    cfg = load_config(write_config(tmp_path), ["sweep.grid={optim.lr: [0.1]}", "sweep.seeds=[0]"])
    data = data_size(cfg)
    backbone = BackboneSize("toy", layers=2, hidden=8, intermediate=32, vocab=10, positions=20)
    p = project(cfg, data, backbone)
    t = data.mean_tokens
    forward = 2 * backbone.layer_params * t + 4 * 2 * 8 * t * (t + 4)  # layer prompt of 4
    assert p.train_flops == pytest.approx(15 * 10 * 2 * forward)  # pt: backward ~ the forward
    assert p.dev_flops == pytest.approx(4 * DEV * forward)
    assert p.test_flops == pytest.approx(sum(TEST.values()) * forward)


def test_known_backbones_and_massive_sizes():
    large = backbone_size("xlm-roberta-large")
    assert 5.5e8 < large.layer_params + large.embedding_params < 5.7e8  # ~560M with embeddings
    assert backbone_size("builtin:tiny").layers == 4
    assert backbone_size("someone/unknown-model") is None
    cfg = load_config(Path(__file__).parents[1] / "experiments" / "massive_intent_vanilla.yaml")
    data = data_size(cfg)
    assert data.train(None) == 11514 and data.intents == 60 and len(data.test) == 52
    assert set(data.test.values()) == {2974} and data.dev == 2033


def test_throughput_units():
    assert parse_throughput("1e14") == (1e14, "flop/s")
    assert parse_throughput("100T") == (1e14, "flop/s")
    assert parse_throughput("100TFLOP/s") == (1e14, "flop/s")
    assert parse_throughput("5k tok/s") == (5000.0, "tok/s")
    with pytest.raises(XsweepError):
        parse_throughput("fast")


def test_unknown_backbone_skips_flops(tmp_path):
    cfg = load_config(write_config(tmp_path), ["backbone.name=someone/unknown-model"])
    text = "\n".join(describe_cost(cfg, "1e12"))
    assert "FLOPs: skipped" in text and "device-hours" not in text


def test_dry_run_prints_the_projection_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import xsweep.sweep.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("--dry-run must not run the sweep")

    monkeypatch.setattr(runner, "run_sweep", refuse)
    monkeypatch.setattr(runner, "start_ray", refuse)
    assert main(["run", str(write_config(tmp_path)), "--dry-run", "--throughput", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "cost projection (upper bounds" in out
    assert "trials: 24 (ft 12, pt 12)" in out
    assert "test: 16 trials x 2 locale(s)" in out
    assert "device-hours: at most" in out and "1.00e+09 FLOP/s (--throughput)" in out
    assert not (tmp_path / "runs").exists()
    assert main(["run", str(write_config(tmp_path / "b")), "--dry-run", "--throughput", "fast"]) == 2
