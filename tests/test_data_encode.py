"""Tokenization cached as Arrow, keyed by the texts, tokenizer, encoding and length, and read by the
trials; first-sub-token labels; lazy NLI pairs."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pytest

from xsweep.config import load_config
from xsweep.data import encode
from xsweep.data.encode import (CACHE_MIN_ROWS, ENCODINGS, IGNORE, NliPairs, first_subtoken_labels, tokenize,
                                tokenize_cached, tokenizer_fingerprint)
from xsweep.data.massive import parse_annot_utt, read_massive, slot_labels
from xsweep.data.synth import demo_corpus
from xsweep.errors import XsweepError
from xsweep.models.builtin import train_tokenizer
from xsweep.record import read_record
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream
from xsweep.train.evaluate import evaluate_saved_trial

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def tokenizer(demo):
    return train_tokenizer(demo_corpus(demo), 600)


@pytest.fixture(scope="module")
def en_dev(shared_data):
    """MASSIVE en-US dev, 2,033 rows: a split the cache keeps (>= CACHE_MIN_ROWS)."""
    rows = read_massive(shared_data / "massive" / "1.1" / "data", "en-US", ["dev"])
    assert len(rows) >= CACHE_MIN_ROWS
    return rows


@pytest.fixture
def stats():
    encode.CACHE_STATS.clear()
    return encode.CACHE_STATS


def _texts(rows, encoding: str) -> list:
    return [parse_annot_utt(r.annot_utt, r.locale)[0] for r in rows] if encoding == "words" else [r.utt for r in rows]


def _entries(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_cached_tokenization_equals_tokenize_and_is_keyed(encoding, en_dev, tokenizer, tmp_path, monkeypatch, stats):
    texts, cache = _texts(en_dev, encoding), tmp_path / "cache"
    fresh = tokenize_cached(texts, tokenizer, encoding, 32, cache_root=cache)
    assert fresh == tokenize(texts, tokenizer, encoding, 32)
    assert (fresh.word_ids is not None) == (encoding == "words")
    assert len(_entries(cache)) == 1 and stats == {"miss": 1}

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a cached split must not be tokenized again")

    monkeypatch.setattr(encode, "tokenize", no_tokenizing)
    assert tokenize_cached(texts, tokenizer, encoding, 32, cache_root=cache) == fresh  # same ids, same order
    assert stats == {"miss": 1, "hit": 1}
    monkeypatch.undo()

    edited = [texts[0][:-1]] + texts[1:]  # a character (or a word) less in the first row
    tokenize_cached(edited, tokenizer, encoding, 32, cache_root=cache)  # the data changed
    tokenize_cached(texts[::-1], tokenizer, encoding, 32, cache_root=cache)  # another order
    other_tok = train_tokenizer([" ".join(t) if encoding == "words" else t for t in texts[:500]], 300)
    tokenize_cached(texts, other_tok, encoding, 32, cache_root=cache)  # another tokenizer
    tokenize_cached(texts, tokenizer, encoding, 16, cache_root=cache)  # another length, unless never truncated
    assert len(_entries(cache)) == (4 if encoding == "bare" else 5)
    fp = tokenizer_fingerprint(tokenizer)
    tokenizer(["x"], truncation=True, max_length=5, padding="max_length")
    assert tokenizer_fingerprint(tokenizer) == fp  # calling it does not change its key


def test_small_splits_are_tokenized_in_place(en_dev, tokenizer, tmp_path, stats):
    texts = _texts(en_dev[:CACHE_MIN_ROWS - 1], "text")
    assert tokenize_cached(texts, tokenizer, "text", 32, cache_root=tmp_path) == tokenize(texts, tokenizer, "text", 32)
    assert _entries(tmp_path) == [] and stats == {"small": 1}


def test_trials_on_a_node_read_each_split_from_the_cache(tmp_path, monkeypatch, one_thread, stats):
    """A second trial on the node tokenizes nothing, and the evaluation stage reads the test splits
    the trials wrote, with the scores and predictions of the trial that tokenized them."""
    root = tmp_path / "tokenized"
    monkeypatch.setattr(encode, "tokenized_cache_dir", lambda: root)
    monkeypatch.setattr(encode, "CACHE_MIN_ROWS", 0)  # the demo's splits are small: cache all of them
    path = tmp_path / "cache.yaml"
    path.write_text(TRIALS.format(root=tmp_path / "runs"))
    cfg = load_config(path)
    first, second = plan_trials(cfg, tmp_path / "runs" / "cache", prepare_inputs(cfg, log=lambda _: None))
    stats.clear()
    record = run_downstream(first)
    written = {p.name: p.stat().st_mtime_ns for p in root.glob("*.arrow")}
    # the 5-shot sample, English dev, and the test split of each locale
    assert len(written) == 4 and stats == {"miss": 4}

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("a trial tokenized a split another trial on the node had cached")

    monkeypatch.setattr(encode, "tokenize", no_tokenizing)
    stats.clear()
    run_downstream(second)  # another learning rate: the same sample, dev and test texts
    assert stats == {"hit": 4}
    predictions = {f.name: f.read_bytes() for f in (Path(first.trial_dir) / "predictions").iterdir()}
    stats.clear()
    scores = evaluate_saved_trial(first, first.eval_locales, update_record=False)
    assert stats == {"hit": 2}
    assert {p.name: p.stat().st_mtime_ns for p in root.glob("*.arrow")} == written  # read, never rewritten
    assert scores == record.test_scores == read_record(Path(first.trial_dir) / "record.json").test_scores
    assert {f.name: f.read_bytes() for f in (Path(first.trial_dir) / "predictions").iterdir()} == predictions


TRIALS = """\
name: cache
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 40, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
head: {{kind: vanilla}}
optim: {{epochs: 1, batch_size: 16, patience: 10, eval_batch_size: 128}}
sweep: {{grid: {{optim.lr: [0.03, 0.01]}}, seeds: [0], evaluate: all}}
storage: {{root: {root}}}
"""


def test_trials_writing_one_entry_at_once_each_get_it_whole(en_dev, tokenizer, tmp_path):
    texts, workers = _texts(en_dev, "words"), 4
    start, results = threading.Barrier(workers), []

    def trial():
        start.wait()
        results.append(tokenize_cached(texts, tokenizer, "words", 32, cache_root=tmp_path))

    threads = [threading.Thread(target=trial) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = tokenize(texts, tokenizer, "words", 32)
    assert len(results) == workers and all(r == expected for r in results)
    [entry] = _entries(tmp_path)  # one entry, no temporary file left behind
    assert entry.endswith(".arrow")
    assert tokenize_cached(texts, tokenizer, "words", 32, cache_root=tmp_path) == expected


def test_a_failed_write_leaves_no_entry_and_the_trial_its_tokens(en_dev, tokenizer, tmp_path, monkeypatch, stats):
    texts = _texts(en_dev, "text")

    def disk_full(sink, schema):
        sink.write(b"ARROW1 half an entry")
        raise OSError("disk full")

    monkeypatch.setattr(pa.ipc, "new_stream", disk_full)
    assert tokenize_cached(texts, tokenizer, "text", 32, cache_root=tmp_path) == tokenize(texts, tokenizer, "text", 32)
    assert _entries(tmp_path) == [] and stats == {"unwritable": 1}


def test_an_unreadable_entry_is_tokenized_and_written_again(en_dev, tokenizer, tmp_path, stats):
    texts = _texts(en_dev, "bare")
    expected = tokenize_cached(texts, tokenizer, "bare", cache_root=tmp_path)
    [entry] = tmp_path.glob("*.arrow")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # torn by a crash of the machine
    assert tokenize_cached(texts, tokenizer, "bare", cache_root=tmp_path) == expected
    assert tokenize_cached(texts, tokenizer, "bare", cache_root=tmp_path) == expected
    assert stats == {"miss": 2, "hit": 1}


def test_slot_labels_on_first_subtoken(demo, tokenizer):
    for locale in ("en-US", "ja-JP"):
        rows = read_massive(demo, locale)[:100]
        slots = ["Other"] + slot_labels(rows)
        words, word_labels = zip(*(parse_annot_utt(r.annot_utt, locale) for r in rows))
        encoded = tokenize_cached(list(words), tokenizer, "words", 128)
        for ids, labels_of_words in zip(encoded.word_ids, word_labels):
            wanted = [slots.index(w) for w in labels_of_words]
            labels = first_subtoken_labels(ids, wanted)
            assert [lab for lab in labels if lab != IGNORE] == wanted
            assert labels[0] == labels[-1] == IGNORE  # <s> and </s>


def test_real_de_dev_slots(shared_data, tokenizer, tmp_path):
    massive = shared_data / "massive" / "1.1" / "data"
    rows = read_massive(massive, "de-DE")
    assert len(rows) == 2033 and {r.partition for r in rows} == {"dev"}
    with pytest.raises(XsweepError, match="partition 'train' is empty"):
        read_massive(massive, "de-DE", ["train"])
    words = [parse_annot_utt(r.annot_utt, r.locale)[0] for r in rows]
    encoded = tokenize_cached(words, tokenizer, "words", 128, cache_root=tmp_path)
    assert encoded == tokenize(words, tokenizer, "words", 128) and len(_entries(tmp_path)) == 1
    assert all(max(i for i in ids if i is not None) == len(w) - 1 for ids, w in zip(encoded.word_ids, words))


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
