"""MASSIVE 1.1 read from its official layout, validated line by line.

The official tarball unpacks to `1.1/data/<locale>.jsonl`, one file per locale holding every
partition. We also read `<locale>.jsonl.gz` and the tarball itself (members are streamed, never
unpacked), and rows without `annot_utt` (intent-only copies). Every problem names the file and
line, because a sweep that silently skips a bad row reports a score on different data.
"""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from xsweep.data.textio import iter_binary_lines, iter_lines
from xsweep.errors import XsweepError
from xsweep.languages import CHARACTER_SPLIT_LOCALES, check_locale

PARTITIONS = ("train", "dev", "test")
OTHER = "Other"  # MASSIVE's label for words outside any slot.
_GET_DATA = "run `xsweep data download massive` or point data_dir at a folder holding 1.1/data/"
_TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class MassiveExample:
    """One MASSIVE row. `annot_utt` is None for intent-only copies of the data."""

    id: str
    locale: str
    partition: str
    scenario: str
    intent: str
    utt: str
    annot_utt: str | None
    where: str = field(default="", compare=False, repr=False)
    """`file:line` the row was read from (for errors found after reading); "" when not from a file."""


def _is_tarball(path: Path) -> bool:
    return path.is_file() and path.name.endswith(_TARBALL_SUFFIXES)


def _candidate_dirs(data_dir: Path) -> list[Path]:
    # Accept the folder of locale files itself, the unpacked archive root (holding 1.1/data/), or
    # a data root holding massive/1.1/data/ (what write_demo_data and the downloader produce).
    return [data_dir, data_dir / "1.1" / "data", data_dir / "massive" / "1.1" / "data"]


def available_locales(data_dir: Path) -> list[str]:
    """Locales with a `.jsonl` or `.jsonl.gz` file under `data_dir` (any accepted layout)."""
    data_dir = Path(data_dir)
    if _is_tarball(data_dir):
        return sorted(_tar_members(data_dir))
    found: set[str] = set()
    for folder in _candidate_dirs(data_dir):
        if folder.is_dir():
            for suffix in (".jsonl", ".jsonl.gz"):
                found.update(p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}"))
    return sorted(found)


def locale_file(data_dir: Path, locale: str) -> Path:
    """Path of the file holding `locale`: `<dir>/<locale>.jsonl` or `.jsonl.gz`.

    `data_dir` may be that folder, or one holding `1.1/data/` or `massive/1.1/data/`. A missing
    locale raises an error naming the locale, the folders searched and the locales present.
    """
    data_dir = Path(data_dir)
    check_locale(locale)
    if _is_tarball(data_dir):
        raise XsweepError(f"{data_dir} is an archive; read it with read_massive()",
                          fix="pass the archive to read_massive, or unpack it")
    searched = _candidate_dirs(data_dir)
    for folder in searched:
        for suffix in (".jsonl", ".jsonl.gz"):
            path = folder / f"{locale}{suffix}"
            if path.is_file():
                return path
    present = available_locales(data_dir)
    raise XsweepError(
        f"no MASSIVE file for locale {locale}",
        where=" or ".join(str(p) for p in searched),
        fix=(f"locales present there: {', '.join(present) if present else 'none'}; "
             f"{_GET_DATA}"),
    )


def _tar_members(tar_path: Path) -> dict[str, str]:
    """locale -> member name of every `.../data/<locale>.jsonl` inside a MASSIVE tarball."""
    try:
        with tarfile.open(tar_path) as tar:
            out = {}
            for member in tar.getmembers():
                name = member.name
                if member.isfile() and name.endswith(".jsonl") and "/data/" in f"/{name}":
                    out[name.rsplit("/", 1)[-1][: -len(".jsonl")]] = name
            return out
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise XsweepError(f"cannot read the archive: it is truncated or corrupt ({exc})",
                          where=str(tar_path), fix="re-download the archive") from None


def _iter_lines(data_dir: Path, locale: str) -> tuple[str, Iterator[tuple[int, str]]]:
    """(name for messages, text lines) of one locale from a folder, a .gz or a tarball."""
    if _is_tarball(data_dir):
        members = _tar_members(data_dir)
        if locale not in members:
            raise XsweepError(
                f"no MASSIVE file for locale {locale} in the archive", where=str(data_dir),
                fix=f"locales present: {', '.join(sorted(members)) or 'none'}; {_GET_DATA}")
        name = members[locale]

        def lines() -> Iterator[tuple[int, str]]:
            try:
                with tarfile.open(data_dir) as tar:
                    raw = tar.extractfile(name)
                    assert raw is not None  # isfile() was checked when listing members
                    yield from iter_binary_lines(raw, f"{data_dir}!{name}")
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise XsweepError(f"cannot read the archive: it is truncated or corrupt ({exc})",
                                  where=str(data_dir), fix="re-download the archive") from None

        return f"{data_dir}!{name}", lines()
    return str(locale_file(data_dir, locale)), iter_lines(locale_file(data_dir, locale))


_STR_FIELDS = ("id", "locale", "partition", "scenario", "intent", "utt")


