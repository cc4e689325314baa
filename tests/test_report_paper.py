"""The paper's table layouts, LaTeX output, bold best per column, and two-run comparisons."""

from __future__ import annotations

import csv
import io

import pytest

from xsweep.errors import XsweepError
from xsweep.record import DevPoint, TrialRecord
from xsweep.report.compare import compare_runs, comparison_table, write_comparison
from xsweep.report.paper import language_table, methods_table, paper_tables, prompt_length_table, write_paper_tables
from xsweep.report.render import latex_escape, to_csv, to_latex, to_markdown
from xsweep.selection import summarise

LOCALES = ("en-US", "de-DE", "ja-JP", "ko-KR", "zh-CN")


def group(method: str, shots: int | None, length: int | None, seed_avgs: list[float], *,
          head: str = "vanilla", lr: float = 1e-2) -> list[TrialRecord]:
    """Records of one group whose every language scores the seed's value (so AVG = that value)."""
    config = {"method": method, "data": {"dataset": "massive", "shots": shots, "train_locale": "en-US"},
              "prompt": {"kind": "none" if length is None else "layer", "length": length or 16},
              "head": {"kind": head}, "backbone": {"name": "builtin:tiny"}}
    key = f"{method}-{shots}-{length}-{head}"
    records = []
    for seed, avg in enumerate(seed_avgs):
        record = TrialRecord(trial_id=f"{key}-s{seed}", group_key=key, group_name=f"massive-{head}/{method}/{length}/{shots}",
                             lr=lr, seed=seed, status="completed", config=config)
        record.add_dev(DevPoint(step=1, epoch=1, score=0.5, train_loss=1.0))
        record.test_scores = {loc: avg for loc in LOCALES}
        records.append(record)
    return records


def paper_sweep() -> list[TrialRecord]:
    return (group("ft", 5, None, [0.05, 0.07]) + group("pt", 5, 16, [0.24, 0.26])
            + group("apt", 5, 16, [0.55, 0.57]) + group("pt", None, 16, [0.76, 0.78])
            + group("apt", None, 16, [0.77, 0.79]) + group("ft", None, None, [0.79, 0.79]))


def rows_of(table) -> list[list[str]]:
    return list(csv.reader(io.StringIO(to_csv(table))))


@pytest.mark.timeout(60)
def test_methods_table_has_the_papers_shape_and_bold_best_per_column():
    table = methods_table(summarise(paper_sweep()))
    assert table.header == ["", "en", "zh-CN", "ja", "ko", "AVG"]
    rows = rows_of(table)
    assert rows[0] == ["section", "", "en", "zh-CN", "ja", "ko", "AVG"]
    assert [r[:2] for r in rows[1:]] == [["5-shots", "FT"], ["5-shots", "PT"], ["5-shots", "APT"],
                                         ["all", "FT"], ["all", "PT"], ["all", "APT"]]
    assert rows[3][2:] == ["56.0", "56.0", "56.0", "56.0", "56.0 (1.4)"]
    markdown = to_markdown(table)
    assert "| **5-shots** |" in markdown
    assert "| APT | **56.0** | **56.0** | **56.0** | **56.0** | **56.0** (1.4) |" in markdown
    # "all": FT 79.0 and APT 78.0 -> FT bold alone; std 0.0 for identical seeds.
    assert "| FT | **79.0** | **79.0** | **79.0** | **79.0** | **79.0** (0.0) |" in markdown
    assert "| APT | 78.0 | 78.0 | 78.0 | 78.0 | 78.0 (1.4) |" in markdown


@pytest.mark.timeout(60)
def test_ties_are_all_bold_and_a_lone_value_is_not():
    records = group("pt", 5, 16, [0.5]) + group("apt", 5, 16, [0.5]) + group("pt", 15, 16, [0.6])
    markdown = to_markdown(methods_table(summarise(records), locales=["en-US"]))
    assert "| PT | **50.0** | **50.0** |" in markdown and "| APT | **50.0** | **50.0** |" in markdown
    assert "| PT | 60.0 | 60.0 |" in markdown  # the 15-shot section has one row: nothing to beat


