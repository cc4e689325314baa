"""The paper's SGD intent task (data.dataset sgd): premises, candidates, out of scope, a whole trial.

The fixture is a small SGD folder in the official layout, written at test time from the real
shared SGD files (gzip dialogue files and the real train schema): single-service Restaurants_1
and Media_1 dialogues and multi-service Weather_1 + Hotels_1 ones, split into train/dev/test
(the shared data has no test dialogues). Trials run on the built-in `micro` backbone, which does
not learn SGD in two epochs: the whole-trial test checks what the trial computes and records.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.models.backbone import load_backbone
from xsweep.objectives.nli import entailment_probability
from xsweep.sweep.prepare import prepare_inputs, write_manifest
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream
from xsweep.train.tasks import make_task, read_examples, sample_training, task_labels
from xsweep.train.tasks.sgd import OUT_OF_SCOPE_THRESHOLD, SgdTask

pytestmark = pytest.mark.timeout(120)

# (source file, services) -> how many dialogues go to train, dev, test.
PICK = {("dialogues_002.json.gz", ("Restaurants_1",)): (7, 2, 2),
        ("dialogues_002.json.gz", ("Media_1",)): (7, 2, 1),
        ("dialogues_047.json.gz", ("Weather_1", "Hotels_1")): (3, 1, 1)}
EXPERIMENT = """\
name: {name}
method: pt
backbone: {{name: "builtin:micro"}}
data: {{dataset: sgd, path: {path}, max_seq_len: 96, intent_turns: {turns}{extra}}}
prompt: {{kind: layer, length: 4}}
head: {{kind: nli}}
optim: {{epochs: 2, batch_size: 16, patience: 10, eval_batch_size: 256}}
sweep: {{grid: {{optim.lr: [0.03]}}, seeds: [0]}}
storage: {{root: {root}}}
"""


@pytest.fixture(scope="module")
def sgd_dir(shared_data, tmp_path_factory) -> Path:
    source = shared_data / "sgd" / "train"
    root = tmp_path_factory.mktemp("sgd")
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for (name, services), counts in PICK.items():
        with gzip.open(source / name, "rt", encoding="utf-8") as f:
            chosen = [d for d in json.load(f) if tuple(d["services"]) == services]
        start = 0
        for split, count in zip(splits, counts):
            splits[split] += chosen[start:start + count]
            start += count
    for split, dialogues in splits.items():
        (root / split).mkdir()
        (root / split / "schema.json").write_bytes((source / "schema.json").read_bytes())
        with gzip.open(root / split / "dialogues_001.json.gz", "wt", encoding="utf-8") as f:
            json.dump(dialogues, f)
    return root


def experiment(tmp_path: Path, path: Path | str, *, name: str = "sgd", turns: str = "active_intent",
               extra: str = "") -> Path:
    file = tmp_path / f"{name}.yaml"
    file.write_text(EXPERIMENT.format(name=name, path=path, turns=turns, extra=extra, root=tmp_path / "runs"))
    return file


def dialogues(folder: Path) -> list[dict]:
    with gzip.open(folder / "dialogues_001.json.gz", "rt", encoding="utf-8") as f:
        return json.load(f)


def test_premise_is_previous_system_turn_plus_user_turn_and_candidates_the_services_intents(sgd_dir, tmp_path):
    cfg = load_config(experiment(tmp_path, sgd_dir))
    examples = read_examples(cfg, sgd_dir, "en-US", "train")
    schema = {s["service_name"]: s for s in json.loads((sgd_dir / "train" / "schema.json").read_text())}
    expected = []
    for d in dialogues(sgd_dir / "train"):
        previous = ""
        for t, turn in enumerate(d["turns"]):
            if turn["speaker"] == "SYSTEM":
                previous = turn["utterance"]
                continue
            for frame in turn["frames"]:
                intent = frame["state"]["active_intent"]
                expected.append((d["dialogue_id"], t, frame["service"], f"{previous} {turn['utterance']}".strip(),
                                 None if intent == "NONE" else intent))
    assert [(e.dialogue_id, e.turn_index, e.service, e.premise, e.intent) for e in examples] == expected
    first = examples[0]
    assert first.turn_index == 0 and first.premise == first.user_utterance  # no system turn before it
    assert any(e.system_utterance and e.premise.startswith(e.system_utterance + " ") for e in examples)
    for e in examples:
        intents = schema[e.service]["intents"]
        assert list(e.candidates) == [i["name"] for i in intents]
        assert list(e.descriptions) == [i["description"] for i in intents]
    # Multi-service dialogues: a Weather_1 frame is scored against GetWeather only, a Hotels_1 frame
    # against the hotel intents only.
    assert {e.candidates for e in examples if e.service == "Weather_1"} == {("GetWeather",)}
    assert {e.candidates for e in examples if e.service == "Hotels_1"} == {("ReserveHotel", "SearchHotel")}


def test_intent_turns_choice_is_read_from_the_config(sgd_dir, tmp_path):
    state = read_examples(load_config(experiment(tmp_path, sgd_dir)), sgd_dir, "en-US", "train")
    acts = read_examples(load_config(experiment(tmp_path, sgd_dir, turns="intent_acts")), sgd_dir, "en-US", "train")
    assert [(e.dialogue_id, e.turn_index, e.service) for e in state] == \
        [(e.dialogue_id, e.turn_index, e.service) for e in acts]
    raw = {(d["dialogue_id"], t, f["service"]): {a["act"] for a in f["actions"]}
           for d in dialogues(sgd_dir / "train") for t, turn in enumerate(d["turns"]) for f in turn["frames"]}
    for s, a in zip(state, acts):
        informs = bool(raw[(s.dialogue_id, s.turn_index, s.service)] & {"INFORM_INTENT", "AFFIRM_INTENT"})
        assert a.intent == (s.intent if informs else None)
    assert 0 < sum(a.intent is not None for a in acts) < sum(s.intent is not None for s in state)


def test_training_sample_is_dialogues_per_service(sgd_dir, tmp_path):
    cfg = load_config(experiment(tmp_path, sgd_dir))
    train = read_examples(cfg, sgd_dir, "en-US", "train")
    rows = sample_training(cfg, train, tmp_path / "sample.json")
    saved = json.loads((tmp_path / "sample.json").read_text())
    assert {s: len(ids) for s, ids in saved["by_service"].items()} == \
        {"Restaurants_1": 5, "Media_1": 5, "Weather_1": 3, "Hotels_1": 3}
    assert saved["short_services"] == {"Weather_1": 3, "Hotels_1": 3}  # fewer than 5: used whole, listed
    assert {e.dialogue_id for e in rows} == set(saved["ids"]) and len(saved["ids"]) == 13
    assert rows == [e for e in train if e.dialogue_id in set(saved["ids"])]
    other = sample_training(load_config(experiment(tmp_path, sgd_dir, extra=", sample_seed: 1")), train,
                            tmp_path / "other.json")
    assert {e.dialogue_id for e in other} != {e.dialogue_id for e in rows}


@pytest.fixture(scope="module")
def micro(sgd_dir, tmp_path_factory):
    """(config, tokenizer, backbone path) of an SGD trial on the built-in micro backbone."""
    tmp = tmp_path_factory.mktemp("micro")
    cfg = load_config(experiment(tmp, sgd_dir))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    _, tokenizer = load_backbone(inputs.backbone_path)
    return cfg, tokenizer, inputs


class PairScorer(torch.nn.Module):
    """A stand-in model: the entailment logit is a fixed function of the pair's token ids."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        score = ((input_ids * attention_mask).sum(-1) % 11).float() / 2 - 2.5
        return torch.stack([torch.zeros_like(score), score], dim=-1)


