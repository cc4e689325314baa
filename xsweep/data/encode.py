"""Tokenization for the tasks, cached on disk as Arrow files; first-sub-token labels; lazy NLI pairs.

Every trial on a node tokenizes the same texts: English dev, the training rows, and the test split
of every locale it is tested on (the evaluation stage scores each selected checkpoint on every
locale). `tokenize_cached` tokenizes each split once per node and memory-maps it afterwards; the
tasks' `encode` (train/tasks/) goes through it, so train/member.py and train/evaluate.py read the
cache without knowing of it.

Key: sha256 of the texts as the task tokenizes them (in order), the tokenizer's fingerprint (its
vocabulary and pipeline, without the truncation/padding state that calling it changes), the
encoding (ENCODINGS), max_seq_len and ENCODE_VERSION. Keying on the texts, not on a file path,
means an edited data file, another partition, locale or sample is another entry and nothing stale
is ever read; label maps are not in it (labels cost nothing to recompute), so every trial of every
run on the same data and tokenizer shares an entry.

Where: `$XSWEEP_CACHE/tokenized/` (default ~/.cache/xsweep), beside the built-in backbones, not
under the run's storage.root: entries are valid across runs (the paper's tables tokenize the same
MASSIVE files with the same tokenizer), storage.root may be a network mount where memory-mapping
reads over the network (or, as mountpoint-s3, cannot rename), and every trial on a node sees the
same XSWEEP_CACHE. Each entry is one Arrow stream file (the format of `datasets`' own cache, read
with `datasets.Dataset.from_file`, memory-mapped), written under a temporary name beside it and
renamed into place (xsweep.atomic): two trials that write the same entry at once each write a
whole file and the last rename wins, with the same bytes; a reader never sees a partial file, and
one that has the old file open keeps reading it. An unreadable entry is tokenized and written
again; a cache that cannot be written (disk full, read-only) costs the trial nothing but time.
Splits of fewer than CACHE_MIN_ROWS texts are tokenized in place (bench/bench_data_load.py).
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from xsweep.atomic import atomic_path
from xsweep.errors import XsweepError
from xsweep.paths import cache_dir

ENCODE_VERSION = 3  # 3: Arrow stream files, read through `datasets`
"""Part of every cache key: bump when what `tokenize` stores changes."""
ENCODINGS = {
    "text": "one string a row, with special tokens, truncated to max_seq_len (intent utterances)",
    "bare": "one string a row, no special tokens, not truncated (NLI premises, joined to hypotheses later)",
    "words": "pre-split words a row, with special tokens, truncated; with word_ids (slot filling)",
}
CACHE_MIN_ROWS = 1000
"""Splits with fewer texts are not cached: tokenizing them costs less than writing and reading an
entry (bench/bench_data_load.py). A few-shot sample or `xsweep predict`'s utterances stay out."""
CACHE_STATS: Counter = Counter()
"""This process's cache lookups: `hit` (read from the cache), `miss` (tokenized and written),
`small` (under CACHE_MIN_ROWS, tokenized in place), `unwritable` (tokenized; the write failed)."""
IGNORE = -100
"""Label of the tokens the slot loss skips (cross_entropy's ignore_index): all but each word's first."""


