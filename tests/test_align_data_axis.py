"""The alignment corpus as a grid axis (the paper's XSGD vs non-conversational table): one alignment
stage per (prompt shape, corpus), each APT trial starting from its own corpus's stage and grouped
apart; Tatoeba as a named non-conversational corpus; `align.max_pairs` giving corpora one size."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.config import grid_points, load_config
from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT
from xsweep.record import DevPoint, TrialRecord
from xsweep.report.paper import methods_table
from xsweep.selection import summarise
from xsweep.report.tables import column_title
from xsweep.sweep.prepare import PreparedInputs, demo_data_dir, resolve_backbone
from xsweep.sweep.runner import plan_trials
from xsweep.sweep.stages import plan_align_stages
from xsweep.train.align import run_alignment
from xsweep.train.align_data import load_documents

# PT once, APT once per corpus: the demo XSGD dialogues (conversational) and Tatoeba (not), both cut
# to 48 pairs in German and Spanish.
CORPORA = """\
name: corpora
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
align: {{data: demo, targets: [de-DE, es-ES], max_pairs: 48, epochs: 1, batch_size: 16, max_seq_len: 32}}
optim: {{epochs: 2, batch_size: 32, patience: 2}}
sweep:
  grid:
    variant:
      - {{method: pt}}
      - {{method: apt, align.data: demo}}
      - {{method: apt, align.data: tatoeba}}
    optim.lr: [1.0e-2, 1.0e-3]
  seeds: [0, 1]
storage: {{root: {root}}}
"""


@pytest.fixture
def tatoeba_root(monkeypatch, shared_data) -> Path:
    """The shared data as xsweep's data root: `tatoeba` is found in it, as after `xsweep data download`."""
    monkeypatch.setenv("XSWEEP_DATA", str(shared_data))
    return shared_data


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def planned(cfg, tmp_path: Path):
    stages = plan_align_stages(cfg, str(tmp_path / "backbone"), demo_dir=demo_data_dir())
    inputs = PreparedInputs(data_dir=tmp_path, eval_locales=["en-US"], backbone_path=str(tmp_path / "backbone"),
                            data_files=[])
    return stages, plan_trials(cfg, tmp_path / cfg.run_name, inputs, stages)


@pytest.mark.timeout(60)
def test_each_corpus_has_its_stage_and_each_apt_trial_starts_from_its_own(tmp_path, tatoeba_root):
    cfg = load_config(write(tmp_path, CORPORA.format(root=tmp_path)))
    stages, specs = planned(cfg, tmp_path)
    assert [st.describe() for st in stages] == ["layer prompt x 4 on demo", "layer prompt x 4 on tatoeba"]
    assert [st.spec.sources[0].kind for st in stages] == ["xsgd", "tatoeba"]
    assert [st.trials for st in stages] == [4, 4]  # 2 learning rates x 2 seeds each
    assert stages[0].output_dir != stages[1].output_dir

    stage_of = {"demo": stages[0].output_dir, "tatoeba": stages[1].output_dir}
    points = [point for point in grid_points(cfg) for _ in cfg.sweep.seeds]  # plan_trials' order
    keys: dict[str, set[str]] = {"pt": set(), "demo": set(), "tatoeba": set()}
    for point, spec in zip(points, specs, strict=True):
        init_from = spec.config["prompt"]["init_from"]
        if point["method"] == "apt":
            assert init_from == str(stage_of[point["align.data"]])
            keys[point["align.data"]].add(spec.group_key)
        else:
            assert init_from is None
            keys["pt"].add(spec.group_key)
    # One group per corpus (their rows in the report), and PT once, not once per corpus.
    assert all(len(k) == 1 for k in keys.values()) and len(set.union(*keys.values())) == 3
    assert len(specs) == 12 and len({(s.group_key, s.config["optim"]["lr"], s.config["seed"]) for s in specs}) == 12


