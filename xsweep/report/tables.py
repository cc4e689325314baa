"""Results tables from group summaries: Markdown, CSV and LaTeX, in the paper's "AVG (std)" form.

Scores are shown in percent with one decimal. Anything short of the full protocol is marked in
the cell itself, so a copied number never hides that it is over fewer seeds:
- `61.2 [2/3]`: mean over 2 of the 3 seeds (a seed lacks this language);
- `59.8 (1.6) [4/5]`: AVG over 4 of 5 seeds (a seed lacks a language, so it has no average);
- `missing`: no seed has the language; `n/a`: the group does not report it;
- `(partial)` after a group's name: the sweep is running or was interrupted, or seeds are missing;
- `(provisional lr)`: no learning rate had all seeds completed; the best available was used.

With several groups the best group per language is in bold (Markdown and LaTeX).
"""

from __future__ import annotations

from pathlib import Path

from xsweep.atomic import write_text
from xsweep.report.render import Cell, Row, Section, Table, to_csv, to_latex, to_markdown
from xsweep.selection import GroupSummary, LanguageScore

AVG_ROW = "AVG"
MISSING = "missing"
NOT_REPORTED = "n/a"


def pct(value: float | None) -> str:
    """A fraction as percent with one decimal; `missing` for None."""
    return MISSING if value is None else f"{100 * value:.1f}"


def language_cell(score: LanguageScore | None) -> Cell:
    if score is None:
        return Cell(None, NOT_REPORTED)
    if score.mean is None:
        return Cell(None, MISSING)
    return Cell(score.mean, pct(score.mean), "" if score.complete else f" [{score.n}/{score.of}]")


def avg_cell(summary: GroupSummary) -> Cell:
    """`mean (std)` over seeds; the std is omitted with a single seed (it does not exist)."""
    if summary.avg is None:
        return Cell(None, MISSING)
    suffix = "" if summary.std is None else f" ({100 * summary.std:.1f})"
    if not summary.avg_complete:
        suffix += f" [{len(summary.avg_seeds)}/{len(summary.seeds_used)}]"
    return Cell(summary.avg, pct(summary.avg), suffix)


def column_title(summary: GroupSummary) -> str:
    title = group_title(summary)
    if summary.partial:
        title += " (partial)"
    if summary.provisional:
        title += " (provisional lr)"
    return title


def group_title(summary: GroupSummary) -> str:
    """The group's name, and for APT the corpus its prompt was aligned on (groups that differ only
    in that, as in the alignment-data table, would otherwise share a name)."""
    corpus = summary.aligned_on
    return summary.group_name + (f" (aligned on {corpus})" if corpus else "")


def results_table(summaries: list[GroupSummary]) -> Table:
    """One row per locale, then AVG; one column per group; the best group per row in bold."""
    metric = summaries[0].metric if summaries else "score"
    header = ["locale"] + [column_title(s) for s in summaries]
    rows = [Row(loc, [language_cell(s.per_language.get(loc)) for s in summaries])
            for loc in row_locales(summaries)]
    rows.append(Row(AVG_ROW, [avg_cell(s) for s in summaries]))
    return Table(title=f"Test {metric} (%)", header=header, sections=[Section(None, rows)], bold="row")


def row_locales(summaries: list[GroupSummary]) -> list[str]:
    """Union of the groups' locales: the first group's training locale first, then sorted."""
    every = sorted({loc for s in summaries for loc in s.locales})
    train = summaries[0].train_locale if summaries else None
    return ([train] if train in every else []) + [loc for loc in every if loc != train]


