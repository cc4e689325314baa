"""Parallel text for aligned prompts: XSGD dialogues, line-aligned files, TSV; one pair builder.

The paper's alignment step draws a dialogue, takes 1 to 4 random consecutive turns, and joins them
into x (English) and y (the same turns in the target language). Every source becomes a list of
`AlignedDocument`s (segments aligned one to one) so the builder does not care where text comes
from: an XSGD dialogue is a document of turns; a line of a line-aligned corpus (Tatoeba, OPUS) is
a one-segment document unless `lines_per_document` groups consecutive lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from xsweep.data.sgd import read_dialogues_and_files, split_dir
from xsweep.data.textio import read_lines
from xsweep.errors import XsweepError
from xsweep.languages import XSGD_CODES, resolve_tatoeba_targets, resolve_xsgd_targets


@dataclass(frozen=True)
class AlignedDocument:
    """Segments of one document in English (`source`) and in `lang` (`target`), aligned 1:1."""

    doc_id: str
    lang: str
    source: tuple[str, ...]
    target: tuple[str, ...]


@dataclass(frozen=True)
class AlignmentPair:
    """One training pair: x (English) and y (target language), and where it came from."""

    source: str
    target: str
    lang: str
    doc_id: str
    first_segment: int
    num_segments: int


def xsgd_languages(dialogues: Sequence[dict]) -> list[str]:
    """XSGD codes present on the first turn (`utterance_<code>` fields), sorted."""
    if not dialogues or not dialogues[0]["turns"]:
        return []
    turn = dialogues[0]["turns"][0]
    return sorted(k[len("utterance_"):] for k in turn if k.startswith("utterance_"))


def xsgd_documents(data_dir: Path, split: str = "train",
                   targets: str | Iterable[str] = "all") -> list[AlignedDocument]:
    """One document per (dialogue, target language) of an XSGD split.

    `targets`: one XSGD code or MASSIVE locale, a list of them, or "all" (every language present
    in the files). A requested language missing from any turn is an error naming the turn.
    """
    folder = split_dir(data_dir, split)
    english, files = read_dialogues_and_files(folder)
    if targets == "all":
        codes = [c for c in xsgd_languages(english) if c in XSGD_CODES]
        if not codes:
            raise XsweepError("no utterance_<code> fields: these are SGD, not XSGD, files",
                              where=str(folder), fix="get XSGD (see xsweep.data.download)")
    else:
        codes = resolve_xsgd_targets(targets)
    present = ", ".join(xsgd_languages(english)) or "none"
    docs = []
    for code in codes:
        key = f"utterance_{code}"
        for d in english:
            missing = [i for i, t in enumerate(d["turns"]) if key not in t]
            if missing:
                raise XsweepError(f"no {key} in turn {missing[0]}", where=f"{files[d['dialogue_id']]}: dialogue "
                                  f"{d['dialogue_id']}", fix=f"languages present: {present}; "
                                  "choose among them or use complete XSGD files")
            docs.append(AlignedDocument(
                doc_id=d["dialogue_id"], lang=code,
                source=tuple(t["utterance"] for t in d["turns"]),
                target=tuple(t[key] for t in d["turns"])))
    return docs


def _documents_from_pairs(pairs: list[tuple[str, str]], lang: str, name: str,
                          lines_per_document: int, where: str | None = None) -> list[AlignedDocument]:
    """`name` prefixes the document ids; `where` (the file's path) names it in errors."""
    if lines_per_document < 1:
        raise XsweepError(f"lines_per_document must be >= 1, got {lines_per_document}",
                          fix="use 1 for independent sentences")
    if not pairs:
        raise XsweepError("no parallel lines", where=where or name, fix="check the files are not empty")
    docs = []
    for start in range(0, len(pairs), lines_per_document):
        chunk = pairs[start:start + lines_per_document]
        docs.append(AlignedDocument(f"{name}:{start + 1}", lang, tuple(s for s, _ in chunk),
                                    tuple(t for _, t in chunk)))
    return docs


def line_aligned_documents(source_file: Path, target_file: Path, lang: str,
                           lines_per_document: int = 1) -> list[AlignedDocument]:
    """Documents from two line-aligned files (line i of one translates line i of the other)."""
    src, tgt = read_lines(Path(source_file)), read_lines(Path(target_file))
    if len(src) != len(tgt):
        raise XsweepError(f"line counts differ: {len(src)} vs {len(tgt)}",
                          where=f"{source_file} / {target_file}",
                          fix="the files must be line-aligned translations of each other")
    for i, (s, t) in enumerate(zip(src, tgt), start=1):
        if bool(s.strip()) != bool(t.strip()):
            raise XsweepError("one side of a pair is empty", where=f"{source_file}:{i}",
                              fix="the files are not aligned; check for a missing line")
    return _documents_from_pairs(list(zip(src, tgt)), lang, Path(target_file).name,
                                 lines_per_document, str(target_file))


def tsv_documents(path: Path, lang: str, lines_per_document: int = 1) -> list[AlignedDocument]:
    """Documents from a TSV of `english<TAB>target` lines."""
    pairs = []
    for i, line in enumerate(read_lines(Path(path)), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 2:
            raise XsweepError(f"expected 2 tab-separated columns, got {len(cols)}",
                              where=f"{path}:{i}", fix="write one `english<TAB>target` per line")
        pairs.append((cols[0], cols[1]))
    return _documents_from_pairs(pairs, lang, Path(path).name, lines_per_document, str(path))


def tatoeba_documents(data_dir: Path, targets: str | Iterable[str] = "all") -> list[AlignedDocument]:
    """One-sentence documents from a Tatoeba folder (`tatoeba.<iso3>-eng.*`, as XTREME has it).

    Tatoeba's sentences are short and not from conversations: the stand-in this project has for the
    paper's non-conversational (OPUS) alignment data. `targets`: ISO-639-3 codes or MASSIVE locales,
    or "all" (every language in the folder, XTREME's 36 or any other `xxx-eng` pair).
    """
    from xsweep.data.tatoeba import available_tatoeba, read_tatoeba

    docs = []
    for iso3 in resolve_tatoeba_targets(targets, available_tatoeba(data_dir)):
        pairs = read_tatoeba(data_dir, iso3)  # a language missing from the folder is an error naming those present
        docs += _documents_from_pairs(list(zip(pairs.english, pairs.sentences)), iso3, f"tatoeba.{iso3}", 1)
    if not docs:
        raise XsweepError("no Tatoeba language in the folder", where=str(data_dir),
                          fix="run `xsweep data download tatoeba`, or point align.data at a folder of "
                              "tatoeba.<iso3>-eng.* files")
    return docs


def cap_pairs(docs: Sequence[AlignedDocument], max_pairs: int | None) -> list[AlignedDocument]:
    """At most `max_pairs` aligned segments (sentence or turn pairs) of `docs`; None keeps them all.

    Whole documents are kept in an order fixed by nothing but this function (so every seed and every
    bound sees the same sample, a smaller bound a part of a larger one's), the last one cut short to
    meet the bound exactly; the kept documents stay in their original order.
    """
    if max_pairs is None or sum(len(d.source) for d in docs) <= max_pairs:
        return list(docs)
    if max_pairs < 1:
        raise XsweepError(f"max_pairs must be at least 1, got {max_pairs}", where="align.max_pairs",
                          fix="use a positive number of pairs, or null for all of them")
    order = list(range(len(docs)))
    random.Random("xsweep:max_pairs").shuffle(order)
    kept: dict[int, AlignedDocument] = {}
    room = max_pairs
    for i in order:
        if room == 0:
            break
        doc = docs[i]
        if len(doc.source) > room:
            doc = AlignedDocument(doc.doc_id, doc.lang, doc.source[:room], doc.target[:room])
        kept[i] = doc
        room -= len(doc.source)
    return [kept[i] for i in sorted(kept)]


def draw_pair(doc: AlignedDocument, rng: random.Random, max_segments: int = 4) -> AlignmentPair:
    """1 to `max_segments` consecutive segments of `doc`, joined with spaces, in both languages."""
    n = rng.randint(1, min(max_segments, len(doc.source)))
    start = rng.randrange(len(doc.source) - n + 1)
    return AlignmentPair(source=" ".join(doc.source[start:start + n]),
                         target=" ".join(doc.target[start:start + n]), lang=doc.lang,
                         doc_id=doc.doc_id, first_segment=start, num_segments=n)


def epoch_pairs(docs: Sequence[AlignedDocument], seed: int, epoch: int,
                max_segments: int = 4) -> list[AlignmentPair]:
    """One pair per document, in a shuffled order; fixed by (seed, epoch) alone.

    Fresh spans every epoch (the paper draws them at each step) while a resumed run sees the
    same pairs as the original.
    """
    if not docs:
        raise XsweepError("no parallel documents", fix="check the alignment data and languages")
    if max_segments < 1:
        raise XsweepError(f"max_segments must be >= 1, got {max_segments}", fix="the paper uses 4")
    rng = random.Random(f"align:{seed}:{epoch}")
    order = list(range(len(docs)))
    rng.shuffle(order)
    return [draw_pair(docs[i], rng, max_segments) for i in order]