@pytest.mark.timeout(60)
def test_dry_run_lists_the_stages_per_corpus(tmp_path, tatoeba_root, capsys):
    config = write(tmp_path, CORPORA.format(root=tmp_path))
    assert main(["run", str(config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 trials; 2 stage(s)" in out
    assert "stage 1: 2 alignment run(s) on demo, tatoeba (1 epochs, batch 16, lr 0.001, at most 48 pairs" in out
    assert "layer prompt x 4 on demo: 4 APT trials" in out and "layer prompt x 4 on tatoeba: 4 APT trials" in out


@pytest.mark.timeout(60)
def test_a_tsv_corpus_on_its_own_axis_is_found_beside_the_config(tmp_path, monkeypatch):
    (tmp_path / "pairs.tsv").write_text("".join(f"I see {i} cats.\tIch sehe {i} Katzen.\n" for i in range(40)))
    text = CORPORA.format(root=tmp_path).replace("method: pt\n", "method: apt\n", 1).replace(
        """    variant:
      - {method: pt}
      - {method: apt, align.data: demo}
      - {method: apt, align.data: tatoeba}
""", """    align_data:
      - {align.data: demo}
      - {align.data: pairs.tsv, align.lang: de-DE}
""")
    config = write(tmp_path, text)
    monkeypatch.chdir(tmp_path.parent)  # relative to the config file, not to where xsweep runs
    cfg = load_config(config)
    stages, specs = planned(cfg, tmp_path)
    assert [st.describe() for st in stages] == ["layer prompt x 4 on demo", "layer prompt x 4 on pairs.tsv, lang de-DE"]
    tsv = stages[1].spec.sources[0]
    assert (tsv.kind, tsv.path, tsv.lang) == ("tsv", str(tmp_path / "pairs.tsv"), "de-DE")
    assert sum(len(d.source) for d in load_documents([tsv])) == 40  # fewer than max_pairs: all of them
    assert {s.config["prompt"]["init_from"] for s in specs} == {str(st.output_dir) for st in stages}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overrides, where, message", [
    (["sweep.grid={method: [pt, apt], align_data: [{align.data: demo}, {align.data: tatoeba}]}"],
     "sweep.grid.align_data", "differ only in align keys, which only APT trials use: their pt trials would run twice"),
    (["align.max_pairs=1"], "align.max_pairs", "align.max_pairs must be at least 2"),
    (["align.data=tatoeba"], "align.targets", r"Tatoeba has no kn-IN"),
    (["align.retrieval=tatoeba"], "align.retrieval",
     "the prompts would be scored on the sentences they were aligned on"),
    (["sweep.search=optuna", "sweep.grid={method: [apt]}",
      "sweep.optuna.space={align.lr: {low: 1.0e-4, high: 1.0e-2}}"],
     "sweep.optuna.space", "align settings cannot be searched by Optuna"),
])
def test_bad_corpus_settings_are_named(tmp_path, overrides, where, message):
    text = CORPORA.format(root=tmp_path)
    if "targets" in where:
        text = text.replace("targets: [de-DE, es-ES]", "targets: [de-DE, kn-IN]")
    if "retrieval" in where:
        text = text.replace("method: pt\n", "method: apt\n", 1).replace("data: demo,", "data: tatoeba,", 1)
    with pytest.raises(XsweepError, match=message) as info:
        load_config(write(tmp_path, text), overrides)
    assert where in (info.value.where or "")


@pytest.mark.timeout(60)
def test_tatoeba_missing_from_the_data_root_or_scored_on_itself_is_an_error(tmp_path, monkeypatch, shared_data):
    cfg = load_config(write(tmp_path, CORPORA.format(root=tmp_path)))
    monkeypatch.setenv("XSWEEP_DATA", str(tmp_path / "empty-root"))
    with pytest.raises(XsweepError, match="align.data is tatoeba but there is no tatoeba in") as info:
        plan_align_stages(cfg, str(tmp_path / "backbone"), demo_dir=demo_data_dir())
    assert "xsweep data download tatoeba" in info.value.fix and info.value.where == "align.data"

    # Named the other way (a folder for both), aligning on Tatoeba and scoring on it is still caught,
    # when the stages are planned: before any of them runs.
    text = CORPORA.format(root=tmp_path).replace("data: demo,", f"data: {shared_data / 'tatoeba'},", 1)
    cfg = load_config(write(tmp_path, text), [f"align.retrieval={shared_data / 'tatoeba' / 'v1'}",
                                              "sweep.grid={method: [apt]}"])
    with pytest.raises(XsweepError, match="would be aligned on the Tatoeba sentences its retrieval scores"):
        plan_align_stages(cfg, str(tmp_path / "backbone"), demo_dir=demo_data_dir())


@pytest.mark.timeout(60)
def test_max_pairs_gives_both_corpora_one_size_whatever_the_seed(tmp_path, tatoeba_root):
    cfg = load_config(write(tmp_path, CORPORA.format(root=tmp_path)))
    stages, _ = planned(cfg, tmp_path)
    for stage in stages:
        docs = load_documents(stage.spec.sources)
        assert sum(len(d.source) for d in docs) == 48
        assert {d.lang for d in docs} <= {"de", "es", "deu", "spa"}
    dialogues = load_documents(stages[0].spec.sources)
    assert any(len(d.source) > 1 for d in dialogues)  # whole dialogues are kept (1-4 turn spans drawn from them)

    reseeded, _ = planned(load_config(write(tmp_path, CORPORA.format(root=tmp_path)), ["align.seed=1"]), tmp_path)
    assert load_documents(reseeded[0].spec.sources) == dialogues  # another seed, the same sample
    assert reseeded[0].output_dir != stages[0].output_dir  # but another run

    # Without a bound a stage keeps the digest (the folder) it had before align.max_pairs existed.
    whole, _ = planned(load_config(write(tmp_path, CORPORA.format(root=tmp_path)), ["align.max_pairs=null"]), tmp_path)
    spec = whole[1].spec
    before = {"backbone": spec.backbone_path, "config": spec.hyperparameters(),
              "sources": [{k: v for k, v in asdict(s).items() if k != "max_pairs"} for s in spec.sources]}
    assert spec.digest() == hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:12]
    assert sum(len(d.source) for d in load_documents(spec.sources)) > 48


