"""Markdown and CSV tables: the paper's "AVG (std)" cells and visible marks for gaps."""

from __future__ import annotations

import csv

import pytest

from test_selection import make, scores, tie_sweep
from xsweep.selection import summarise
from xsweep.report.tables import format_table_markdown, write_tables


def read_csv(path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.mark.timeout(60)
def test_tables_one_row_per_language_then_avg(tmp_path):
    paths = write_tables(summarise(tie_sweep()), tmp_path)
    assert paths == {"markdown": tmp_path / "results.md", "csv": tmp_path / "results.csv",
                     "latex": tmp_path / "results.tex"}
    rows = read_csv(paths["csv"])
    assert rows == [
        ["locale", "massive-vanilla/pt/layer16"],
        ["en-US", "85.0"],
        ["de-DE", "65.0"],
        ["ja-JP", "50.0"],
        ["AVG", "66.7 (5.8)"],
    ]
    markdown = paths["markdown"].read_text()
    assert "| AVG | 66.7 (5.8) |" in markdown
    assert "Partial" not in markdown
    # Selection table: every rate with its mean dev, seeds, eligibility; the tie winner chosen.
    assert "| 0.001 | 70.0 | 3/3 | yes | completed 3 | chosen |" in markdown
    assert "| 0.01 | 70.0 | 3/3 | yes | completed 3 |  |" in markdown
    assert "| 0.1 | 93.3 | 3/3 | no | completed 2, diverged 1 | seed 1 diverged |" in markdown
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


@pytest.mark.timeout(60)
def test_gaps_are_marked_in_the_cells(tmp_path):
    records = tie_sweep()
    del records[7].test_scores["ja-JP"]  # lr 1e-3 seed 1
    records.append(make(1e-2, 3, 0.5, status="running"))
    summaries = summarise(records)
    rows = read_csv(write_tables(summaries, tmp_path)["csv"])
    assert rows[0] == ["locale", "massive-vanilla/pt/layer16 (partial) (provisional lr)"]
    assert rows[3] == ["ja-JP", "50.0 [2/3]"]
    # Seed 3 is now expected at every rate, so none is eligible: provisional choice, 2 seeds of 3
    # with a complete language average.
    assert summaries[0].provisional
    assert rows[4][0] == "AVG" and rows[4][1].endswith("[2/3]")
    markdown = format_table_markdown(summaries)
    assert "**Partial results**" in markdown
    assert "seed 1 ja-JP" in markdown
    assert "lr 0.001 seed 3" in markdown


@pytest.mark.timeout(60)
def test_several_groups_make_columns_and_single_seed_has_no_std(tmp_path):
    other = [make(5e-3, 0, 0.5, scores(0.2, 0.3, 0.4), group="g2", name="massive-vanilla/apt/layer16")]
    rows = read_csv(write_tables(summarise(tie_sweep() + other), tmp_path)["csv"])
    assert rows[0] == ["locale", "massive-vanilla/apt/layer16", "massive-vanilla/pt/layer16"]
    assert rows[1] == ["en-US", "20.0", "85.0"]
    assert rows[-1] == ["AVG", "30.0", "66.7 (5.8)"]


@pytest.mark.timeout(60)
def test_no_records_is_a_readable_report():
    assert "No trial records" in format_table_markdown([])


@pytest.mark.timeout(60)
def test_best_group_per_language_is_bold_in_markdown_and_latex(tmp_path):
    other = [make(5e-3, seed, 0.5, scores(0.2, 0.9, 0.4), group="g2", name="massive-vanilla/apt/layer16")
             for seed in (0, 1)]
    paths = write_tables(summarise(tie_sweep() + other), tmp_path)
    markdown = paths["markdown"].read_text()
    assert "| en-US | 20.0 | **85.0** |" in markdown
    assert "| de-DE | **90.0** | 65.0 |" in markdown
    assert "| AVG | 50.0 (0.0) | **66.7** (5.8) |" in markdown
    assert "en-US & 20.0 & \\textbf{85.0} \\\\" in paths["latex"].read_text()
    assert read_csv(paths["csv"])[1] == ["en-US", "20.0", "85.0"]  # CSV stays plain
