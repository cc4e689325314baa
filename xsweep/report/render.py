"""A small table model and its renderers: Markdown, CSV and LaTeX, with the best value in bold.

Every report table (results, paper layouts, comparisons) is built as a `Table` and rendered
here, so the three formats always agree. A cell keeps its number (for bolding and sorting) apart
from its text; only the `main` part is bolded, as the paper writes "**59.8** (1.6)".
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Literal

Axis = Literal["column", "row"]


@dataclass
class Cell:
    value: float | None = None
    """The number compared when choosing the best (None: not comparable)."""
    main: str = ""
    """Text that is bolded when the cell is the best, e.g. the mean."""
    suffix: str = ""
    """Text after it, never bolded, e.g. " (1.6)" or a "[2/3]" mark."""

    @property
    def text(self) -> str:
        return self.main + self.suffix


@dataclass
class Row:
    label: str
    cells: list[Cell]


@dataclass
class Section:
    """Rows compared with each other (a shot setting in the paper's tables)."""

    title: str | None
    rows: list[Row]


@dataclass
class Table:
    title: str
    header: list[str]
    """Column titles, the row-label column first."""
    sections: list[Section]
    bold: Axis | None = "column"
    """Bold the best value per column within a section, per row, or nothing."""
    notes: list[str] = field(default_factory=list)
    higher_is_better: bool = True
    digits: int = 1
    """Decimals of the displayed numbers; ties are judged on what is displayed."""


def best_cells(table: Table) -> set[tuple[int, int, int]]:
    """(section, row, column) of the best cells; every cell tied with the best is best too.

    Nothing is bold where fewer than two cells compete: a best of one says nothing.
    """
    best: set[tuple[int, int, int]] = set()
    if table.bold is None:
        return best
    sign = 1 if table.higher_is_better else -1
    for s, section in enumerate(table.sections):
        if table.bold == "column":
            width = max((len(r.cells) for r in section.rows), default=0)
            lines = [[(s, r, c) for r in range(len(section.rows)) if c < len(section.rows[r].cells)]
                     for c in range(width)]
        else:
            lines = [[(s, r, c) for c in range(len(row.cells))] for r, row in enumerate(section.rows)]
        for line in lines:
            scored = [(round(sign * v, table.digits + 2), pos) for pos in line
                      if (v := _cell(table, pos).value) is not None]
            if len(scored) < 2:
                continue
            top = max(score for score, _ in scored)
            best.update(pos for score, pos in scored if score == top)
    return best


def _cell(table: Table, pos: tuple[int, int, int]) -> Cell:
    s, r, c = pos
    return table.sections[s].rows[r].cells[c]


def to_markdown(table: Table, *, heading: str = "##") -> str:
    bold = best_cells(table)
    lines = [f"{heading} {table.title}", "", _md_line(table.header),
             "|" + "|".join("---" for _ in table.header) + "|"]
    for s, section in enumerate(table.sections):
        if section.title:
            lines.append(_md_line([f"**{section.title}**"] + [""] * (len(table.header) - 1)))
        for r, row in enumerate(section.rows):
            cells = [f"**{cell.main}**{cell.suffix}" if (s, r, c) in bold else cell.text
                     for c, cell in enumerate(row.cells)]
            lines.append(_md_line([row.label] + cells))
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines) + "\n"


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def to_csv(table: Table) -> str:
    """Plain text cells (no bold); a section title becomes a `section` column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    with_sections = any(section.title for section in table.sections)
    writer.writerow((["section"] if with_sections else []) + table.header)
    for section in table.sections:
        for row in section.rows:
            prefix = [section.title or ""] if with_sections else []
            writer.writerow(prefix + [row.label] + [cell.text for cell in row.cells])
    return buffer.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs `table` environment; section titles span the full width in bold."""
    bold = best_cells(table)
    width = len(table.header)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (width - 1) + "}",
             r"\toprule", " & ".join(latex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    for s, section in enumerate(table.sections):
        if section.title:
            if s:
                lines.append(r"\midrule")
            lines.append(rf"\multicolumn{{{width}}}{{l}}{{\textbf{{{latex_escape(section.title)}}}}} \\")
        for r, row in enumerate(section.rows):
            cells = [(rf"\textbf{{{latex_escape(cell.main)}}}" if (s, r, c) in bold else latex_escape(cell.main))
                     + latex_escape(cell.suffix) for c, cell in enumerate(row.cells)]
            lines.append(" & ".join([latex_escape(row.label)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(table.title)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"