@pytest.mark.timeout(120)
def test_the_report_names_each_apt_row_by_its_corpus(tmp_path, tatoeba_root):
    cfg = load_config(write(tmp_path, CORPORA.format(root=tmp_path)))
    backbone = resolve_backbone(cfg, tmp_path, log=lambda _: None)
    stages = plan_align_stages(cfg, backbone, demo_dir=demo_data_dir())
    for stage in stages:  # both stages, trained here without Ray on the tiny model
        run_alignment(stage.spec, log=lambda _: None)
    summary = json.loads((stages[1].output_dir / "align.json").read_text())
    assert summary["data"]["documents"] == 48 and summary["data"]["languages"] == ["deu", "spa"]

    inputs = PreparedInputs(data_dir=tmp_path, eval_locales=["en-US"], backbone_path=backbone, data_files=[])
    records = []
    for number, spec in enumerate(plan_trials(cfg, tmp_path / "corpora", inputs, stages)):
        record = TrialRecord(trial_id=spec.trial_id, group_key=spec.group_key, group_name=spec.group_name,
                             lr=spec.config["optim"]["lr"], seed=spec.config["seed"], status="completed",
                             config=spec.config, aligned_on=spec.aligned_on)  # as the loop writes it
        record.add_dev(DevPoint(step=1, epoch=1, score=0.5, train_loss=1.0))
        record.test_scores = {"en-US": 0.5 + number / 100, "de-DE": 0.3}
        records.append(record)
    # Each APT trial's record says which corpus its prompt was aligned on; PT trials name none.
    assert {(r.config["method"], r.aligned_on) for r in records} == {("apt", "tatoeba"), ("apt", "xsgd"), ("pt", None)}
    summaries = summarise(records)
    rows = [row.label for section in methods_table(summaries).sections for row in section.rows]
    assert rows == ["PT", "APT on tatoeba", "APT on xsgd"]
    assert sorted(column_title(s).split(" (")[-1] for s in summaries if s.config["method"] == "apt") == [
        "aligned on tatoeba)", "aligned on xsgd)"]


@pytest.mark.timeout(60)
def test_the_papers_alignment_data_table_validates_and_dry_runs(capsys):
    paper = REPO_ROOT / "experiments" / "alignment_data.yaml"
    assert main(["validate", str(paper)]) == 0
    assert main(["run", str(paper), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # (PT, APT on XSGD, APT on Tatoeba) x 3 shot counts x 7 lrs x 5 seeds; a stage per corpus, one size.
    assert "63 grid points x 5 seeds = 315 trials; 2 stage(s)" in out
    assert "2 alignment run(s) on xsgd, tatoeba" in out and "at most 10000 pairs" in out
    assert "layer prompt x 16 on xsgd: 105 APT trials" in out and "layer prompt x 16 on tatoeba: 105 APT trials" in out
    assert not (REPO_ROOT / "runs" / "alignment_data").exists()  # nothing run, nothing written