def test_entailment_table_scores_each_frame_against_its_own_candidates(micro, sgd_dir):
    cfg, tokenizer, _ = micro
    examples = read_examples(cfg, sgd_dir, "en-US", "test")
    task = make_task(cfg, task_labels(cfg, examples), tokenizer)
    assert isinstance(task, SgdTask) and task.threshold == OUT_OF_SCOPE_THRESHOLD
    split = task.encode(examples)
    probs, mask = task.entailment(PairScorer(), split, 7, torch.device("cpu"))
    assert mask.sum(1).tolist() == [len(e.candidates) for e in examples]
    assert mask.shape[1] == 2 and not mask.all()  # Weather_1 frames have one candidate, the rest two
    scorer = PairScorer()
    for i in (0, len(examples) // 2, len(examples) - 1):
        e = examples[i]
        for j, description in enumerate(e.descriptions):
            ids = tokenizer(e.premise, description, truncation="only_first", max_length=96)["input_ids"]
            direct = entailment_probability(scorer(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)))
            assert probs[i, j].item() == pytest.approx(direct.item(), abs=1e-6)


def test_out_of_scope_when_no_candidate_passes_the_threshold(micro, sgd_dir, monkeypatch):
    cfg, tokenizer, _ = micro
    examples = read_examples(cfg, sgd_dir, "en-US", "test")
    weather = [e for e in examples if e.service == "Weather_1"]
    restaurants = [e for e in examples if e.service == "Restaurants_1"]
    chosen = [restaurants[0], restaurants[1], weather[0], restaurants[2], weather[1]]
    chosen = [replace(e, intent=intent) for e, intent in
              zip(chosen, [None, chosen[1].candidates[1], None, chosen[3].candidates[0], "GetWeather"])]
    task = make_task(cfg, task_labels(cfg, examples), tokenizer)
    split = task.encode(chosen)
    table = torch.tensor([[0.40, 0.30],   # nothing passes 0.5: out of scope (gold: out of scope) -> right
                          [0.60, 0.70],   # candidate 1 (gold 1) -> right
                          [0.50, 0.90],   # 0.5 does not pass; 0.9 is no candidate of Weather_1 -> out of scope
                          [0.55, 0.20],   # candidate 0 (gold 0) -> right
                          [0.45, 0.00]])  # gold GetWeather, nothing passes -> wrong
    mask = torch.tensor([[True, True], [True, True], [True, False], [True, True], [True, False]])
    monkeypatch.setattr(task, "entailment", lambda *args: (table, mask))
    result = task.evaluate(None, split, 8, torch.device("cpu"))
    assert [r["predicted"] for r in result.rows] == [None, chosen[1].candidates[1], None, chosen[3].candidates[0], None]
    assert [r["gold"] for r in result.rows] == [e.intent for e in chosen]
    assert result.score == 4 / 5
    assert [r["entailment"] for r in result.rows] == [0.4, 0.7, 0.5, 0.55, 0.45]