@pytest.mark.timeout(60)
def test_latex_is_escaped_booktabs_with_bold():
    latex = to_latex(methods_table(summarise(paper_sweep())))
    assert latex.startswith("\\begin{table}[t]")
    assert "\\toprule" in latex and "\\bottomrule" in latex and "\\end{tabular}" in latex
    assert "\\begin{tabular}{lrrrrr}" in latex
    assert "\\multicolumn{6}{l}{\\textbf{5-shots}} \\\\" in latex
    assert "APT & \\textbf{56.0} & \\textbf{56.0} & \\textbf{56.0} & \\textbf{56.0} & \\textbf{56.0} (1.4) \\\\" in latex
    assert latex_escape("a_b & 5% #1 {x}") == "a\\_b \\& 5\\% \\#1 \\{x\\}"


@pytest.mark.timeout(60)
def test_other_differing_attributes_split_sections():
    records = group("pt", 5, 16, [0.3]) + group("pt", 5, 16, [0.4], head="nli")
    rows = rows_of(methods_table(summarise(records), locales=["en-US"]))
    assert [r[:2] for r in rows[1:]] == [["5-shots · NLI-based", "PT"], ["5-shots · vanilla", "PT"]]


@pytest.mark.timeout(60)
def test_prompt_length_table_rows_by_length():
    records = group("apt", 5, 1, [0.40, 0.42]) + group("apt", 5, 16, [0.55, 0.57]) + group("apt", 5, 100, [0.5, 0.5])
    table = prompt_length_table(summarise(records), locales=["en-US"])
    rows = rows_of(table)
    assert [r[:2] for r in rows[1:]] == [["APT", "P=1"], ["APT", "P=16"], ["APT", "P=100"]]
    assert [r[-1] for r in rows[1:]] == ["41.0 (1.4)", "56.0 (1.4)", "50.0 (0.0)"]
    assert "| P=16 | **56.0** | **56.0** (1.4) |" in to_markdown(table)
    assert "prompt_length" in paper_tables(summarise(records))
    assert "prompt_length" not in paper_tables(summarise(paper_sweep()))


@pytest.mark.timeout(60)
def test_language_table_columns_labelled_by_what_differs(tmp_path):
    table = language_table(summarise(group("pt", 5, 16, [0.3]) + group("apt", 5, 16, [0.4])))
    assert table.header == ["locale", "APT", "PT"]
    assert [r[0] for r in rows_of(table)[1:]] == ["en-US", "de-DE", "ja-JP", "ko-KR", "zh-CN", "AVG"]
    assert "| en-US | **40.0** | 30.0 |" in to_markdown(table)
    paths = write_paper_tables(summarise(paper_sweep()), tmp_path)
    assert sorted(paths) == ["languages.csv", "languages.md", "languages.tex",
                             "methods.csv", "methods.md", "methods.tex"]
    assert all(path.stat().st_size > 0 for path in paths.values())


@pytest.mark.timeout(60)
def test_compare_runs_per_language_differences(tmp_path):
    pt = group("pt", 5, 16, [0.24, 0.26])
    apt = group("apt", 5, 16, [0.55, 0.57])
    apt[0].test_scores["de-DE"] = 0.20  # APT worse than PT on German in one seed
    apt[1].test_scores["de-DE"] = 0.22
    summaries = summarise(pt + apt)
    c = compare_runs(summaries, summaries, group_a="pt", group_b="apt", label_a="PT", label_b="APT")
    diffs = {d.locale: d.diff for d in c.languages}
    assert diffs["en-US"] == pytest.approx(0.31, abs=1e-12)
    assert diffs["de-DE"] == pytest.approx(0.21 - 0.25, abs=1e-12)
    assert c.wins == (4, 5)
    # AVG: PT 0.25; APT seeds (4 * 0.55 + 0.20) / 5 = 0.48 and (4 * 0.57 + 0.22) / 5 = 0.50.
    assert c.avg.diff == pytest.approx(0.49 - 0.25, abs=1e-12)
    rows = rows_of(comparison_table(c))
    assert rows[0] == ["locale", "A", "B", "B - A"]
    assert rows[2] == ["de-DE", "25.0", "21.0", "-4.0"]
    assert rows[-1] == ["AVG", "25.0 (1.4)", "49.0 (1.4)", "+24.0"]
    paths = write_comparison(c, tmp_path)
    assert "B is better on 4 of 5 languages" in paths["md"].read_text()


@pytest.mark.timeout(60)
def test_compare_runs_names_the_groups_when_ambiguous():
    summaries = summarise(group("pt", 5, 16, [0.3]) + group("apt", 5, 16, [0.4]))
    with pytest.raises(XsweepError, match="which one"):
        compare_runs(summaries, summaries)
    with pytest.raises(XsweepError, match="no group matches"):
        compare_runs(summaries, summaries, group_a="xyz", group_b="apt")
