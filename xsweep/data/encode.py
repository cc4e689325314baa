"""Tokenized MASSIVE locales cached as Arrow (`datasets`), and lazily built NLI pairs.

A sweep tokenizes the same files for every trial; the cache makes that once. The cache key is
the sha256 of the data file, a fingerprint of the tokenizer (its vocabulary and pipeline, without
the truncation/padding state that calling it changes), the maximum length, the label lists and
ENCODE_VERSION, so any change to one of them encodes afresh and nothing stale is ever reused.
Each entry is written to a temporary folder and renamed into place: a failed run leaves no
partial entry. One entry per locale file, so adding a locale re-encodes only that locale.

Tokenization follows the training code: intent-only encoding tokenizes `utt` as one string;
slot encoding tokenizes the words of `annot_utt` (`is_split_into_words`) and labels the first
sub-token of each word (other sub-tokens and special tokens get -100, ignored by the loss).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

from xsweep.data.massive import MassiveExample, locale_file, parse_annot_utt, read_massive
from xsweep.digest import file_sha256
from xsweep.errors import XsweepError
from xsweep.paths import cache_dir

ENCODE_VERSION = 1
IGNORE = -100
"""Label of the tokens the slot loss skips (cross_entropy's ignore_index): all but each word's first."""
_DONE = "xsweep-complete.json"


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


def cache_key(data_file: Path, tokenizer_fp: str, max_seq_len: int, intents: Sequence[str],
              slots: Sequence[str] | None) -> str:
    """Name of the cache entry for one locale file under one encoding."""
    parts = {"file": file_sha256(data_file), "tokenizer": tokenizer_fp, "max_seq_len": max_seq_len,
             "intents": list(intents), "slots": None if slots is None else list(slots),
             "version": ENCODE_VERSION}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]


def _encode_rows(rows: list[MassiveExample], tokenizer: Any, max_seq_len: int,
                 intents: Sequence[str], slots: Sequence[str] | None, where: str) -> dict:
    intent_index = {name: i for i, name in enumerate(intents)}
    columns: dict[str, list] = {
        "id": [r.id for r in rows], "locale": [r.locale for r in rows],
        "partition": [r.partition for r in rows],
        # -1: an intent the label map does not know (scored as wrong, never as another class).
        "intent": [intent_index.get(r.intent, -1) for r in rows],
    }
    if slots is None:
        enc = tokenizer([r.utt for r in rows], truncation=True, max_length=max_seq_len)
        columns["input_ids"] = enc["input_ids"]
        return columns
    if not getattr(tokenizer, "is_fast", False):
        raise XsweepError("slot encoding needs a fast tokenizer (word_ids)",
                          fix="load the tokenizer with use_fast=True")
    slot_index = {name: i for i, name in enumerate(slots)}
    words_per_row, labels_per_row = [], []
    for r in rows:
        if r.annot_utt is None:
            raise XsweepError(f"row {r.id} has no annot_utt; slots cannot be encoded", where=where,
                              fix="use the official files with annot_utt, or encode intents only")
        words, labels = parse_annot_utt(r.annot_utt, r.locale)
        unknown = [lab for lab in labels if lab not in slot_index]
        if unknown:
            raise XsweepError(f"slot label {unknown[0]!r} of row {r.id} is not in the label map",
                              where=where, fix="build the slot list from all locales' data")
        words_per_row.append(words)
        labels_per_row.append([slot_index[lab] for lab in labels])
    enc = tokenizer(words_per_row, is_split_into_words=True, truncation=True,
                    max_length=max_seq_len)
    token_labels = [first_subtoken_labels(enc.word_ids(i), labels) for i, labels in enumerate(labels_per_row)]
    columns["input_ids"] = enc["input_ids"]
    columns["slot_labels"] = token_labels
    return columns


def encode_massive(data_dir: Path, locale: str, tokenizer: Any, max_seq_len: int,
                   intents: Sequence[str], *, slots: Sequence[str] | None = None,
                   cache_root: Path | None = None):
    """All rows of one locale, tokenized, as a `datasets.Dataset` (cached on disk).

    Columns: id, locale, partition, intent (index into `intents`, -1 if unknown), input_ids, and
    with `slots` (the `Other` label included, in a fixed order) slot_labels aligned to input_ids.
    """
    import datasets

    path = locale_file(Path(data_dir), locale)
    if max_seq_len < 8:
        raise XsweepError(f"max_seq_len {max_seq_len} is too short", fix="use e.g. 64 or 128")
    root = Path(cache_root) if cache_root is not None else cache_dir() / "encoded"
    entry = root / cache_key(path, tokenizer_fingerprint(tokenizer), max_seq_len, intents, slots)
    if (entry / _DONE).is_file():
        return datasets.load_from_disk(str(entry))
    rows = read_massive(path.parent, locale)
    ds = datasets.Dataset.from_dict(_encode_rows(rows, tokenizer, max_seq_len, intents, slots,
                                                 str(path)))
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=root))
    quiet = not datasets.are_progress_bars_disabled()
    try:
        if quiet:  # a progress bar per locale and trial is noise in sweep logs
            datasets.disable_progress_bars()
        ds.save_to_disk(str(tmp))
        (tmp / _DONE).write_text(json.dumps({"file": str(path), "locale": locale,
                                             "rows": len(rows)}) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, entry)
        except OSError:
            if not (entry / _DONE).is_file():  # not another process that finished first
                raise
    finally:
        if quiet:
            datasets.enable_progress_bars()
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(entry))


def partition(ds, name: str):
    """The rows of one partition; an empty one is an error (never a silent zero score)."""
    indices = [i for i, p in enumerate(ds["partition"]) if p == name]
    if not indices:
        raise XsweepError(f"partition {name!r} is empty", fix="check the data files")
    return ds.select(indices)


class NliPairs(Sequence):
    """Every (example, candidate) pair of an NLI evaluation, tokenized only when indexed.

    N examples x C candidate hypotheses would be N*C tokenized rows (2,974 x 60 for MASSIVE
    test); the parts are tokenized once and joined on access. Pair k is example k // C with
    candidate k % C. The premise is truncated so that the pair fits `max_seq_len`.
    """

    def __init__(self, premises: Sequence[str], hypotheses: Sequence[str], tokenizer: Any,
                 max_seq_len: int):
        if not premises or not hypotheses:
            raise XsweepError("NLI pairs need at least one premise and one hypothesis",
                              fix="check the evaluation split and the candidate list")
        self._max = max_seq_len
        self._premises = tokenizer(list(premises), add_special_tokens=False)["input_ids"]
        self._hypotheses = tokenizer(list(hypotheses), add_special_tokens=False)["input_ids"]
        self._template = _pair_template(tokenizer)
        self._special = sum(len(part) for part in self._template)
        longest = max(len(h) for h in self._hypotheses)
        if longest + self._special >= max_seq_len:
            raise XsweepError(f"a hypothesis of {longest} tokens leaves no room for the premise "
                              f"within max_seq_len={max_seq_len}", fix="raise max_seq_len")

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
