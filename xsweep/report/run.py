"""The report of one run directory: tables from its trial records, group views in TensorBoard."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from xsweep.atomic import write_text
from xsweep.errors import XsweepError
from xsweep.record import read_records
from xsweep.report.paper import write_paper_tables
from xsweep.report.plots import write_plots
from xsweep.selection import summarise
from xsweep.sweep.spent import spent_table
from xsweep.report.tables import format_table_markdown, write_tables
from xsweep.report.tensorboard import GROUPS_DIR, SUMMARY_RUN, write_group_summaries


@dataclass
class ReportPaths:
    table_markdown: Path
    table_csv: Path
    tensorboard: Path
    table_latex: Path | None = None
    paper_tables: dict[str, Path] = field(default_factory=dict)
    """`<layout>.<md|csv|tex>` -> path (methods, languages, prompt_length)."""
    plots: dict[str, Path] = field(default_factory=dict)
    """Plot name -> PNG path (languages, prompt_length, shots)."""


def report_run(run_dir: Path, *, expected_seeds: list[int] | None = None) -> ReportPaths:
    """Summarise every trial record of `run_dir` into `results/` and TensorBoard group runs.

    Works on a finished, running or interrupted sweep (partial results are marked as such).
    """
    run_dir = Path(run_dir)
    records = read_records(run_dir)
    if not records:
        raise XsweepError(f"no trial records under {str(run_dir / 'trials')!r}", where=str(run_dir),
                          fix="pass a run directory written by `xsweep run` (runs/<name>)")
    summaries = summarise(records, expected_seeds=expected_seeds)
    out_dir = run_dir / "results"
    paths = write_tables(summaries, out_dir)
    paper = write_paper_tables(summaries, out_dir / "tables")
    plots = write_plots(summaries, out_dir / "plots")
    write_text(out_dir / "cost.md", spent_table(records))
    logdir = run_dir / "tensorboard"
    # Group views are derived data: rewrite them whole, so a second report does not append.
    for derived in (logdir / GROUPS_DIR, logdir / SUMMARY_RUN):
        shutil.rmtree(derived, ignore_errors=True)
    write_group_summaries(summaries, records, logdir, tables_markdown=format_table_markdown(summaries))
    return ReportPaths(table_markdown=paths["markdown"], table_csv=paths["csv"], tensorboard=logdir,
                       table_latex=paths["latex"], paper_tables=paper, plots=plots)