def _parse_row(line: str, where: str, locale: str) -> MassiveExample:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise XsweepError(f"malformed JSON ({e.msg} at column {e.colno})", where=where,
                          fix="re-download the file; it may be truncated or edited") from None
    if not isinstance(row, dict):
        raise XsweepError(f"expected a JSON object, got {type(row).__name__}", where=where,
                          fix="each line must be one MASSIVE row")
    for name in _STR_FIELDS:
        if name not in row:
            raise XsweepError(f"missing field {name!r}", where=where,
                              fix=f"every MASSIVE row needs the fields {', '.join(_STR_FIELDS)}")
        if not isinstance(row[name], str):
            raise XsweepError(f"field {name!r} must be a string, got "
                              f"{type(row[name]).__name__} {row[name]!r}", where=where,
                              fix="re-download the file; the official rows hold strings")
    annot = row.get("annot_utt")
    if annot is not None and not isinstance(annot, str):
        raise XsweepError(f"field 'annot_utt' must be a string, got {type(annot).__name__}",
                          where=where, fix="re-download the file")
    if row["partition"] not in PARTITIONS:
        raise XsweepError(f"unknown partition {row['partition']!r}", where=where,
                          fix=f"partition must be one of {', '.join(PARTITIONS)}")
    if row["locale"] != locale:
        raise XsweepError(f"row has locale {row['locale']!r} in the file for {locale}",
                          where=where, fix="the file name and its rows must name the same locale")
    return MassiveExample(id=row["id"], locale=row["locale"], partition=row["partition"],
                          scenario=row["scenario"], intent=row["intent"], utt=row["utt"],
                          annot_utt=annot, where=where)


def read_massive(data_dir: Path, locale: str,
                 partitions: Iterable[str] | None = None) -> list[MassiveExample]:
    """All rows of `locale` (optionally only `partitions`), in file order.

    `data_dir`: a folder in any layout `locale_file` accepts, or the official `.tar.gz`.
    Raises XsweepError on malformed lines, missing or wrongly typed fields, and when a requested
    partition (or the whole file) is empty: an empty split must fail loudly, not score zero.
    """
    check_locale(locale)
    wanted = None if partitions is None else list(partitions)
    if wanted is not None:
        if not wanted:
            raise XsweepError("no partition requested", fix=f"ask for some of {PARTITIONS}")
        for p in wanted:
            if p not in PARTITIONS:
                raise XsweepError(f"unknown partition {p!r}", fix=f"use some of {PARTITIONS}")
    name, lines = _iter_lines(Path(data_dir), locale)
    out: list[MassiveExample] = []
    counts = dict.fromkeys(PARTITIONS, 0)
    for lineno, line in lines:
        if not line.strip():
            continue  # a final newline (or its absence, as in en-US.jsonl) is not data
        ex = _parse_row(line, f"{name}:{lineno}", locale)
        counts[ex.partition] += 1
        if wanted is None or ex.partition in wanted:
            out.append(ex)
    for p in wanted or [None]:
        if (p is None and not out) or (p is not None and counts[p] == 0):
            raise XsweepError(f"{'file' if p is None else f'partition {p!r}'} is empty",
                              where=name, fix="re-download the file; an empty split cannot be "
                              "trained or scored")
    return out


def intent_labels(examples: Iterable[MassiveExample]) -> list[str]:
    """Sorted intent names: a fixed label order, never set order."""
    return sorted({ex.intent for ex in examples})


def slot_labels(examples: Iterable[MassiveExample]) -> list[str]:
    """Sorted slot names found in the examples' `annot_utt` (without `Other`)."""
    names: set[str] = set()
    for ex in examples:
        if ex.annot_utt is not None:
            names.update(m.group(1) for m in _SLOT.finditer(ex.annot_utt))
    return sorted(names)


_SLOT = re.compile(r"\[\s*([^\[\]:\s]+)\s*:\s*([^\[\]]*?)\s*\]")
_ASCII_RUN = re.compile(r"[\x21-\x7e]+|\S")


def split_words(text: str, locale: str) -> list[str]:
    """MASSIVE's word split: whitespace, or characters for ja-JP/zh-CN/zh-TW (ASCII runs whole)."""
    if locale in CHARACTER_SPLIT_LOCALES:
        return _ASCII_RUN.findall(text)
    return text.split()


def parse_annot_utt(annot_utt: str, locale: str, where: str | None = None) -> tuple[list[str], list[str]]:
    """Words and one label per word from `[slot : words]` markup; `Other` outside slots.

    Tolerates irregular spacing around `[`, `:` and `]`; the slot name ends at the first `:` so
    values may contain `:` ("[time : 5:30 pm]"). Labels are per word, not BIO: span F1 merges
    adjacent equal labels. Stray brackets are errors, since they mean the markup was damaged;
    `where` (`file:line`) names the row in them.
    """
    words: list[str] = []
    labels: list[str] = []
    pos = 0

    def outside(text: str) -> None:
        if "[" in text or "]" in text:
            raise XsweepError(f"unbalanced bracket in annot_utt {annot_utt!r}", where=where,
                              fix="slots must be written [slot_name : words]; correct or re-download the row")
        chunk = split_words(text, locale)
        words.extend(chunk)
        labels.extend([OTHER] * len(chunk))

    for m in _SLOT.finditer(annot_utt):
        outside(annot_utt[pos:m.start()])
        value = split_words(m.group(2), locale)
        if not value:
            raise XsweepError(f"empty slot {m.group(1)!r} in annot_utt {annot_utt!r}", where=where,
                              fix="every [slot_name : words] needs words")
        words.extend(value)
        labels.extend([m.group(1)] * len(value))
        pos = m.end()
    outside(annot_utt[pos:])
    return words, labels
