"""Intent and slot data in the CoNLL layout of xSID (and the MultiATIS++/SNIPS conversions).

A folder holds one file per language and split, `<lang>.<split>.conll` with split `train`, `valid`
or `test` (`valid` is xsweep's `dev`). Language tags are the data's own (`en`, `de-st`, `gsw`,
`nap`), not MASSIVE locales: the folder says which languages exist. A file is blocks separated by
blank lines; a block opens with comment lines, `# key = value` or `# key: value` (both are written
by files of this family) for `id`, `text`, `text-en` and `intent`, then one token a line:

    index<TAB>token<TAB>intent<TAB>BIO slot

Labels may hold `/` (`weather/find`, `B-weather/attribute`). Rows come out shaped like MASSIVE's
(`id`, `locale`, `partition`, `intent`, `utt`), so few-shot sampling and the intent tasks read them
unchanged, plus the words and their BIO tags for slot filling. Every fault names `file:line`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from xsweep.data.textio import iter_lines
from xsweep.errors import XsweepError

SPLIT_FILES = {"train": "train", "dev": "valid", "test": "test"}
"""xsweep's partition -> the split name in the file names."""
PARTITIONS = tuple(SPLIT_FILES)
_FILE = re.compile(r"(?P<lang>[^.]+)\.(?P<split>train|valid|test)\.conll")
_COMMENT = re.compile(r"#\s*(?P<key>[\w-]+)\s*(?:=|:)\s?(?P<value>.*)")
_TAG = re.compile(r"O|[BI]-\S+")
_FORMAT = ("each token line is index<TAB>token<TAB>intent<TAB>BIO slot, blocks are separated by a "
           "blank line; correct the block or re-export the file")


@dataclass(frozen=True)
class ConllExample:
    """One block: an utterance, its intent, and a BIO slot tag per word."""

    id: str
    locale: str
    """The data's own language tag (`de-st`), from the file name."""
    partition: str
    intent: str
    utt: str
    words: tuple[str, ...]
    tags: tuple[str, ...]
    """BIO tag of every word (`O`, `B-weather/attribute`, ...)."""
    scenario: str = ""
    annot_utt: str | None = None
    where: str = field(default="", compare=False, repr=False)
    """`file:line` of the block's first line."""

    @property
    def slot_labels(self) -> list[str]:
        """The slot name of every word (`O` for none), the BIO prefix dropped."""
        return ["O" if tag == "O" else tag[2:] for tag in self.tags]


