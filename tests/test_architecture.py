"""The package's shape: lower layers never import higher ones, no import cycles, modules stay small.

The layer table is the one docs/architecture.md explains. Every import counts: at module level,
inside functions and under `TYPE_CHECKING`. A new top-level module or package must be given a
layer here before it can be imported by anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import xsweep

PACKAGE = Path(xsweep.__file__).resolve().parent

LAYERS: dict[str, int] = {
    # 0: shared vocabulary, no training and no Ray
    "__init__": 0, "__main__": 6,
    "errors": 0, "atomic": 0, "paths": 0, "dotted": 0, "languages": 0, "metrics": 0, "config": 0,
    "record": 0, "selection": 0, "trial_log": 0, "digest": 0, "storage": 0,
    # 1: data sets, models and losses
    "data": 1, "models": 1, "objectives": 1,
    # 2: the worker loops (no Ray Tune, no sweep)
    "train": 2,
    # 3: Ray orchestration
    "sweep": 3,
    # 4: results into tables, plots, TensorBoard
    "report": 4,
    # 5: entry points
    "cli": 5, "predict": 5,
}
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """xsweep modules `name` imports (a `from package import module` names the module), with lines."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                found.append((full if full in MODULES else source, node.lineno))
    return [(target, line) for target, line in found if target == "xsweep" or target.startswith("xsweep.")]


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYERS:
        pytest.fail(f"{module} has no layer: add {top!r} to LAYERS in tests/test_architecture.py "
                    "and to docs/architecture.md")
    return LAYERS[top]


def test_no_module_imports_a_higher_layer():
    upward = [f"{name}:{line} imports {target} (layer {_layer(target)} > {_layer(name)})"
              for name, path in MODULES.items() for target, line in _imports(name, path)
              if _layer(target) > _layer(name)]
    assert upward == []


def test_no_import_cycles_between_modules():
    graph = {name: {t for t, _ in _imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    # A package's __init__ importing its own modules is how it exports them; not a cycle to report.
    graph = {name: {t for t in targets if not (t.startswith(name + ".") and MODULES[name].name == "__init__.py")}
             for name, targets in graph.items()}
    cycles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(trail[trail.index(target):] + [node, target]) if target in trail
                              else f"{node} -> {target}")
            elif target not in state:
                visit(target, trail + [node])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert cycles == []


def test_the_checks_see_real_imports():
    """The parser finds imports in all their forms; otherwise the two tests above pass vacuously."""
    imports = dict(_imports("xsweep.sweep.reporting", MODULES["xsweep.sweep.reporting"]))
    assert "xsweep.train.downstream" in imports  # imported inside a function
    assert "xsweep.paths" in dict(_imports("xsweep.models.builtin", MODULES["xsweep.models.builtin"]))  # from xsweep import paths
    assert _layer("xsweep.report.tables") > _layer("xsweep.sweep.runner") > _layer("xsweep.train.downstream")


def test_every_module_is_short():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"split these modules (at most {MAX_LINES} lines, one concept each)"
