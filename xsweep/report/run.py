"""The report of one run directory: tables from its trial records, group views in TensorBoard."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from xsweep.atomic import write_text
from xsweep.errors import XsweepError
from xsweep.record import read_records
from xsweep.report.paper import write_paper_tables
from xsweep.report.plots import write_plots
from xsweep.selection import summarise
from xsweep.storage import Mirror, check_bucket, display, is_uri, join, listing
from xsweep.sweep.bucket import REPORT_SKIP
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


@contextmanager
def reported(location: str, *, expected_seeds: list[int] | None = None
             ) -> Iterator[tuple[ReportPaths, Callable[[Path], str]]]:
    """`report_run` of a run directory, or of a bucket run (`s3://...`) from the bucket alone: its
    records and event files are pulled into a temporary folder, reported there, and `results/` and
    the TensorBoard group views pushed back. Yields the paths and how to name one to the user."""
    if not is_uri(location):
        yield report_run(Path(location), expected_seeds=expected_seeds), str
        return
    check_bucket(location, where=location)
    if not listing(join(location, "trials")):
        raise XsweepError(f"no trial records under {join(location, 'trials')!r}", where=location,
                          fix="pass the URI of a run written by `xsweep run` (<storage.root>/<name>)")
    local = Path(tempfile.mkdtemp(prefix="xsweep-report-"))
    try:
        mirror = Mirror(location, local)
        mirror.pull(skip=REPORT_SKIP)
        paths = report_run(local, expected_seeds=expected_seeds)
        # Only what the report rewrote whole: a running trial may be adding event files meanwhile.
        for derived in ("results", f"tensorboard/{GROUPS_DIR}", f"tensorboard/{SUMMARY_RUN}"):
            mirror.push(derived, delete=True)
        yield paths, lambda path: display(join(location, Path(path).relative_to(local).as_posix()))
    finally:
        shutil.rmtree(local, ignore_errors=True)
