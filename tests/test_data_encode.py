"""Tokenization cached as Arrow: keyed by data, tokenizer, length and labels; lazy NLI pairs."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest

from xsweep.data import encode
from xsweep.data.encode import IGNORE, NliPairs, encode_massive, partition, tokenizer_fingerprint
from xsweep.data.massive import intent_labels, parse_annot_utt, read_massive, slot_labels
from xsweep.data.synth import demo_corpus
from xsweep.errors import XsweepError
from xsweep.models.builtin import train_tokenizer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tokenizer(demo):
    return train_tokenizer(demo_corpus(demo), 600)


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_intent_encoding_is_cached_and_keyed(demo, tokenizer, tmp_path, monkeypatch):
    rows = read_massive(demo, "en-US")
    intents = intent_labels(rows)
    cache = tmp_path / "cache"
    ds = encode_massive(demo, "en-US", tokenizer, 32, intents, cache_root=cache)
    assert len(ds) == len(rows) and ds["id"] == [r.id for r in rows]
    assert ds[5]["input_ids"] == tokenizer(rows[5].utt, truncation=True, max_length=32)["input_ids"]
    assert ds[5]["intent"] == intents.index(rows[5].intent)
    assert len(partition(ds, "test")) == 14 * 20
    assert len(_entries(cache)) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached run must not read or tokenize the data again")

    monkeypatch.setattr(encode, "read_massive", no_reading)
    again = encode_massive(demo, "en-US", tokenizer, 32, intents, cache_root=cache)
    assert again["input_ids"] == ds["input_ids"]
    monkeypatch.undo()
    encode_massive(demo, "en-US", tokenizer, 16, intents, cache_root=cache)  # new length
    encode_massive(demo, "en-US", tokenizer, 32, intents[:-1], cache_root=cache)  # new labels
    other_tok = train_tokenizer(demo_corpus(demo)[:500], 300)
    encode_massive(demo, "en-US", other_tok, 32, intents, cache_root=cache)  # new tokenizer
    assert len(_entries(cache)) == 4
    fp = tokenizer_fingerprint(tokenizer)
    tokenizer(["x"], truncation=True, max_length=5, padding="max_length")
    assert tokenizer_fingerprint(tokenizer) == fp  # calling it does not change its key


def test_changed_data_file_is_encoded_afresh(demo, tokenizer, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    src = (demo / "massive/1.1/data/de-DE.jsonl").read_text(encoding="utf-8").splitlines()
    (data / "de-DE.jsonl").write_text("\n".join(src[:50]), encoding="utf-8")
    intents = intent_labels(read_massive(demo, "en-US"))
    assert len(encode_massive(data, "de-DE", tokenizer, 32, intents, cache_root=tmp_path / "c")) == 50
    (data / "de-DE.jsonl").write_text("\n".join(src[:60]), encoding="utf-8")
    assert len(encode_massive(data, "de-DE", tokenizer, 32, intents, cache_root=tmp_path / "c")) == 60


def test_slot_labels_on_first_subtoken(demo, tokenizer, tmp_path):
    for locale in ("en-US", "ja-JP"):
        rows = read_massive(demo, locale)
        slots = ["Other"] + slot_labels(rows)
        ds = encode_massive(demo, locale, tokenizer, 128, intent_labels(rows), slots=slots,
                            cache_root=tmp_path)
        for r, labels in zip(rows[:100], ds["slot_labels"][:100]):
            words, word_labels = parse_annot_utt(r.annot_utt, locale)
            assert [lab for lab in labels if lab != IGNORE] == [slots.index(w) for w in word_labels]
            assert labels[0] == labels[-1] == IGNORE  # <s> and </s>


def test_real_de_dev_slots(shared_data, tokenizer, tmp_path):
    massive = shared_data / "massive"
    rows = read_massive(massive, "de-DE")
    slots = ["Other"] + slot_labels(read_massive(massive, "en-US", ["dev"]) + rows)
    ds = encode_massive(massive, "de-DE", tokenizer, 128, intent_labels(rows), slots=slots,
                        cache_root=tmp_path)
    assert len(ds) == 2033 and len(partition(ds, "dev")) == 2033
    with pytest.raises(XsweepError, match="partition 'train' is empty"):
        partition(ds, "train")
    with pytest.raises(XsweepError, match="no annot_utt"):
        encode_massive(massive / "utt-only", "th-TH", tokenizer, 32, ["x"], slots=slots,
                       cache_root=tmp_path)


def test_failure_leaves_no_cache_entry(demo, tokenizer, tmp_path, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", broken)
    with pytest.raises(OSError):
        encode_massive(demo, "es-ES", tokenizer, 32, ["a"], cache_root=tmp_path)
    assert _entries(tmp_path) == []


def test_nli_pairs_are_built_lazily(tokenizer):
    premises = ["wake me up at seven am tomorrow please " * 5, "play some jazz"]
    hypotheses = ["alarm set", "play music", "weather query"]
    pairs = NliPairs(premises, hypotheses, tokenizer, max_seq_len=24)
    assert len(pairs) == 6 and pairs.num_candidates == 3
    item = pairs[4]
    assert (item["example"], item["candidate"]) == (1, 1)
    assert item["input_ids"] == tokenizer("play some jazz", "play music")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(item["input_ids"])[0] == "<s>"
    assert all(len(pairs[k]["input_ids"]) <= 24 for k in range(len(pairs)))
    # lengths() says how long each pair is without building it (the first premise is truncated).
    assert pairs.lengths() == [len(pairs[k]["input_ids"]) for k in range(len(pairs))]
    assert pairs.lengths()[0] == 24
    assert pairs[-1]["candidate"] == 2
    with pytest.raises(IndexError):
        pairs[6]
    with pytest.raises(XsweepError, match="raise max_seq_len"):
        NliPairs(premises, ["a very long hypothesis " * 10], tokenizer, max_seq_len=16)