def conll_files(data_dir: Path) -> dict[str, dict[str, Path]]:
    """language tag -> {partition: file} of every `<lang>.<split>.conll` in `data_dir`."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise XsweepError("no such folder", where=str(data_dir),
                          fix="point data.path at a folder of <lang>.<split>.conll files")
    out: dict[str, dict[str, Path]] = {}
    names = {v: k for k, v in SPLIT_FILES.items()}
    for path in sorted(data_dir.glob("*.conll")):
        m = _FILE.fullmatch(path.name)
        if m:
            out.setdefault(m["lang"], {})[names[m["split"]]] = path
    if not out:
        raise XsweepError("no <lang>.<split>.conll files (split train, valid or test)", where=str(data_dir),
                          fix="point data.path at a CoNLL intent/slot folder, e.g. xSID's data/xSID-0.x/")
    return out


def conll_languages(data_dir: Path, partition: str = "test") -> list[str]:
    """Language tags with a file of `partition` (test: the languages a sweep can evaluate)."""
    return sorted(lang for lang, files in conll_files(data_dir).items() if partition in files)


def conll_file(data_dir: Path, lang: str, partition: str) -> Path:
    """The file of one language and partition; a missing one names what the folder holds."""
    if partition not in SPLIT_FILES:
        raise XsweepError(f"unknown partition {partition!r}", fix=f"use one of {', '.join(PARTITIONS)}")
    files = conll_files(data_dir)
    if lang not in files or partition not in files[lang]:
        have = conll_languages(data_dir, partition)
        raise XsweepError(f"no {lang}.{SPLIT_FILES[partition]}.conll", where=str(data_dir),
                          fix=f"languages with a {SPLIT_FILES[partition]} file there: {', '.join(have) or 'none'}")
    return files[lang][partition]


def _block(lines: list[tuple[int, str]], name: str, lang: str, partition: str) -> ConllExample:
    first = lines[0][0]
    meta: dict[str, str] = {}
    words: list[str] = []
    tags: list[str] = []
    intents: set[str] = set()
    for lineno, line in lines:
        where = f"{name}:{lineno}"
        if line.startswith("#"):
            m = _COMMENT.fullmatch(line)
            if m:
                meta.setdefault(m["key"].lower(), m["value"].strip())
            continue  # other comments are free text
        cols = line.split("\t")
        if len(cols) < 4:
            raise XsweepError(f"token line has {len(cols)} tab-separated column(s), expected 4", where=where,
                              fix=_FORMAT)
        index, token, intent, tag = cols[0].strip(), cols[1].strip(), cols[2].strip(), cols[3].strip()
        if not index.isdigit():
            raise XsweepError(f"token index {index!r} is not a number", where=where, fix=_FORMAT)
        if not token or any(c.isspace() for c in token):
            raise XsweepError(f"token {token!r} is empty or holds a space", where=where, fix=_FORMAT)
        if not _TAG.fullmatch(tag):
            raise XsweepError(f"slot tag {tag!r} is not BIO (O, B-<slot>, I-<slot>)", where=where, fix=_FORMAT)
        if intent:
            intents.add(intent)
        words.append(token)
        tags.append(tag)
    where = f"{name}:{first}"
    if not words:
        raise XsweepError("block has no token lines", where=where, fix=_FORMAT)
    intent = meta.get("intent") or (intents.pop() if len(intents) == 1 else "")
    if not intent:
        raise XsweepError("block has no intent (no `# intent = ...` and no single intent in the token lines)",
                          where=where, fix=_FORMAT)
    if intents - {intent}:
        raise XsweepError(f"token lines name intent(s) {', '.join(sorted(intents - {intent}))} but the block's is "
                          f"{intent!r}", where=where, fix="one block is one utterance with one intent")
    return ConllExample(id=meta.get("id") or f"{lang}.{SPLIT_FILES[partition]}:{first}", locale=lang,
                        partition=partition, intent=intent, utt=meta.get("text") or " ".join(words),
                        words=tuple(words), tags=tuple(tags), where=where)


def read_conll_file(path: Path, lang: str, partition: str) -> list[ConllExample]:
    """Every block of one file, validated, in file order; an empty file is an error."""
    name = str(path)
    out: list[ConllExample] = []
    block: list[tuple[int, str]] = []
    seen: dict[str, str] = {}
    for lineno, raw in iter_lines(Path(path)):
        line = raw.rstrip("\r\n")
        if line.strip():
            block.append((lineno, line))
            continue
        if block:
            out.append(_block(block, name, lang, partition))
            block = []
    if block:  # a file without a final blank line
        out.append(_block(block, name, lang, partition))
    for row in out:
        if row.id in seen:
            raise XsweepError(f"block id {row.id!r} appears twice (first at {seen[row.id]})", where=row.where,
                              fix="remove the duplicate block; a repeated block doubles its weight in the scores")
        seen[row.id] = row.where
    if not out:
        raise XsweepError("file is empty", where=name, fix="an empty split cannot be trained or scored")
    return out


def read_conll(data_dir: Path, lang: str, partition: str) -> list[ConllExample]:
    """The blocks of one language's `partition` (train, dev = `valid`, test)."""
    return read_conll_file(conll_file(data_dir, lang, partition), lang, partition)


def slot_names(rows: list[ConllExample]) -> list[str]:
    """Sorted slot names of the rows' BIO tags (without `O`)."""
    return sorted({label for row in rows for label in row.slot_labels if label != "O"})
