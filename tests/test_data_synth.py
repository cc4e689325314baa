"""Demo data: deterministic, in the real formats, parallel across locales, written atomically."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from xsweep.data import synth
from xsweep.data.massive import parse_annot_utt, read_massive, split_words
from xsweep.data.synth import DEMO_LOCALES, demo_corpus, ensure_demo_data, template_slots, write_demo_data
from xsweep.data.synth_templates import FILLERS, INTENTS, LANGS
from xsweep.paths import shared_data_dir

pytestmark = pytest.mark.timeout(60)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_other_seed_differs(demo, tmp_path):
    again = _tree(write_demo_data(tmp_path / "again", seed=0))
    assert again == _tree(demo)
    other = _tree(write_demo_data(tmp_path / "other", seed=1))
    assert other.keys() == again.keys()
    assert other["massive/1.1/data/en-US.jsonl"] != again["massive/1.1/data/en-US.jsonl"]


def test_templates_have_the_same_slots_in_every_language():
    for _, intent, templates in INTENTS:
        assert len(templates) >= 4, intent
        for t in templates:
            assert len(t) == len(LANGS)
            assert all(sorted(template_slots(x)) == sorted(template_slots(t[0])) for x in t), t
            assert " " not in t[LANGS.index("ja")]
    assert all(len(f) == len(LANGS) for fillers in FILLERS.values() for f in fillers)


def test_massive_rows_read_and_parse_back(demo):
    real_keys = None
    de_real = shared_data_dir() / "massive" / "1.1" / "data" / "de-DE.jsonl"
    if de_real.is_file():
        with open(de_real, encoding="utf-8") as f:
            real_keys = list(json.loads(f.readline()))
    by_locale = {}
    for locale in DEMO_LOCALES:
        rows = read_massive(demo, locale)
        by_locale[locale] = rows
        for ex in rows:
            words, labels = parse_annot_utt(ex.annot_utt, locale)
            assert words == split_words(ex.utt, locale), (locale, ex.id)
            assert set(labels) != {"Other"} or "[" not in ex.annot_utt
        text = (demo / "massive/1.1/data" / f"{locale}.jsonl").read_text(encoding="utf-8")
        first = json.loads(text.splitlines()[0])
        if locale == "en-US":
            assert list(first) == ["id", "locale", "partition", "scenario", "intent", "utt",
                                   "annot_utt", "worker_id"]
        else:
            if real_keys:
                assert list(first) == real_keys
            assert all(set(m) == {"slot", "method"} for m in first["slot_method"])
            assert first["judgments"] and "intent_score" in first["judgments"][0]
    assert all(" " not in ex.utt for ex in by_locale["ja-JP"])
    en = by_locale["en-US"]
    counts = Counter((ex.intent, ex.partition) for ex in en)
    intents = {ex.intent for ex in en}
    assert 12 <= len(intents) <= 16 and 5 <= len({ex.scenario for ex in en}) <= 6
    assert all(counts[i, "train"] == 40 and counts[i, "dev"] == 10 and counts[i, "test"] == 20
               for i in intents)
    assert all(i.startswith(ex.scenario + "_") for ex in en for i in [ex.intent])
    train_utts = {ex.utt for ex in en if ex.partition == "train"}
    assert not any(ex.utt in train_utts for ex in en if ex.partition == "test")


def test_ids_are_parallel_across_locales(demo):
    keyed = {loc: [(ex.id, ex.partition, ex.intent) for ex in read_massive(demo, loc)]
             for loc in DEMO_LOCALES}
    assert all(v == keyed["en-US"] for v in keyed.values())
    utts = {loc: [ex.utt for ex in read_massive(demo, loc)] for loc in DEMO_LOCALES}
    assert utts["de-DE"] != utts["en-US"]


def test_xsgd_layout(demo):
    codes = ["de", "es", "ru", "ja"]
    for split in ("train", "dev", "test"):
        schema = json.loads((demo / "xsgd" / split / "schema.json").read_text(encoding="utf-8"))
        services = {s["service_name"]: s for s in schema}
        assert all(i["description"] for s in schema for i in s["intents"])
        dialogues = json.loads((demo / "xsgd" / split / "dialogues_001.json").read_text("utf-8"))
        per_service = Counter(d["services"][0] for d in dialogues)
        assert set(per_service) == set(services)
        if split == "train":
            assert min(per_service.values()) >= 5
        for d in dialogues:
            assert d["dialogue_id"] and set(d["services"]) <= set(services)
            for turn in d["turns"]:
                assert turn["speaker"] in ("USER", "SYSTEM")
                assert all(turn[f"utterance_{c}"] for c in codes)
                for frame in turn["frames"]:
                    assert frame["service"] in services
                    for slot in frame["slots"]:
                        value = turn["utterance"][slot["start"]:slot["exclusive_end"]]
                        assert slot["start"] >= 0 and value
                    if turn["speaker"] == "USER":
                        intent = frame["state"]["active_intent"]
                        names = {i["name"] for i in services[frame["service"]]["intents"]}
                        assert intent == "NONE" or intent in names


def test_tatoeba_files_are_line_aligned(demo):
    for iso3 in ("deu", "spa", "rus", "jpn"):
        other = (demo / "tatoeba/v1" / f"tatoeba.{iso3}-eng.{iso3}").read_text("utf-8").splitlines()
        eng = (demo / "tatoeba/v1" / f"tatoeba.{iso3}-eng.eng").read_text("utf-8").splitlines()
        assert len(other) == len(eng) >= 200 and len(set(eng)) == len(eng)


def test_demo_corpus_is_all_train_utterances(demo):
    corpus = demo_corpus(demo)
    assert len(corpus) == len(DEMO_LOCALES) * sum(
        ex.partition == "train" for ex in read_massive(demo, "en-US"))
    assert corpus == demo_corpus(demo)
    assert len(demo_corpus(demo, ("train", "dev"))) > len(corpus)


def test_failed_write_leaves_nothing_and_old_data_survives(tmp_path, monkeypatch):
    out = tmp_path / "data"

    def boom(root, seed):
        raise RuntimeError("killed")

    monkeypatch.setattr(synth, "_write_tatoeba", boom)
    with pytest.raises(RuntimeError):
        write_demo_data(out)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    write_demo_data(out)
    before = _tree(out)
    monkeypatch.setattr(synth, "_write_tatoeba", boom)
    with pytest.raises(RuntimeError):
        write_demo_data(out)
    assert _tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["data"]


def test_ensure_demo_data_reuses_complete_data(tmp_path):
    out = ensure_demo_data(tmp_path / "d", seed=0)
    stamp = (out / "massive/1.1/data/en-US.jsonl").stat().st_mtime_ns
    assert ensure_demo_data(out, seed=0) == out
    assert (out / "massive/1.1/data/en-US.jsonl").stat().st_mtime_ns == stamp
    ensure_demo_data(out, seed=1)
    assert json.loads((out / synth.MANIFEST).read_text())["seed"] == 1