def first_subtoken_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """word_ids: the tokenizer's `word_ids()` of one sequence (None for specials). Returns one label
    per token: the word's label at its first sub-token, IGNORE elsewhere."""
    out, previous = [], None
    for word in word_ids:
        out.append(word_labels[word] if word is not None and word != previous else IGNORE)
        previous = word
    return out


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the token ids: class, vocabulary/pipeline, special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by every call with truncation=True
        state.pop("padding", None)
        digest.update(json.dumps(state, sort_keys=True, ensure_ascii=False).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    digest.update(json.dumps(tokenizer.all_special_tokens).encode())
    return digest.hexdigest()


_fingerprints: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _fingerprint(tokenizer: Any) -> str:
    """`tokenizer_fingerprint`, once per tokenizer object (XLM-R's serialises 17 MB of vocabulary),
    again if tokens were added since."""
    size = len(tokenizer)
    known = _fingerprints.get(tokenizer)
    if known is None or known[0] != size:
        known = (size, tokenizer_fingerprint(tokenizer))
        _fingerprints[tokenizer] = known
    return known[1]


@dataclass
class Tokenized:
    input_ids: list[list[int]]
    word_ids: list[list[int | None]] | None = None
    """Word index of every token (None for special tokens); `words` encoding only."""


def tokenize(texts: Sequence[Any], tokenizer: Any, encoding: str, max_seq_len: int | None = None) -> Tokenized:
    """Tokenize `texts` (strings, or word lists for `words`) as ENCODINGS[encoding] says; no cache."""
    if encoding == "text":
        return Tokenized(tokenizer(list(texts), truncation=True, max_length=max_seq_len)["input_ids"])
    if encoding == "bare":
        return Tokenized(tokenizer(list(texts), add_special_tokens=False)["input_ids"])
    if encoding == "words":
        encoded = tokenizer(list(texts), is_split_into_words=True, truncation=True, max_length=max_seq_len)
        return Tokenized(encoded["input_ids"], [encoded.word_ids(i) for i in range(len(texts))])
    raise XsweepError(f"unknown encoding {encoding!r}", fix=f"use one of {', '.join(ENCODINGS)}")


def cache_key(texts: Sequence[Any], tokenizer: Any, encoding: str, max_seq_len: int | None) -> str:
    """Name of the cache entry of `texts` under one tokenizer and encoding."""
    texts_digest = hashlib.sha256(json.dumps(list(texts), ensure_ascii=False).encode()).hexdigest()
    parts = {"texts": texts_digest, "tokenizer": _fingerprint(tokenizer), "encoding": encoding,
             "max_seq_len": None if encoding == "bare" else max_seq_len, "version": ENCODE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def tokenized_cache_dir() -> Path:
    """Where entries live: `$XSWEEP_CACHE/tokenized` (see the module docstring for why)."""
    return cache_dir() / "tokenized"


def tokenize_cached(texts: Sequence[Any], tokenizer: Any, encoding: str, max_seq_len: int | None = None, *,
                    cache_root: Path | None = None) -> Tokenized:
    """`tokenize(texts, ...)`, read from the node's cache when another trial tokenized the same texts
    the same way before (memory-mapped), else tokenized and written there. Equal to `tokenize`."""
    if encoding not in ENCODINGS:
        raise XsweepError(f"unknown encoding {encoding!r}", fix=f"use one of {', '.join(ENCODINGS)}")
    if len(texts) < CACHE_MIN_ROWS:
        CACHE_STATS["small"] += 1
        return tokenize(texts, tokenizer, encoding, max_seq_len)
    try:
        root = Path(cache_root) if cache_root is not None else tokenized_cache_dir()
    except OSError:  # no cache folder can be made: tokenize as if there were no cache
        CACHE_STATS["unwritable"] += 1
        return tokenize(texts, tokenizer, encoding, max_seq_len)
    path = root / f"{cache_key(texts, tokenizer, encoding, max_seq_len)}.arrow"
    cached = _read_entry(path, len(texts), encoding)
    if cached is not None:
        CACHE_STATS["hit"] += 1
        return cached
    result = tokenize(texts, tokenizer, encoding, max_seq_len)
    try:
        _write_entry(path, result)
        CACHE_STATS["miss"] += 1
    except OSError:
        CACHE_STATS["unwritable"] += 1
    return result


def _write_entry(path: Path, tokenized: Tokenized) -> None:
    # int32: token ids of every tokenizer in use (XLM-R: 250,002) fit, at half the size of int64.
    columns = {"input_ids": pa.array(tokenized.input_ids, type=pa.list_(pa.int32()))}
    if tokenized.word_ids is not None:
        columns["word_ids"] = pa.array(tokenized.word_ids, type=pa.list_(pa.int32()))
    table = pa.table(columns)
    with atomic_path(path) as tmp:
        # The Arrow stream format `datasets` keeps its own cache in, so `Dataset.from_file` maps it.
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)


def _read_entry(path: Path, rows: int, encoding: str) -> Tokenized | None:
    """The entry at `path` as Python lists, or None if there is none (or it is unreadable, or not
    what `tokenize` would return for `rows` texts: then it is written again)."""
    from datasets import Dataset

    if not path.is_file():
        return None
    try:
        table = Dataset.from_file(str(path), in_memory=False).data  # memory-mapped, shared with other trials
        if table.num_rows != rows or ("word_ids" in table.column_names) != (encoding == "words"):
            return None
        word_ids = _lists(table.column("word_ids")) if encoding == "words" else None
        return Tokenized(_lists(table.column("input_ids")), word_ids)
    except (OSError, ValueError, pa.ArrowException):
        return None


def _lists(column: pa.ChunkedArray) -> list[list]:
    return column.to_pylist()


class NliPairs(Sequence):
    """Every (example, candidate) pair of an NLI evaluation, tokenized only when indexed.

    N examples x C candidate hypotheses would be N*C tokenized rows (2,974 x 60 for MASSIVE
    test); the parts are tokenized once (`tokenize_cached`) and joined on access. Pair k is example k // C with
    candidate k % C. The premise is truncated so that the pair fits `max_seq_len`.
    """

    def __init__(self, premises: Sequence[str], hypotheses: Sequence[str], tokenizer: Any,
                 max_seq_len: int):
        if not premises or not hypotheses:
            raise XsweepError("NLI pairs need at least one premise and one hypothesis",
                              fix="check the evaluation split and the candidate list")
        self._max = max_seq_len
        self._premises = tokenize_cached(premises, tokenizer, "bare").input_ids
        self._hypotheses = tokenize_cached(hypotheses, tokenizer, "bare").input_ids
        self._template = _pair_template(tokenizer)
        self._special = sum(len(part) for part in self._template)
        longest = max(len(h) for h in self._hypotheses)
        if longest + self._special >= max_seq_len:
            raise XsweepError(f"a hypothesis of {longest} tokens leaves no room for the premise "
                              f"within max_seq_len={max_seq_len}", fix="raise max_seq_len")

    def premise_lengths(self) -> list[int]:
        """Tokens of every premise (example) alone, without specials: how long each example is."""
        return [len(premise) for premise in self._premises]

    @property
    def num_candidates(self) -> int:
        return len(self._hypotheses)

    def __len__(self) -> int:
        return len(self._premises) * len(self._hypotheses)

    def lengths(self) -> list[int]:
        """Tokens of every pair, in pair order, without building the pairs."""
        return [min(len(prem), self._max - self._special - len(hyp)) + len(hyp) + self._special
                for prem in self._premises for hyp in self._hypotheses]

    def __getitem__(self, k: int) -> dict:  # type: ignore[override]
        if not -len(self) <= k < len(self):
            raise IndexError(k)
        k %= len(self)
        i, j = divmod(k, len(self._hypotheses))
        hyp = self._hypotheses[j]
        prem = self._premises[i][: self._max - self._special - len(hyp)]
        start, middle, end = self._template
        return {"input_ids": start + prem + middle + hyp + end, "example": i, "candidate": j}


def _pair_template(tokenizer: Any) -> tuple[list[int], list[int], list[int]]:
    """Special tokens before, between and after a (premise, hypothesis) pair.

    Read off one real pair encoding, since transformers 5 tokenizers no longer expose
    build_inputs_with_special_tokens: `<s> A </s></s> B </s>` for XLM-R, `[CLS] A [SEP] B [SEP]`
    for BERT.
    """
    a_len = len(tokenizer("a", add_special_tokens=False)["input_ids"])
    enc = tokenizer("a", "b", return_special_tokens_mask=True)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    seen = 0
    for token, special in zip(enc["input_ids"], enc["special_tokens_mask"]):
        if special:
            parts[0 if seen == 0 else 1 if seen == a_len else 2].append(token)
        else:
            seen += 1
    return parts
