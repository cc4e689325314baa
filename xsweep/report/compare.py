"""Comparison of two groups (for example PT against APT): per-language differences B - A.

A side given as a run directory is summarised from its trial records; a group inside it is
picked by key, key prefix, exact name, or one `/`-separated part of its name (`apt`), and an
ambiguous or unknown choice is an error that lists the groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xsweep.atomic import write_text
from xsweep.errors import XsweepError
from xsweep.record import read_records
from xsweep.report.render import Cell, Row, Section, Table, to_csv, to_latex, to_markdown
from xsweep.selection import GroupSummary, summarise
from xsweep.report.tables import AVG_ROW, avg_cell, language_cell, pct, row_locales


@dataclass
class LanguageDiff:
    locale: str
    a: float | None
    b: float | None

    @property
    def diff(self) -> float | None:
        """B - A; None when either side lacks the language."""
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class Comparison:
    a: GroupSummary
    b: GroupSummary
    label_a: str
    label_b: str
    languages: list[LanguageDiff]
    """Per language, training locale first."""
    avg: LanguageDiff
    """The AVG row (means over seeds of the seeds' language averages)."""

    @property
    def wins(self) -> tuple[int, int]:
        """(languages where B is better, languages compared)."""
        diffs = [d.diff for d in self.languages if d.diff is not None]
        return sum(1 for d in diffs if d > 0), len(diffs)


def compare_runs(run_a: Path | list[GroupSummary], run_b: Path | list[GroupSummary], *,
                 group_a: str | None = None, group_b: str | None = None,
                 label_a: str | None = None, label_b: str | None = None) -> Comparison:
    """Compare one group of `run_a` with one of `run_b` (the same run may be given twice)."""
    a = pick_group(_summaries(run_a), group_a, side="A")
    b = pick_group(_summaries(run_b), group_b, side="B")
    return compare_summaries(a, b, label_a=label_a, label_b=label_b)


def compare_summaries(a: GroupSummary, b: GroupSummary, *, label_a: str | None = None,
                      label_b: str | None = None) -> Comparison:
    languages = [LanguageDiff(loc, _mean(a, loc), _mean(b, loc)) for loc in row_locales([a, b])]
    return Comparison(a=a, b=b, label_a=label_a or a.group_name, label_b=label_b or b.group_name,
                      languages=languages, avg=LanguageDiff(AVG_ROW, a.avg, b.avg))


def _mean(summary: GroupSummary, locale: str) -> float | None:
    score = summary.per_language.get(locale)
    return None if score is None else score.mean


def _summaries(run: Path | list[GroupSummary]) -> list[GroupSummary]:
    if isinstance(run, list):
        return run
    records = read_records(Path(run))
    if not records:
        raise XsweepError(f"no trial records under {str(Path(run) / 'trials')!r}", where=str(run),
                          fix="pass a run directory written by `xsweep run`")
    return summarise(records)


def pick_group(summaries: list[GroupSummary], choice: str | None, *, side: str) -> GroupSummary:
    listing = "; ".join(f"{s.group_key} {s.group_name}" for s in summaries)
    if choice is None:
        if len(summaries) == 1:
            return summaries[0]
        raise XsweepError(f"run {side} holds {len(summaries)} groups; which one?", where=f"group {side}",
                          fix=f"name one by key, key prefix or name part: {listing}")
    for match in (lambda s: s.group_key == choice, lambda s: s.group_key.startswith(choice),
                  lambda s: s.group_name == choice, lambda s: choice in s.group_name.split("/")):
        found = [s for s in summaries if match(s)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise XsweepError(f"group {choice!r} matches {len(found)} groups", where=f"group {side}",
                              fix=f"name one by key: {'; '.join(f'{s.group_key} {s.group_name}' for s in found)}")
    raise XsweepError(f"no group matches {choice!r}", where=f"group {side}", fix=f"groups: {listing}")


def signed_pct(value: float | None) -> str:
    return "missing" if value is None else f"{100 * value:+.1f}"


def comparison_table(c: Comparison) -> Table:
    rows = [Row(d.locale, [language_cell(c.a.per_language.get(d.locale)),
                           language_cell(c.b.per_language.get(d.locale)),
                           Cell(d.diff, signed_pct(d.diff))]) for d in c.languages]
    rows.append(Row(AVG_ROW, [avg_cell(c.a), avg_cell(c.b), Cell(c.avg.diff, signed_pct(c.avg.diff))]))
    better, compared = c.wins
    notes = [f"A = {c.label_a} (lr {_lr(c.a)}), B = {c.label_b} (lr {_lr(c.b)})",
             f"B is better on {better} of {compared} languages; AVG {pct(c.a.avg)} -> {pct(c.b.avg)}"]
    if c.a.partial or c.b.partial:
        notes.append("partial results on at least one side")
    return Table(title="Comparison B - A", header=["locale", "A", "B", "B - A"],
                 sections=[Section(None, rows)], bold=None, notes=notes)


def _lr(s: GroupSummary) -> str:
    return "none" if s.chosen_lr is None else f"{s.chosen_lr:g}"


def write_comparison(c: Comparison, out_dir: Path, name: str = "comparison") -> dict[str, Path]:
    """Write `<name>.md`, `.csv` and `.tex` into `out_dir`; return extension -> path."""
    table = comparison_table(c)
    paths = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        paths[ext] = Path(out_dir) / f"{name}.{ext}"
        write_text(paths[ext], render(table))
    return paths