def test_training_batches_positives_negatives_and_out_of_scope_negatives(micro, sgd_dir):
    cfg, tokenizer, _ = micro
    train = read_examples(cfg, sgd_dir, "en-US", "train")
    # Three services: two with two intents, Weather_1 with one (its negatives come from elsewhere).
    examples = [e for service in ("Restaurants_1", "Media_1", "Weather_1")
                for e in [e for e in train if e.service == service][:14]]
    assert any(e.intent is None for e in examples) and any(e.intent for e in examples)
    assert len({e.premise for e in examples}) == len(examples)  # so a pair names its frame
    task = make_task(cfg, task_labels(cfg, examples), tokenizer)
    split = task.encode(examples)
    frame_of = {e.premise: e for e in examples}
    pair_of = {tuple(tokenizer(premise, hypothesis, truncation="only_first", max_length=96)["input_ids"]):
               (premise, hypothesis) for premise in frame_of for hypothesis in split.hypotheses}
    order = torch.Generator().manual_seed(0)
    batches = list(task.train_batches(split, 16, order, torch.device("cpu")))
    positives, negatives, out_of_scope = [], [], []
    for batch in batches:
        pairs = [pair_of[tuple(ids[m.bool()].tolist())] for ids, m in zip(batch.input_ids, batch.attention_mask)]
        labels = batch.labels.tolist()
        count = labels.count(1)
        assert labels == [1] * count + [0] * (len(labels) - count)  # positives first
        for (premise, hypothesis), label in zip(pairs, labels):
            frame = frame_of[premise]
            gold = None if frame.intent is None else frame.descriptions[frame.candidates.index(frame.intent)]
            if label == 1:
                assert hypothesis == gold
                positives.append(premise)
            elif gold is None:
                assert hypothesis in frame.descriptions  # an out-of-scope frame against its own service
                out_of_scope.append(premise)
            else:
                assert hypothesis != gold
                # Another intent of the frame's own service where it has one (never the gold one).
                assert (hypothesis in frame.descriptions) == (len(frame.candidates) > 1)
                negatives.append(premise)
    assert sorted(positives) == sorted(negatives) == sorted(e.premise for e in examples if e.intent)
    assert sorted(out_of_scope) == sorted(e.premise for e in examples if e.intent is None)
    assert {frame_of[p].service for p in positives} == {"Restaurants_1", "Media_1", "Weather_1"}


def test_whole_sgd_trial_records_english_test_accuracy(sgd_dir, tmp_path):
    cfg = load_config(experiment(tmp_path, sgd_dir, name="whole"))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    assert inputs.eval_locales == ["en-US"]  # SGD itself: English only
    assert {"train/schema.json", "test/dialogues_001.json.gz"} <= {
        p.relative_to(sgd_dir).as_posix() for p in inputs.data_files}
    run_dir = tmp_path / "runs" / "whole"
    [spec] = plan_trials(cfg, run_dir, inputs)
    spec.eval_locales = list(inputs.eval_locales)  # the trial tests itself (no evaluation stage here)
    write_manifest(run_dir, cfg, inputs)
    record = run_downstream(spec)
    assert record.status == "completed" and record.metric == "accuracy"
    trial = Path(spec.trial_dir)
    labels = json.loads((trial / "labels.json").read_text())
    assert labels["task"] == "sgd" and labels["threshold"] == 0.5
    assert set(labels["services"]) == {"Restaurants_1", "Media_1", "Weather_1", "Hotels_1"}
    assert json.loads((trial / "few_shot_sample.json").read_text())["per_service"] == 5
    rows = [json.loads(line) for line in (trial / "predictions" / "en-US.jsonl").read_text().splitlines()]
    test = read_examples(cfg, sgd_dir, "en-US", "test")
    assert [r["gold"] for r in rows] == [e.intent for e in test]
    assert all(r["predicted"] is None or r["predicted"] in e.candidates for r, e in zip(rows, test))
    assert record.test_scores == {"en-US": sum(r["gold"] == r["predicted"] for r in rows) / len(rows)}
    assert record.dev_history and 0 <= record.best_dev <= 1

    from xsweep.predict import predict

    [prediction] = predict(trial, [test[0].user_utterance])
    names = {f"{s}/{i}" for s, intents in labels["services"].items() for i in intents}
    assert prediction.intent is None or prediction.intent in names
    assert (prediction.intent is None) == (prediction.probability <= 0.5)


