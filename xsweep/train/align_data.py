"""What alignment pretraining reads: parallel sources, per-step batches, and the retrieval probe.

A source is plain data (it crosses into Ray workers and into the run's JSON): XSGD dialogues, two
line-aligned files, a TSV, or a Tatoeba folder, each optionally cut to a number of pairs. Every
source becomes `AlignedDocument`s (xsweep.data.parallel), and every epoch draws one pair per
document (`epoch_pairs`, fixed by seed and epoch alone). A step's
global batch is a slice of that list; with N workers, worker r trains rows r, r+N, r+2N, ... of it,
so the global batch is the same whatever N is, and the shards of one step are disjoint.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import torch

from xsweep.data.parallel import (AlignedDocument, AlignmentPair, cap_pairs, line_aligned_documents, tatoeba_documents,
                                  tsv_documents, xsgd_documents)
from xsweep.errors import XsweepError
from xsweep.models.pooling import sentence_states, with_prefix

SOURCE_KINDS = ("xsgd", "lines", "tsv", "tatoeba")


@dataclass
class ParallelSource:
    """One body of parallel text for alignment."""

    kind: Literal["xsgd", "lines", "tsv", "tatoeba"]
    """`xsgd`: SGD-layout dialogues with `utterance_<code>` fields (documents are dialogues);
    `lines`: an English file and a target file, line i translating line i; `tsv`: `english<TAB>target`;
    `tatoeba`: a folder of `tatoeba.<iso3>-eng.*` files (documents are single sentences)."""
    path: str
    """xsgd: the data folder (holding train/ dev/ test/, or a folder above one); lines: the English
    file; tsv: the file; tatoeba: the folder."""
    target_path: str | None = None
    """lines only: the target-language file."""
    lang: str | None = None
    """lines and tsv: the target language's code (recorded with every pair)."""
    split: str = "train"
    """xsgd only: the split read."""
    targets: str | list[str] = "all"
    """xsgd: XSGD codes or MASSIVE locales; tatoeba: ISO-639-3 codes or MASSIVE locales; or "all"
    (every language in the files)."""
    lines_per_document: int = 1
    """lines and tsv: consecutive lines grouped into one document, so spans of 1-4 can be drawn."""

    @property
    def corpus(self) -> str:
        """The data's name in records and reports: `xsgd`, `tatoeba` (their folders in the data
        root), or the name of the .tsv or target-language file."""
        return Path(self.target_path if self.kind == "lines" and self.target_path else self.path).name
    max_pairs: int | None = None
    """At most this many aligned segments (turn or sentence pairs) of this source, a fixed sample
    (`cap_pairs`); None: all of them."""


def load_documents(sources: Sequence[ParallelSource | dict]) -> list[AlignedDocument]:
    """All documents of `sources`, in source order; an empty result is an XsweepError."""
    if not sources:
        raise XsweepError("alignment has no parallel data", where="align.sources",
                          fix="give at least one source: xsgd, lines or tsv")
    docs: list[AlignedDocument] = []
    for i, source in enumerate(sources):
        s = source if isinstance(source, ParallelSource) else ParallelSource(**source)
        where = f"align.sources[{i}]"
        if s.kind == "xsgd":
            found = xsgd_documents(Path(s.path), s.split, s.targets)
        elif s.kind == "lines":
            if not s.target_path or not s.lang:
                raise XsweepError("a `lines` source needs target_path and lang", where=where,
                                  fix="give the target-language file and its language code")
            found = line_aligned_documents(Path(s.path), Path(s.target_path), s.lang, s.lines_per_document)
        elif s.kind == "tsv":
            if not s.lang:
                raise XsweepError("a `tsv` source needs lang", where=where, fix="give the target language's code")
            found = tsv_documents(Path(s.path), s.lang, s.lines_per_document)
        elif s.kind == "tatoeba":
            found = tatoeba_documents(Path(s.path), s.targets)
        else:
            raise XsweepError(f"unknown source kind {s.kind!r}", where=where,
                              fix=f"use one of: {', '.join(SOURCE_KINDS)}")
        found = [d for d in found if any(seg.strip() for seg in d.source)]  # blank lines carry nothing to learn
        docs += cap_pairs(found, s.max_pairs)  # after dropping blanks: the bound counts pairs trained on
    if not docs:
        raise XsweepError("the alignment sources hold no documents", where="align.sources",
                          fix="check the paths, split and target languages")
    return docs


@dataclass
class EpochPlan:
    """The steps of one epoch as seen by one worker."""

    steps: int
    global_batch: int
    """Pairs per step over all workers (the last incomplete batch of an epoch is dropped, so
    every step of every worker has the same shape of work and in-batch negatives)."""
    shards: list[list[AlignmentPair]] = field(default_factory=list)
    """This worker's pairs of each step."""


def plan_epoch(pairs: Sequence[AlignmentPair], batch_size: int, rank: int, world_size: int) -> EpochPlan:
    """Cut an epoch's pairs into global batches of `batch_size` and keep worker `rank`'s rows."""
    global_batch = min(batch_size, len(pairs))
    if global_batch < 2 * world_size:
        raise XsweepError(
            f"{len(pairs)} pairs per epoch and batch size {batch_size} leave fewer than 2 pairs per worker "
            f"for {world_size} workers: the contrastive loss needs in-batch negatives",
            where="align.batch_size", fix="use more documents, a larger batch, or fewer workers")
    steps = len(pairs) // global_batch
    shards = [list(pairs[s * global_batch + rank:(s + 1) * global_batch:world_size]) for s in range(steps)]
    return EpochPlan(steps=steps, global_batch=global_batch, shards=shards)


def shard_digest(shards: Sequence[Sequence[AlignmentPair]]) -> str:
    """A short hash of which pairs a worker trained on (documents, languages and spans)."""
    digest = hashlib.sha256()
    for shard in shards:
        for p in shard:
            digest.update(f"{p.doc_id}|{p.lang}|{p.first_segment}|{p.num_segments}\n".encode())
    return digest.hexdigest()[:16]


def encode_pairs(tokenizer, pairs: Sequence[AlignmentPair], max_seq_len: int, text_prefix: str = ""
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokenize x (English) and y (target) of every pair, each after `text_prefix` (`backbone.text_prefix`)
    and each side padded to its own longest row.

    Returns x_ids, x_mask: (B, Tx) and y_ids, y_mask: (B, Ty); row i of y translates row i of x.
    """
    x = tokenizer(with_prefix([p.source for p in pairs], text_prefix), truncation=True, max_length=max_seq_len,
                  padding=True, return_tensors="pt")
    y = tokenizer(with_prefix([p.target for p in pairs], text_prefix), truncation=True, max_length=max_seq_len,
                  padding=True, return_tensors="pt")
    return x["input_ids"], x["attention_mask"], y["input_ids"], y["attention_mask"]


def retrieval_accuracy_between(encoder, prompt, tokenizer, queries: Sequence[str], candidates: Sequence[str],
                               **kwargs) -> float:
    """Tatoeba accuracy: query i's nearest candidate by cosine of sentence vectors (`sentence_states`,
    which `kwargs` go to) must be candidate i."""
    from xsweep.metrics import retrieval_accuracy

    return retrieval_accuracy(sentence_states(encoder, prompt, tokenizer, queries, **kwargs),
                              sentence_states(encoder, prompt, tokenizer, candidates, **kwargs))
