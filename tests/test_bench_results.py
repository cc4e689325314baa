"""bench/RESULTS.md holds only what the benchmarks write: every section is one a benchmark script
writes under that title, and says which command wrote it. A section whose benchmark is gone, or
one typed by hand, fails here."""

from __future__ import annotations

import ast
import re

import pytest

from xsweep.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(30)

BENCH = REPO_ROOT / "bench"
RESULTS = BENCH / "RESULTS.md"
WRITTEN_BY = re.compile(r"^Written by `\.venv/bin/python -m bench\.(\w+)[^`]*` on \d{4}-\d{2}-\d{2}; machine: ")


def section_titles(module: str) -> set[str]:
    """The section titles a bench module defines: string constants named TITLE or *_TITLE / TITLE_*."""
    tree = ast.parse((BENCH / f"{module}.py").read_text(encoding="utf-8"))
    titles = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if any(isinstance(t, ast.Name) and "TITLE" in t.id for t in node.targets):
                titles.add(node.value.value)
    return titles


def sections() -> list[tuple[str, str]]:
    """(title, first non-empty line of its body) for every `## ` section of RESULTS.md."""
    text = RESULTS.read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^## (.+)\n+(.*)$", text, re.M):
        found.append((match.group(1), match.group(2)))
    return found


def test_results_has_sections():
    assert len(sections()) >= 5


@pytest.mark.parametrize("title, first_line", sections(), ids=[t for t, _ in sections()])
def test_every_section_is_written_by_the_benchmark_that_owns_its_title(title, first_line):
    written = WRITTEN_BY.match(first_line)
    assert written, f"section {title!r} does not start with 'Written by `.venv/bin/python -m bench.<module>` ...'"
    module = written.group(1)
    writers = {module} if module != "run" else {p.stem for p in BENCH.glob("bench_*.py")}
    assert any((BENCH / f"{m}.py").is_file() and title in section_titles(m) for m in writers), (
        f"section {title!r} says bench.{module} wrote it, but no such benchmark defines that title: "
        "remove the section with its benchmark, or let the benchmark write it")
