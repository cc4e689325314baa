"""The paper's table layouts, declared as "sections by one attribute, rows by another".

- methods table (Tables 3-5, 7): sections by shots, rows by method, columns en, zh-CN, ja, ko, AVG;
- prompt-length table: sections by method, rows by prompt length, same columns;
- full per-language table: rows by language, one column per group.

Attributes that differ between groups but are neither the section nor the row axis (classifier,
backbone, ...) are added to the section titles, so groups never collide in one cell. The best
value per column within a section is in bold, as in the paper.
"""

from __future__ import annotations

from pathlib import Path

from xsweep.atomic import write_text
from xsweep.report.attrs import describe, group_attrs, label, short_locale, sort_key, varying
from xsweep.report.render import Row, Section, Table, to_csv, to_latex, to_markdown
from xsweep.selection import GroupSummary
from xsweep.report.tables import AVG_ROW, avg_cell, language_cell, row_locales, subset_note

# The languages of the paper's main tables, after the training locale.
PAPER_LOCALES = ("zh-CN", "ja-JP", "ko-KR")


def paper_locales(summaries: list[GroupSummary]) -> list[str]:
    """Training locale, then those of the paper's columns that some group reports."""
    present = {loc for s in summaries for loc in s.locales}
    train = summaries[0].train_locale if summaries else "en-US"
    return [train] + [loc for loc in PAPER_LOCALES if loc in present and loc != train]


def pivot_table(summaries: list[GroupSummary], *, section_by: str, row_by: str, title: str,
                locales: list[str] | None = None) -> Table:
    """Sections by `section_by`, rows by `row_by`; columns `locales` then AVG (over all languages)."""
    locales = paper_locales(summaries) if locales is None else locales
    others = varying(summaries, exclude=(section_by, row_by))
    # APT groups aligned on different corpora (the alignment-data table) are told apart where the
    # method is named, `APT on xsgd` beside `PT`, rather than in sections of their own.
    qualify = "alignment" in others and "method" in (section_by, row_by)
    if qualify:
        others.remove("alignment")

    def named(attr: str, values: dict) -> str:
        if qualify and attr == "method" and values["alignment"] is not None:
            return f"{label(attr, values[attr])} {label('alignment', values['alignment'])}"
        return label(attr, values[attr])

    def order_of(attr: str, values: dict) -> tuple:
        extra = (str(values["alignment"]),) if qualify and attr == "method" else ()
        return (sort_key(attr, values[attr]),) + extra

    sections: dict[tuple, tuple[tuple, str, list[GroupSummary]]] = {}
    for s in summaries:
        values = group_attrs(s)
        key = (named(section_by, values),) + tuple(repr(values[a]) for a in others)
        order = order_of(section_by, values) + tuple(sort_key(a, values[a]) for a in others)
        name = " · ".join(text for text in [named(section_by, values)] + [label(a, values[a]) for a in others] if text)
        sections.setdefault(key, (order, name, []))[2].append(s)
    out = []
    for order, name, members in sorted(sections.values(), key=lambda item: item[0]):
        members = sorted(members, key=lambda s: (order_of(row_by, group_attrs(s)), s.group_name))
        labels = [named(row_by, group_attrs(s)) for s in members]
        rows = []
        for s, row_label in zip(members, labels):
            if labels.count(row_label) > 1:  # groups differing only outside the known attributes
                row_label = f"{row_label} ({s.group_key[:6]})"
            if s.partial:
                row_label += " (partial)"
            cells = [language_cell(s.per_language.get(loc)) for loc in locales] + [avg_cell(s)]
            rows.append(Row(row_label, cells))
        out.append(Section(name, rows))
    header = [""] + [short_locale(loc, locales) for loc in locales] + [AVG_ROW]
    metric = summaries[0].metric if summaries else "score"
    notes = [f"{metric} (%) on test, mean over seeds; AVG over all languages of the group, "
             "mean (std) over seeds; best per column within a section in bold"]
    return Table(title=title, header=header, sections=out, bold="column", notes=notes)


def methods_table(summaries: list[GroupSummary], locales: list[str] | None = None) -> Table:
    return pivot_table(summaries, section_by="shots", row_by="method", locales=locales,
                       title="Cross-lingual transfer by method and shots")


def prompt_length_table(summaries: list[GroupSummary], locales: list[str] | None = None) -> Table:
    return pivot_table(summaries, section_by="method", row_by="length", locales=locales,
                       title="Cross-lingual transfer by prompt length")


def language_table(summaries: list[GroupSummary]) -> Table:
    """Every language as a row, every group as a column labelled by what differs; best per row."""
    attrs = varying(summaries)
    header = ["locale"] + [describe(s, attrs) + (" (partial)" if s.partial else "") for s in summaries]
    rows = [Row(loc, [language_cell(s.per_language.get(loc)) for s in summaries])
            for loc in row_locales(summaries)]
    rows.append(Row(AVG_ROW, [avg_cell(s) for s in summaries]))
    return Table(title="Per-language results", header=header, sections=[Section(None, rows)], bold="row")


def paper_tables(summaries: list[GroupSummary]) -> dict[str, Table]:
    """The layouts that say something for these groups (a prompt-length table needs two lengths)."""
    tables = {"methods": methods_table(summaries), "languages": language_table(summaries)}
    lengths = {group_attrs(s)["length"] for s in summaries} - {None}
    if len(lengths) > 1:
        tables["prompt_length"] = prompt_length_table([s for s in summaries if group_attrs(s)["length"]])
    note = subset_note(summaries)
    for table in tables.values() if note else ():
        table.notes.append(note)
    return tables


def write_paper_tables(summaries: list[GroupSummary], out_dir: Path) -> dict[str, Path]:
    """Write each layout as `<name>.md`, `<name>.csv` and `<name>.tex`; return `<name>.<ext>` -> path."""
    out_dir = Path(out_dir)
    paths = {}
    for name, table in paper_tables(summaries).items():
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            path = out_dir / f"{name}.{ext}"
            write_text(path, render(table))
            paths[f"{name}.{ext}"] = path
    return paths
