"""Tatoeba retrieval sets in the LASER/XTREME layout.

`tatoeba.<iso3>-eng.<iso3>` and `tatoeba.<iso3>-eng.eng`: line i of one is the translation of
line i of the other. Evaluation embeds both sides and counts how often the nearest neighbour (by
cosine) of a sentence is its own translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xsweep.errors import XsweepError
from xsweep.languages import check_tatoeba_code, locale_for_tatoeba

_GET = "run `xsweep data download tatoeba`, or point at a folder holding tatoeba.<iso3>-eng.* files"


@dataclass(frozen=True)
class TatoebaSet:
    """Aligned sentences of one language and their English translations."""

    iso3: str
    locale: str | None
    """MASSIVE locale the language is reported under (None if not in MASSIVE)."""
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


def read_tatoeba(data_dir: Path, iso3: str) -> TatoebaSet:
    """The aligned pair of files for `iso3`; unequal line counts or an empty set are errors."""
    check_tatoeba_code(iso3)
    folder = tatoeba_folder(data_dir)
    src, eng = folder / f"tatoeba.{iso3}-eng.{iso3}", folder / f"tatoeba.{iso3}-eng.eng"
    if not (src.is_file() and eng.is_file()):
        raise XsweepError(f"no Tatoeba files for {iso3}", where=str(folder),
                          fix=f"languages present: {', '.join(available_tatoeba(folder))}; {_GET}")
    sentences = src.read_text(encoding="utf-8").splitlines()
    english = eng.read_text(encoding="utf-8").splitlines()
    if len(sentences) != len(english):
        raise XsweepError(f"line counts differ: {len(sentences)} vs {len(english)}",
                          where=f"{src} / {eng}", fix="re-download; the files must be aligned")
    if not sentences:
        raise XsweepError("empty Tatoeba set", where=str(src), fix="re-download the files")
    return TatoebaSet(iso3, locale_for_tatoeba(iso3), sentences, english)