def test_saved_sgd_trial_is_evaluated_later_as_in_the_trial(sgd_dir, tmp_path):
    """The sweep's evaluation stage (sweep.evaluate: selected) tests PT trials from their saved
    checkpoint with evaluate_saved_trial: for SGD it must give the trial's own test score."""
    from xsweep.train.evaluate import evaluate_saved_trial

    cfg = load_config(experiment(tmp_path, sgd_dir, name="later"))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    [spec] = plan_trials(cfg, tmp_path / "runs" / "later", inputs)
    spec.eval_locales = ["en-US"]
    record = run_downstream(spec)
    first = (Path(spec.trial_dir) / "predictions" / "en-US.jsonl").read_text()
    assert evaluate_saved_trial(spec, ["en-US"], update_record=False) == record.test_scores
    assert (Path(spec.trial_dir) / "predictions" / "en-US.jsonl").read_text() == first


def test_sgd_inputs_are_checked_before_any_trial(sgd_dir, tmp_path):
    with pytest.raises(XsweepError, match="de-DE"):
        prepare_inputs(load_config(experiment(tmp_path, sgd_dir, extra=", eval_locales: [de-DE]")), log=lambda _: None)
    broken = tmp_path / "broken"
    for split in ("train", "dev", "test"):
        (broken / split).mkdir(parents=True)
        (broken / split / "schema.json").write_bytes((sgd_dir / split / "schema.json").read_bytes())
        if split != "test":
            file = "dialogues_001.json.gz"
            (broken / split / file).write_bytes((sgd_dir / split / file).read_bytes())
    with pytest.raises(XsweepError, match="dialogues_NNN"):
        prepare_inputs(load_config(experiment(tmp_path, broken)), log=lambda _: None)
    bad = dialogues(sgd_dir / "dev")
    bad[0]["turns"][0]["frames"][0]["service"] = "Teleport_1"
    with gzip.open(broken / "test" / "dialogues_001.json.gz", "wt", encoding="utf-8") as f:
        json.dump(bad, f)
    with pytest.raises(XsweepError, match="Teleport_1"):
        prepare_inputs(load_config(experiment(tmp_path, broken)), log=lambda _: None)


@pytest.mark.parametrize("data, problem", [
    ("{dataset: sgd, path: demo}\nhead: {kind: vanilla}", "head.kind"),
    ("{dataset: sgd, path: demo, shots: 5}\nhead: {kind: nli}", "dialogues_per_service"),
    ("{dataset: sgd, path: massive}\nhead: {kind: nli}", "names MASSIVE"),
    ("{dataset: massive, path: sgd}", "data.dataset"),
    ("{dataset: sgd, path: demo, dialogues_per_service: 0}\nhead: {kind: nli}", "at least 1"),
    ("{dataset: sgd, path: demo, intent_turns: every}\nhead: {kind: nli}", "intent_turns"),
])
def test_bad_sgd_configs_name_their_problem(tmp_path, data, problem):
    file = tmp_path / "bad.yaml"
    file.write_text(f"name: bad\ndata: {data}\n")
    with pytest.raises(XsweepError, match=problem):
        load_config(file)


def test_demo_sgd_reports_the_xsgd_languages(tmp_path):
    cfg = load_config(experiment(tmp_path, "demo"))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    assert inputs.eval_locales[0] == "en-US" and len(inputs.eval_locales) > 1
    [de] = [loc for loc in inputs.eval_locales if loc.startswith("de")]
    english = read_examples(cfg, inputs.data_dir, "en-US", "test")
    german = read_examples(cfg, inputs.data_dir, de, "test")
    assert [(e.dialogue_id, e.turn_index, e.intent) for e in german] == \
        [(e.dialogue_id, e.turn_index, e.intent) for e in english]
    assert all(g.user_utterance != e.user_utterance for g, e in zip(german, english))
