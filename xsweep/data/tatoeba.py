"""Tatoeba retrieval sets in the LASER/XTREME layout.

`tatoeba.<iso3>-eng.<iso3>` and `tatoeba.<iso3>-eng.eng`: line i of one is the translation of
line i of the other. Evaluation embeds both sides and counts how often the nearest neighbour (by
cosine) of a sentence is its own translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import re

from xsweep.data.textio import read_lines
from xsweep.errors import XsweepError
from xsweep.languages import TATOEBA_CODES

_GET = "run `xsweep data download tatoeba`, or point at a folder holding tatoeba.<iso3>-eng.* files"


@dataclass(frozen=True)
class TatoebaSet:
    """Aligned sentences of one language and their English translations."""

    iso3: str
    locale: str | None
    """MASSIVE locale the language is reported under (None if not in MASSIVE, or not one of
    XTREME's 36: the full download has 112 languages, each scored under its own code)."""
    sentences: list[str]
    english: list[str]


def tatoeba_folder(data_dir: Path) -> Path:
    """The folder holding the files: `data_dir`, its `v1/`, or its `tatoeba/v1/`."""
    data_dir = Path(data_dir)
    for folder in (data_dir, data_dir / "v1", data_dir / "tatoeba" / "v1"):
        if any(folder.glob("tatoeba.*-eng.eng")):
            return folder
    raise XsweepError("no tatoeba.<iso3>-eng.eng files", where=str(data_dir), fix=_GET)


def holds_tatoeba(data_dir: Path) -> bool:
    """Whether `data_dir` (or its `v1/`, or `tatoeba/v1/`) holds `tatoeba.<iso3>-eng.eng` files."""
    try:
        tatoeba_folder(data_dir)
    except XsweepError:
        return False
    return True


def available_tatoeba(data_dir: Path) -> list[str]:
    """ISO-639-3 codes with both files present, sorted."""
    folder = tatoeba_folder(data_dir)
    codes = [p.name[len("tatoeba."):-len("-eng.eng")] for p in folder.glob("tatoeba.*-eng.eng")]
    return sorted(c for c in codes if (folder / f"tatoeba.{c}-eng.{c}").is_file())


_CODE = re.compile(r"[a-z]{2,3}")


def read_tatoeba(data_dir: Path, iso3: str) -> TatoebaSet:
    """The aligned pair of files for `iso3` (any code a folder holds, XTREME's 36 or not);
    unequal line counts, a blank line on one side, bad bytes or an empty set are errors."""
    folder = tatoeba_folder(data_dir)
    if not isinstance(iso3, str) or not _CODE.fullmatch(iso3):
        raise XsweepError(f"{iso3!r} is not a Tatoeba language code", where=str(folder),
                          fix=f"use an ISO 639-3 code as in tatoeba.<iso3>-eng.<iso3>; present: "
                              f"{', '.join(available_tatoeba(folder))}")
    src, eng = folder / f"tatoeba.{iso3}-eng.{iso3}", folder / f"tatoeba.{iso3}-eng.eng"
    if not (src.is_file() and eng.is_file()):
        raise XsweepError(f"no Tatoeba files for {iso3}", where=str(folder),
                          fix=f"languages present: {', '.join(available_tatoeba(folder))}; {_GET}")
    sentences, english = read_lines(src), read_lines(eng)
    if len(sentences) != len(english):
        raise XsweepError(f"line counts differ: {len(sentences)} vs {len(english)}",
                          where=f"{src} / {eng}", fix="re-download; the files must be aligned")
    if not sentences:
        raise XsweepError("empty Tatoeba set", where=str(src), fix="re-download the files")
    for i, (s, e) in enumerate(zip(sentences, english), start=1):
        if not s.strip() or not e.strip():
            blank = src if not s.strip() else eng
            raise XsweepError("blank line on one side of a sentence pair", where=f"{blank}:{i}",
                              fix="the two files are no longer aligned (a line lost or added near here); "
                                  "re-download them")
    info = TATOEBA_CODES.get(iso3)
    return TatoebaSet(iso3, info[1] if info else None, sentences, english)