def selection_rows(summary: GroupSummary) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the learning-rate selection table of one group."""
    header = ["lr", f"mean {summary.train_locale} dev", "seeds", "eligible", "statuses", "note"]
    rows = []
    for lr, row in sorted(summary.lr_table.items()):
        chosen = lr == summary.chosen_lr
        dev = pct(row.mean_dev)
        if row.mean_dev is not None and row.n_dev != row.n_seeds:
            dev += f" [{row.n_dev}/{row.n_seeds}]"
        statuses = ", ".join(f"{name} {n}" for name, n in row.statuses.items())
        note = ("chosen (provisional)" if summary.provisional else "chosen") if chosen else ""
        if row.reason:
            note = f"{note}; {row.reason}" if note else row.reason
        rows.append([f"{lr:g}", dev, f"{row.n_seeds}/{len(summary.expected_seeds)}",
                     "yes" if row.eligible else "no", statuses, note])
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|"] + [line(r) for r in rows])


def subset_note(summaries: list[GroupSummary]) -> str | None:
    """What the report's header says when dev or test were cut to a subset (data/subsets.py)."""
    sizes = {(s.config.get("data", {}).get("max_dev_examples"), s.config.get("data", {}).get("max_test_examples_per_locale"))
             for s in summaries}
    said = []
    for dev, test in sorted(sizes, key=repr):
        parts = ([f"dev on a stratified subset of {dev} utterances (data.max_dev_examples)"] if dev else []) + (
            [f"test on a stratified subset of {test} utterances per locale, the same ids in every locale "
             "(data.max_test_examples_per_locale)"] if test else [])
        if parts:
            said.append("; ".join(parts))
    if not said:
        return None
    return "Subsets: " + (said[0] if len(said) == 1 else " | ".join(said) + " (the groups differ)") + "."


def format_table_markdown(summaries: list[GroupSummary]) -> str:
    """The whole report as Markdown: results table, then per group its lr selection and gaps."""
    if not summaries:
        return "# Results\n\nNo trial records yet.\n"
    metric = summaries[0].metric
    parts = ["# Results", ""]
    if any(s.partial for s in summaries):
        parts += ["**Partial results**: some trials are still running, were interrupted, or are "
                  "missing; numbers marked `[n/m]` are over fewer seeds than the protocol asks.", ""]
    parts += [f"Test {metric} (%) per language for the learning rate chosen on "
              f"{summaries[0].train_locale} dev; mean over seeds; AVG is mean (std) over seeds of "
              "the seeds' averages over all languages.", ""]
    note = subset_note(summaries)
    if note:
        parts += [f"**{note}**", ""]
    if any(s.missing or s.missing_seeds or not s.avg_complete for s in summaries):
        parts += ["Marks: `[n/m]` = over n of the m seeds; `missing` = no seed has it; "
                  "`n/a` = not reported by that group.", ""]
    parts += [to_markdown(results_table(summaries)), ""]
    for s in summaries:
        parts += [f"## {group_title(s)}", "",
                  f"group key `{s.group_key}`; chosen lr "
                  f"{'none' if s.chosen_lr is None else f'{s.chosen_lr:g}'}"
                  f"{' (provisional)' if s.provisional else ''}; seeds used "
                  f"{', '.join(map(str, s.seeds_used)) or 'none'}; trials: "
                  + ", ".join(f"{name} {n}" for name, n in s.statuses.items()), "",
                  "Learning-rate selection:", ""]
        sel_header, sel_rows = selection_rows(s)
        parts += [markdown_table(sel_header, sel_rows), ""]
        gaps = gap_lines(s)
        if gaps:
            parts += ["Missing:", ""] + [f"- {g}" for g in gaps] + [""]
    return "\n".join(parts)


def gap_lines(summary: GroupSummary) -> list[str]:
    lines = []
    if summary.missing_seeds:
        lines.append(f"{len(summary.missing_seeds)} trial(s) never recorded: " + ", ".join(
            f"lr {lr:g} seed {seed}" for lr, seed in summary.missing_seeds))
    if summary.missing:
        lines.append(f"{len(summary.missing)} test score(s) absent for the chosen lr: " + ", ".join(
            f"seed {seed} {loc}" for seed, loc in summary.missing))
    no_avg = [s for s, v in summary.seed_averages.items() if v is None]
    if no_avg:
        lines.append("no language average (a language is missing) for seed " + ", ".join(map(str, no_avg)))
    return lines


def write_tables(summaries: list[GroupSummary], out_dir: Path) -> dict[str, Path]:
    """Write `results.md`, `results.csv` and `results.tex` into `out_dir` atomically."""
    out_dir = Path(out_dir)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv",
             "latex": out_dir / "results.tex"}
    table = results_table(summaries)
    write_text(paths["markdown"], format_table_markdown(summaries))
    write_text(paths["csv"], to_csv(table))
    write_text(paths["latex"], to_latex(table))
    return paths
