"""`xsweep predict` runs every head through its trial's own task: vanilla, NLI and slot trials.

Each trial is trained in-process on the built-in `micro` backbone and the demo data for one or two
epochs (learning is not the point: predict must compute what the trial's own test evaluation
computed, which the trial wrote to predictions/en-US.jsonl).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.data.massive import read_massive
from xsweep.errors import XsweepError
from xsweep.predict import Prediction, format_prediction, predict, predict_intents
from xsweep.sweep.prepare import prepare_inputs, write_manifest
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream

pytestmark = pytest.mark.timeout(300)

EXPERIMENT = """\
name: {name}
method: {method}
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 40, shots: 5, eval_locales: [en-US]}}
prompt: {prompt}
head: {{kind: {kind}}}
optim: {{epochs: {epochs}, batch_size: 16, patience: 10, eval_batch_size: 128}}
sweep: {{grid: {{optim.lr: [{lr}]}}, seeds: [0]}}
storage: {{root: {root}}}
"""
SETTINGS = {
    "vanilla": dict(method="pt", prompt="{kind: layer, length: 4}", lr=0.03, epochs=1),
    "nli": dict(method="pt", prompt="{kind: layer, length: 4}", lr=0.03, epochs=2),
    "slot": dict(method="ft", prompt="{kind: none}", lr=0.003, epochs=3),
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """kind -> (trial directory, en-US test rows, the trial's own en-US test predictions)."""
    root = tmp_path_factory.mktemp("predict")
    torch.set_num_threads(1)
    done: dict[str, tuple[Path, list, list[dict]]] = {}

    def get(kind: str):
        if kind not in done:
            path = root / f"{kind}.yaml"
            path.write_text(EXPERIMENT.format(name=kind, kind=kind, root=root / "runs", **SETTINGS[kind]))
            cfg = load_config(path)
            inputs = prepare_inputs(cfg, log=lambda _: None)
            run_dir = root / "runs" / kind
            [spec] = plan_trials(cfg, run_dir, inputs)
            # PT trials leave testing to the sweep's evaluation stage (sweep.evaluate: selected);
            # here the trial tests itself, so that its own predictions are there to compare with.
            spec.eval_locales = ["en-US"]
            write_manifest(run_dir, cfg, inputs)  # predict finds the backbone through it
            record = run_downstream(spec)
            assert record.status == "completed"
            trial_dir = Path(spec.trial_dir)
            written = [json.loads(line) for line in
                       (trial_dir / "predictions" / "en-US.jsonl").read_text(encoding="utf-8").splitlines()]
            rows = read_massive(inputs.data_dir, "en-US", ["test"])
            assert [r["id"] for r in written] == [row.id for row in rows]
            done[kind] = (trial_dir, rows, written)
        return done[kind]

    return get


def test_vanilla_predict_is_the_trials_argmax(trained):
    trial_dir, rows, written = trained("vanilla")
    got = predict(trial_dir, [row.utt for row in rows])
    assert [p.intent for p in got] == [r["predicted"] for r in written]
    assert all(0 < p.probability <= 1 and p.tags is None for p in got)
    assert predict_intents is predict


def test_nli_predict_is_the_argmax_over_all_intents(trained):
    trial_dir, rows, written = trained("nli")
    got = predict(trial_dir, [row.utt for row in rows])
    # The trial's test evaluation scored the argmax of the entailment over all intents; predict
    # (built from labels.json, task "nli") must give the same intent and the same probability.
    assert [p.intent for p in got] == [r["predicted"] for r in written]
    assert [p.probability for p in got] == pytest.approx([r["entailment"] for r in written], abs=1e-5)
    labels = json.loads((trial_dir / "labels.json").read_text())
    assert labels["task"] == "nli" and {p.intent for p in got} <= set(labels["intents"])
    assert len({p.intent for p in got}) > 1, "a constant prediction would make the check above weak"
    line = format_prediction(got[0])
    assert line.split("\t") == [got[0].intent, f"{got[0].probability:.3f}", rows[0].utt]


def test_slot_predict_gives_words_with_bio_tags(trained):
    trial_dir, rows, written = trained("slot")
    got = predict(trial_dir, [row.utt for row in rows])
    assert [p.words for p in got] == [r["words"] for r in written]
    assert [p.tags for p in got] == [r["predicted"] for r in written]
    assert all(p.intent is None and len(p.tags) == len(p.words) for p in got)
    tags = {tag for p in got for tag in p.tags}
    assert any(tag.startswith("B-") for tag in tags), "a model tagging everything O makes the check weak"
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for tag in tags)
    tagged = next(p for p in got if any(t != "O" for t in p.tags))
    assert format_prediction(tagged) == " ".join(f"{w}/{t}" for w, t in zip(tagged.words, tagged.tags))
    with pytest.raises(XsweepError, match="bracket"):
        predict(trial_dir, ["wake me up at [time : five]"])


def test_unknown_task_and_empty_input_are_errors(trained, tmp_path):
    trial_dir, _, _ = trained("vanilla")
    with pytest.raises(XsweepError, match="no utterances"):
        predict(trial_dir, [])
    labels = trial_dir / "labels.json"
    saved = labels.read_text()
    try:
        labels.write_text(json.dumps({**json.loads(saved), "task": "summarise"}))
        with pytest.raises(XsweepError):
            predict(trial_dir, ["hello"])
    finally:
        labels.write_text(saved)


def test_out_of_scope_prints_a_name():
    assert format_prediction(Prediction("hi", None, 0.2)) == "OUT_OF_SCOPE\t0.200\thi"
