"""Staged experiments: APT trials start from an alignment stage declared in the YAML, run once per
prompt shape before the trials and reused once finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from xsweep.cli import main
from xsweep.config import load_config, with_overrides
from xsweep.errors import XsweepError
from xsweep.record import read_records
from xsweep.sweep.prepare import demo_data_dir, resolve_backbone
from xsweep.sweep.runner import describe_plan
from xsweep.sweep.stages import PromptShape, plan_align_stages, run_align_stages, stage_shapes, trial_overrides

STAGED = """\
name: staged
method: apt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
align: {{data: demo, targets: [de, es], epochs: 1, batch_size: 16, max_seq_len: 48}}
optim: {{epochs: 2, batch_size: 32, patience: 2, lr: 1.0e-2}}
sweep:
  grid:
    method: [pt, apt]
    optim.lr: [1.0e-2]
  seeds: [0]
storage: {{root: {root}}}
resources: {{cpus_per_trial: 1}}
"""


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_one_stage_per_prompt_shape_and_only_for_apt_trials(tmp_path):
    cfg = load_config(write(tmp_path, STAGED.format(root=tmp_path)),
                      ["sweep.grid={method: [pt, apt], prompt.length: [1, 8], optim.lr: [0.01, 0.001]}",
                       "sweep.seeds=[0, 1, 2]"])
    shapes = stage_shapes(cfg)
    # 2 lengths need 2 alignment runs, each feeding 2 lrs x 3 seeds of APT; PT needs none.
    assert shapes == {PromptShape("layer", 1, True, None): 6, PromptShape("layer", 8, True, None): 6}
    plan = describe_plan(cfg)
    assert "16 trials" not in plan and "24 trials; 2 stage(s)" in plan
    assert "layer prompt x 1: 6 APT trials" in plan and "layer prompt x 8: 6 APT trials" in plan


def test_trials_name_the_prompt_they_start_from(tmp_path):
    cfg = load_config(write(tmp_path, STAGED.format(root=tmp_path)))
    stages = plan_align_stages(cfg, str(tmp_path / "backbone"), demo_dir=tmp_path / "demo")
    assert len(stages) == 1 and stages[0].output_dir.parent == tmp_path / "stages"
    apt = with_overrides(cfg, {"method": "apt"})
    pt = with_overrides(cfg, {"method": "pt"})
    assert trial_overrides(stages, apt) == {"align": {}, "prompt.init_from": str(stages[0].output_dir)}
    assert trial_overrides(stages, pt) == {"align": {}}  # PT trials carry no alignment settings
    # The stage's folder is named by what it trains: other alignment settings, another folder.
    other = plan_align_stages(with_overrides(cfg, {"align.lr": 5e-4}), str(tmp_path / "backbone"),
                              demo_dir=tmp_path / "demo")
    assert other[0].output_dir != stages[0].output_dir


@pytest.mark.parametrize("override, message", [
    ("align.batch_size=1", "at least 2 pairs"),
    ("align.data=missing-folder", "alignment data"),
    ("prompt.init_from=somewhere", "both say where"),
    ("align.num_workers=0", "align.num_workers must be at least 1"),
])
def test_bad_alignment_settings_are_named(tmp_path, override, message):
    with pytest.raises(XsweepError, match=message):
        load_config(write(tmp_path, STAGED.format(root=tmp_path)), [override])


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_staged_sweep_aligns_once_then_reuses_the_stage(tmp_path, ray_session, capsys):
    config = write(tmp_path, STAGED.format(root=tmp_path))
    assert main(["run", str(config)]) == 0
    out = capsys.readouterr().out
    assert "stage 1/1: alignment of the layer prompt x 4 on 1 worker(s)" in out

    [stage_dir] = (tmp_path / "stages").glob("align-layer4-*")
    summary = json.loads((stage_dir / "align.json").read_text())
    assert len(summary["epochs"]) == 1
    records = {r.config["method"]: r for r in read_records(tmp_path / "staged")}
    assert set(records) == {"pt", "apt"} and all(r.status == "completed" for r in records.values())
    assert records["apt"].config["prompt"]["init_from"] == str(stage_dir)
    assert records["pt"].config["prompt"]["init_from"] is None
    assert records["apt"].group_key != records["pt"].group_key

    # Another experiment on the same storage root (here: the same stages planned again) reuses the
    # finished stage instead of aligning again.
    mtime = (stage_dir / "align.json").stat().st_mtime_ns
    cfg = load_config(config, ["storage.name=again"])
    stages = plan_align_stages(cfg, resolve_backbone(cfg, tmp_path), demo_dir=demo_data_dir())
    assert [st.output_dir for st in stages] == [stage_dir]
    said: list[str] = []
    run_align_stages(stages, cfg, log=said.append)
    assert said == [f"stage 1/1: alignment of the layer prompt x 4: reusing the finished run in {stage_dir}"]
    assert (stage_dir / "align.json").stat().st_mtime_ns == mtime

    # Tatoeba retrieval of the aligned prompt (the stages-only table): scored once, kept beside the
    # stage; its no-prompt column is the backbone's own retrieval, computed here independently.
    from xsweep.data.tatoeba import read_tatoeba
    from xsweep.metrics import retrieval_accuracy
    from xsweep.models.backbone import load_backbone
    from xsweep.sweep.retrieval import run_retrieval

    cfg = load_config(config, ["align.retrieval=demo", "align.retrieval_languages=[deu, spa]"])
    table = run_retrieval(stages, cfg, tmp_path / "staged", demo_dir=demo_data_dir(), log=said.append)
    scores = json.loads((stage_dir / "retrieval.json").read_text())
    assert set(scores) == {"deu", "spa"} and all(0 <= s["aligned"] <= 1 for s in scores.values())
    encoder, tokenizer = load_backbone(stages[0].spec.backbone_path)
    encoder.eval()
    pairs = read_tatoeba(demo_data_dir() / "tatoeba", "deu")

    def first_states(texts):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
        with torch.no_grad():
            return encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[:, 0]

    expected = retrieval_accuracy(first_states(pairs.sentences), first_states(pairs.english))
    assert scores["deu"]["no_prompt"] == pytest.approx(expected, abs=1e-6)
    markdown = table.read_text()
    assert "| deu | " in markdown and "| AVG | " in markdown and "layer prompt x 4" in markdown
    said.clear()
    run_retrieval(stages, cfg, tmp_path / "staged", demo_dir=demo_data_dir(), log=said.append)
    assert not any(line.startswith("retrieval: ") for line in said)  # already scored: not again


    # The same as a stages-only experiment from the command line: no trials, the table printed.
    capsys.readouterr()
    assert main(["run", str(config), "storage.name=stagesonly", "method=apt", "sweep.downstream=false",
                 "sweep.grid={optim.lr: [1.0e-2]}", "align.retrieval=demo", "align.retrieval_languages=[deu, spa]"]) == 0
    out = capsys.readouterr().out
    assert "reusing the finished run" in out and "Tatoeba retrieval accuracy" in out
    assert not (tmp_path / "stagesonly" / "trials").exists()


def test_unreadable_alignment_data_fails_before_ray_and_leaves_nothing(tmp_path, capsys):
    config = write(tmp_path, STAGED.format(root=tmp_path))
    assert main(["run", str(config), "align.targets=[fr]"]) == 2  # the demo dialogues have no French
    err = capsys.readouterr().err
    assert "align.data" in err and "the alignment data cannot be read" in err and "utterance_fr" in err
    assert not (tmp_path / "staged").exists() and not (tmp_path / "stages").exists()


def test_dry_run_of_the_massive_nli_table_prints_its_trials_and_stages(capsys):
    from xsweep.paths import REPO_ROOT

    assert main(["run", str(REPO_ROOT / "experiments" / "massive_intent_nli.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # 3 methods x 3 shot counts x 7 learning rates x 5 seeds; APT's alignment stage runs first.
    assert "63 grid points x 5 seeds = 315 trials; 2 stage(s)" in out
    assert "stage 1: 1 alignment run(s) on xsgd" in out and "layer prompt x 16: 105 APT trials" in out
    assert not (REPO_ROOT / "runs" / "massive_intent_nli").exists()  # nothing run, nothing written
