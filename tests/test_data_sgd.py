"""SGD / XSGD reader and intent examples, on the real shared SGD files and the demo XSGD files."""

from __future__ import annotations

import gzip
import json

import pytest

from xsweep.data.sgd import (
    check_services,
    intent_examples,
    read_dialogues,
    read_schema,
    sample_dialogues,
    save_dialogue_sample,
    select_dialogues,
    split_dir,
)
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def train(shared_data):
    folder = split_dir(shared_data, "train")
    return read_schema(folder), read_dialogues(folder)


def test_real_train_services_all_in_schema_and_sampled(train, tmp_path):
    schema, dialogues = train
    assert len(dialogues) == 3072 and len(schema) == 26
    check_services(dialogues, schema)
    assert {s for d in dialogues for s in d["services"]} == set(schema)
    sample = sample_dialogues(dialogues, per_service=5, seed=0)
    # In the shared subset, Buses_2 and Travel_1 occur in one dialogue only (88_00127, which
    # holds both): they are short services, used whole and listed, like MASSIVE's cooking_query.
    assert sample.short_services == {"Buses_2": 1, "Travel_1": 1}
    assert sample.by_service["Buses_2"] == sample.by_service["Travel_1"] == ["88_00127"]
    assert len(sample.by_service) == 26
    assert all(len(v) == 5 for s, v in sample.by_service.items() if s not in sample.short_services)
    assert len(sample.ids) == len({i for v in sample.by_service.values() for i in v}) <= 130
    assert sample_dialogues(list(reversed(dialogues)), 5, seed=0).ids == sample.ids
    assert sample_dialogues(dialogues, 5, seed=1).ids != sample.ids
    save_dialogue_sample(sample, tmp_path / "sgd_sample.json")
    saved = json.loads((tmp_path / "sgd_sample.json").read_text())
    assert [d["dialogue_id"] for d in select_dialogues(dialogues, saved["ids"])] == sample.ids


def test_real_dev_split(shared_data):
    folder = split_dir(shared_data / "sgd", "dev")
    schema, dialogues = read_schema(folder), read_dialogues(folder)
    assert len(dialogues) == 1092 and len(schema) == 17
    check_services(dialogues, schema)


def test_real_intent_examples_both_turn_choices(train):
    schema, dialogues = train
    some = dialogues[:200]
    by_state = intent_examples(some, schema, "active_intent")
    by_acts = intent_examples(some, schema, "intent_acts")
    assert len(by_state) == len(by_acts)  # same frames; only the labels differ
    frames = [f for d in some for t in d["turns"] if t["speaker"] == "USER" for f in t["frames"]]
    assert len(by_state) == len(frames)
    none_state = sum(f["state"]["active_intent"] == "NONE" for f in frames)
    assert sum(e.intent is None for e in by_state) == none_state > 0
    informing = sum(f["state"]["active_intent"] != "NONE" and any(
        a["act"] in ("INFORM_INTENT", "AFFIRM_INTENT") for a in f["actions"]) for f in frames)
    assert sum(e.intent is not None for e in by_acts) == informing < len(frames) - none_state
    first = by_state[0]
    assert first.system_utterance == "" and first.premise == first.user_utterance
    second = next(e for e in by_state if e.turn_index == 2)
    assert second.system_utterance and second.premise.startswith(second.system_utterance)
    assert all(e.intent is None or e.intent in e.candidates for e in by_state)
    assert all(len(e.candidates) == len(e.descriptions) for e in by_state)
    with pytest.raises(XsweepError, match="intent_turns"):
        intent_examples(some, schema, "every_turn")


def test_xsgd_utterances_by_language(demo):
    folder = split_dir(demo, "train")
    schema = read_schema(folder)
    de = intent_examples(read_dialogues(folder, lang="de"), schema, lang="de")
    en = intent_examples(read_dialogues(folder), schema)
    assert [e.intent for e in de] == [e.intent for e in en]
    assert de[0].user_utterance != en[0].user_utterance
    assert any(e.intent is None for e in en) and any(e.intent for e in en)
    with pytest.raises(XsweepError) as e:
        read_dialogues(folder, lang="fr")
    assert "utterance_fr" in e.value.what and "de, es, ja, ru" in e.value.fix


def test_bad_sgd_files(tmp_path, demo):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "schema.json").write_text((demo / "xsgd/train/schema.json").read_text("utf-8"))
    dialogues = json.loads((demo / "xsgd/train/dialogues_001.json").read_text("utf-8"))
    raw = json.dumps(dialogues).encode()
    with gzip.open(folder / "dialogues_001.json.gz", "wb") as f:
        f.write(raw[: len(raw) // 2])  # truncated
    with pytest.raises(XsweepError) as e:
        read_dialogues(folder)
    assert "dialogues_001.json.gz" in e.value.where
    del dialogues[3]["turns"][1]["speaker"]
    (folder / "dialogues_001.json.gz").unlink()
    (folder / "dialogues_001.json").write_text(json.dumps(dialogues))
    with pytest.raises(XsweepError) as e:
        read_dialogues(folder)
    assert "'speaker'" in e.value.what and "turn 1" in e.value.where
    dialogues = json.loads((demo / "xsgd/train/dialogues_001.json").read_text("utf-8"))
    dialogues[0]["turns"][0]["frames"][0]["service"] = "Flights_9"
    (folder / "dialogues_001.json").write_text(json.dumps(dialogues))
    with pytest.raises(XsweepError, match="Flights_9"):
        check_services(read_dialogues(folder), read_schema(folder))
    with pytest.raises(XsweepError, match="no SGD test split"):
        split_dir(tmp_path, "test")
