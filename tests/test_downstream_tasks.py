"""The downstream trainer runs every head: NLI-based intent classification and slot filling, as well
as the vanilla classifier, through one loop (train/downstream.py) and one protocol (train/tasks/protocol.py).

Trials run in-process on the built-in `micro` backbone and the demo data (MASSIVE format, with
`annot_utt` slots). `micro` is for plumbing: it does not learn NLI from 70 utterances, so the NLI
tests check what the trial computes (pairs, argmax over all intents, resume, re-evaluation), and
slot learning is checked with FT, where it does learn.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from xsweep.config import from_dict, load_config
from xsweep.data.massive import OTHER, MassiveExample, parse_annot_utt, read_massive, slot_labels
from xsweep.errors import XsweepError
from xsweep.metrics import slot_f1, to_bio
from xsweep.models.backbone import load_backbone
from xsweep.models.prompted import build_nli_model, load_trainable
from xsweep.objectives.nli import entailment_probability, intent_hypothesis
from xsweep.objectives.slots import IGNORE
from xsweep.record import read_record
from xsweep.report.tensorboard import read_scalars
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream
from xsweep.train.spec import TrialSpec
from xsweep.train.evaluate import evaluate_saved_trial
from xsweep.train.tasks import make_task, model_options, task_labels

LOCALES = ["en-US", "de-DE"]
EXPERIMENT = """\
name: {name}
method: {method}
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 40, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {prompt}
head: {{kind: {kind}}}
optim: {{epochs: {epochs}, batch_size: 16, patience: 10, eval_batch_size: 128}}
sweep: {{grid: {{optim.lr: [{lr}]}}, seeds: [0], evaluate: all}}  # every trial tests itself
storage: {{root: {root}}}
"""
# NLI: PT with a layer prompt (the paper's setting). Slots: FT, with which `micro` learns slots
# within a few epochs (en-US test F1 about 0.3 after 6 epochs), so "it learns" can be asserted.
SETTINGS = {
    "nli": dict(method="pt", prompt="{kind: layer, length: 4}", lr=0.03, epochs=3),
    "slot": dict(method="ft", prompt="{kind: none}", lr=0.003, epochs=6),
    "vanilla": dict(method="pt", prompt="{kind: layer, length: 4}", lr=0.03, epochs=2),
}


class Killed(BaseException):
    """Stands for SIGKILL inside the loop: not an Exception, so nothing in the loop handles it."""


@pytest.fixture(scope="module")
def plan(tmp_path_factory):
    """kind, name -> the TrialSpec of a one-trial experiment (data and backbone prepared once)."""
    root = tmp_path_factory.mktemp("tasks")
    torch.set_num_threads(1)  # as in a Ray worker with cpus_per_trial 1

    def make(kind: str, name: str) -> TrialSpec:
        path = root / f"{name}.yaml"
        path.write_text(EXPERIMENT.format(name=name, kind=kind, root=root / "runs", **SETTINGS[kind]))
        cfg = load_config(path)
        [spec] = plan_trials(cfg, root / "runs" / name, prepare_inputs(cfg, log=lambda _: None))
        assert spec.eval_locales == LOCALES
        return spec

    return make


@pytest.fixture(scope="module")
def finished(plan):
    """kind -> (spec, record) of an uninterrupted trial, run once per module on first use."""
    done: dict[str, tuple[TrialSpec, object]] = {}

    def get(kind: str):
        if kind not in done:
            spec = plan(kind, f"whole-{kind}")
            done[kind] = (spec, run_downstream(spec))
        return done[kind]

    return get


def predictions(spec: TrialSpec, locale: str) -> list[dict]:
    path = Path(spec.trial_dir) / "predictions" / f"{locale}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def history(record) -> list[float]:
    return [x for p in record.dev_history for x in (p.step, p.epoch, p.score, p.train_loss)]


# --- NLI ---------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_nli_training_batches_hold_one_positive_and_one_true_negative_per_utterance(plan):
    spec = plan("nli", "nli-batches")
    cfg = from_dict(spec.config)
    _, tokenizer = load_backbone(spec.backbone_path)
    rows = read_massive(Path(spec.data_dir), "en-US", ["train"])[:40]
    labels = task_labels(cfg, rows)
    intents = labels["intents"]
    task = make_task(cfg, labels, tokenizer)
    # Every (utterance, intent) pair as the tokenizer itself encodes a pair: ids -> (utt, intent).
    pair_of = {tuple(tokenizer(row.utt, hypothesis)["input_ids"]): (row.utt, intent)
               for row in rows for intent, hypothesis in zip(intents, labels["hypotheses"])}
    gold = {row.utt: row.intent for row in rows}

    order = torch.Generator().manual_seed(0)
    state = order.get_state()
    batches = list(task.train_batches(task.encode(rows), 16, order, torch.device("cpu")))
    assert [len(b.labels) for b in batches] == [32, 32, 16]  # 2 pairs per utterance, 40 utterances
    seen, negatives = [], []
    for batch in batches:
        half = len(batch.labels) // 2
        assert batch.labels.tolist() == [1] * half + [0] * half
        pairs = [pair_of[tuple(ids[mask.bool()].tolist())] for ids, mask in zip(batch.input_ids, batch.attention_mask)]
        for (utt, positive), (negative_utt, negative) in zip(pairs[:half], pairs[half:]):
            assert positive == gold[utt]  # the gold intent's hypothesis
            assert negative_utt == utt and negative != gold[utt]  # same premise, never the gold intent
            seen.append(utt)
            negatives.append(negative)
    assert sorted(seen) == sorted(row.utt for row in rows)  # every utterance once per epoch
    assert len(set(negatives)) > 1  # drawn, not one fixed intent
    # Every draw (order and negatives) comes from the generator: restoring it replays the epoch.
    order.set_state(state)
    again = list(task.train_batches(task.encode(rows), 16, order, torch.device("cpu")))
    assert all(torch.equal(a.input_ids, b.input_ids) for a, b in zip(batches, again))


@pytest.mark.timeout(300)
def test_nli_trial_predicts_the_argmax_over_all_intents(finished):
    spec, record = finished("nli")
    assert record.status == "completed" and record.metric == "accuracy"
    assert sorted(record.test_scores) == sorted(LOCALES)
    trial_dir = Path(spec.trial_dir)
    labels = json.loads((trial_dir / "labels.json").read_text())
    intents = labels["intents"]
    assert labels["task"] == "nli" and labels["hypotheses"] == [intent_hypothesis(i) for i in intents]

    # The saved model, scored by hand: each utterance with every intent's hypothesis, one forward
    # per utterance, the tokenizer's own pair encoding.
    cfg = from_dict(spec.config)
    encoder, tokenizer = load_backbone(spec.backbone_path)
    model = build_nli_model(encoder, **model_options(cfg))
    load_trainable(model, trial_dir / "best")
    model.eval()
    rows = read_massive(Path(spec.data_dir), "en-US", ["test"])
    with torch.no_grad():
        probs = torch.stack([entailment_probability(model(**{k: v for k, v in tokenizer(
            [row.utt] * len(intents), labels["hypotheses"], padding=True, truncation=True,
            max_length=cfg.data.max_seq_len, return_tensors="pt").items() if k != "token_type_ids"}))
            for row in rows])
    expected = [intents[i] for i in probs.argmax(1).tolist()]
    written = predictions(spec, "en-US")
    assert [r["id"] for r in written] == [row.id for row in rows]
    assert [r["predicted"] for r in written] == expected
    assert [r["entailment"] for r in written] == pytest.approx(probs.max(1).values.tolist(), abs=1e-5)
    assert len(set(expected)) > 1, "a constant prediction would make the check above weak"
    assert record.test_scores["en-US"] == sum(p == row.intent for p, row in zip(expected, rows)) / len(rows)
    for locale in LOCALES:
        rows_written = predictions(spec, locale)
        assert record.test_scores[locale] == sum(r["gold"] == r["predicted"] for r in rows_written) / len(rows_written)


@pytest.mark.timeout(300)
def test_nli_evaluation_runs_all_pairs_in_big_batches(finished):
    spec, _ = finished("nli")
    cfg = from_dict(spec.config)
    encoder, tokenizer = load_backbone(spec.backbone_path)
    labels = json.loads((Path(spec.trial_dir) / "labels.json").read_text())
    task = make_task(cfg, labels, tokenizer)
    model = task.build_model(encoder)
    load_trainable(model, Path(spec.trial_dir) / "best")
    rows = read_massive(Path(spec.data_dir), "de-DE", ["test"])
    sizes: list[int] = []
    model.register_forward_hook(lambda module, args, out: sizes.append(out.shape[0]))
    result = task.evaluate(model, task.encode(rows), 128, torch.device("cpu"))
    pairs = len(rows) * len(labels["intents"])
    assert sum(sizes) == pairs and len(sizes) == math.ceil(pairs / 128)  # not one forward per utterance
    assert [r["predicted"] for r in result.rows] == [r["predicted"] for r in predictions(spec, "de-DE")]


# --- slots -------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_slot_trial_learns_and_writes_word_level_bio_predictions(finished):
    spec, record = finished("slot")
    assert record.status == "completed" and record.metric == "f1"
    assert sorted(record.test_scores) == sorted(LOCALES)
    trial_dir = Path(spec.trial_dir)
    train = read_massive(Path(spec.data_dir), "en-US", ["train"])
    labels = json.loads((trial_dir / "labels.json").read_text())
    assert labels["slots"] == [OTHER] + slot_labels(train)  # from all of train, not the 5-shot sample

    for locale in LOCALES:
        rows = read_massive(Path(spec.data_dir), locale, ["test"])
        written = predictions(spec, locale)
        assert [r["id"] for r in written] == [row.id for row in rows]
        gold_words = [parse_annot_utt(row.annot_utt, locale) for row in rows]
        assert [r["words"] for r in written] == [words for words, _ in gold_words]
        assert [r["gold"] for r in written] == [to_bio(labels_) for _, labels_ in gold_words]
        assert all(len(r["predicted"]) == len(r["words"]) for r in written)
        # The recorded score is seqeval's span F1 of exactly these tags.
        from seqeval.metrics import f1_score
        assert record.test_scores[locale] == pytest.approx(
            f1_score([r["gold"] for r in written], [r["predicted"] for r in written]), abs=1e-12)

    # It learned: saying `Other` everywhere scores 0, and the trial is far above that.
    en = [labels_ for _, labels_ in (parse_annot_utt(r.annot_utt, "en-US")
                                     for r in read_massive(Path(spec.data_dir), "en-US", ["test"]))]
    assert slot_f1([[OTHER] * len(g) for g in en], en) == 0.0
    assert record.test_scores["en-US"] > 0.2
    assert record.best_dev > 0.25 and record.best_dev > record.dev_history[0].score

    # The metric's name is in the TensorBoard tags.
    tags = read_scalars(Path(spec.tensorboard_dir))["."]
    assert [v for _, v in tags["dev/en-US/f1"]] == pytest.approx([p.score for p in record.dev_history])
    assert tags["test/de-DE/f1"][-1][1] == pytest.approx(record.test_scores["de-DE"])
    assert "dev/en-US/accuracy" not in tags


@pytest.mark.timeout(120)
def test_slot_encoding_labels_first_subtokens_and_ignores_unknown_slots(plan):
    spec = plan("slot", "slot-encode")
    cfg = from_dict(spec.config)
    _, tokenizer = load_backbone(spec.backbone_path)
    task = make_task(cfg, {"slots": [OTHER, "date", "time"]}, tokenizer)
    rows = [MassiveExample("1", "en-US", "test", "alarm", "alarm_set", "wake me at seven am tomorrow",
                           "wake me at [time : seven am] [date : tomorrow]"),
            MassiveExample("2", "ja-JP", "test", "alarm", "alarm_set", "明日7時",
                           "[date : 明日] [place_name : 7時]")]
    split = task.encode(rows)
    assert split.words == [["wake", "me", "at", "seven", "am", "tomorrow"], ["明", "日", "7", "時"]]
    for i, expected in enumerate([[0, 0, 0, 2, 2, 1], [1, 1, IGNORE, IGNORE]]):  # place_name: not in the map
        firsts = [label for label, word, prev in zip(split.token_labels[i], split.word_ids[i],
                                                     [None] + split.word_ids[i][:-1])
                  if word is not None and word != prev]
        assert firsts == expected
        assert all(label == IGNORE for label, word, prev in zip(split.token_labels[i], split.word_ids[i],
                                                              [None] + split.word_ids[i][:-1])
                   if word is None or word == prev)


@pytest.mark.timeout(60)
def test_slot_filling_without_annot_utt_is_a_clear_error():
    cfg = from_dict({"head": {"kind": "slot"}})
    rows = [MassiveExample("1", "en-US", "train", "alarm", "alarm_set", "wake me up", None)]
    with pytest.raises(XsweepError, match="no annot_utt"):
        task_labels(cfg, rows)


# --- one loop for every task: resume and later evaluation -----------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["nli", "slot"])
def test_a_killed_trial_resumes_as_if_never_stopped(plan, finished, kind):
    _, whole = finished(kind)
    spec = plan(kind, f"killed-{kind}")

    def kill_after_epoch_2(metrics: dict) -> None:
        if metrics.get("epoch") == 2 and "dev" in metrics:
            raise Killed()

    with pytest.raises(Killed):
        run_downstream(spec, report=kill_after_epoch_2)
    cut = read_record(Path(spec.trial_dir) / "record.json")
    assert cut.status == "running" and len(cut.dev_history) == 2
    resumed = run_downstream(spec)
    assert resumed.status == "completed" and resumed.resumed_at == [cut.dev_history[-1].step]
    # Scores and losses depend on every draw (order, NLI negatives, dropout): all restored.
    assert history(resumed) == history(whole)
    assert resumed.test_scores == whole.test_scores
    assert not (Path(spec.trial_dir) / CHECKPOINT_FILE).exists()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["nli", "slot"])
def test_evaluating_the_saved_best_checkpoint_reproduces_the_trial(finished, kind):
    spec, record = finished(kind)
    before = {loc: (Path(spec.trial_dir) / "predictions" / f"{loc}.jsonl").read_bytes() for loc in LOCALES}
    scores = evaluate_saved_trial(spec, LOCALES, update_record=False)
    assert scores == record.test_scores  # exactly: the same code on the same tensors
    after = {loc: (Path(spec.trial_dir) / "predictions" / f"{loc}.jsonl").read_bytes() for loc in LOCALES}
    assert after == before


@pytest.mark.timeout(300)
def test_a_trial_without_test_locales_is_evaluated_later(plan):
    spec = plan("vanilla", "dev-only")
    spec = TrialSpec(**{**spec.__dict__, "eval_locales": []})
    record = run_downstream(spec)
    trial_dir = Path(spec.trial_dir)
    assert record.status == "completed" and record.dev_history and record.test_scores == {}
    assert not (trial_dir / "predictions").exists()
    assert "test/en-US/accuracy" not in read_scalars(Path(spec.tensorboard_dir))["."]

    scores = evaluate_saved_trial(spec, LOCALES)
    assert sorted(scores) == sorted(LOCALES)
    saved = read_record(trial_dir / "record.json")
    assert saved.test_scores == scores and saved.best_dev == record.best_dev
    for locale in LOCALES:
        rows = predictions(spec, locale)
        assert scores[locale] == sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
        tag = read_scalars(Path(spec.tensorboard_dir))["."][f"test/{locale}/accuracy"]
        assert tag[-1] == (record.best_step, pytest.approx(scores[locale]))


@pytest.mark.timeout(60)
def test_evaluating_a_trial_that_saved_nothing_is_a_clear_error(plan):
    spec = plan("vanilla", "never-ran")
    with pytest.raises(XsweepError, match="no saved best checkpoint"):
        evaluate_saved_trial(spec, LOCALES)
