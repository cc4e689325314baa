"""Reading experiments: YAML with the line of every key, dotted overrides, paths made absolute.

`load_config` is the way in: parse the file (`yaml.safe_load` semantics; a key given twice is an
error), apply `optim.lr=1e-3`-style overrides, build and check the config (`from_dict`), and
resolve its data and prompt paths relative to the config file. `to_dict` and `dump_yaml` are the
way out: the plain data a run directory's `config.yaml` holds, which `from_dict` reads back.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml

from xsweep.config.checks import check_experiment
from xsweep.config.coerce import build
from xsweep.config.schema import NAMED_ALIGN_DATA, NAMED_DATA, ExperimentConfig
from xsweep.dotted import set_dotted
from xsweep.errors import XsweepError


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment, apply dotted overrides, check everything, return the config."""
    path = Path(path)
    if not path.is_file():
        raise XsweepError(
            f"config file {str(path)!r} does not exist",
            fix="pass the path of a YAML experiment; `xsweep ls` lists the shipped ones",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XsweepError(f"cannot read the config file: {exc}", where=str(path),
                          fix="pass a readable UTF-8 YAML file") from None
    raw, lines = parse_yaml(text, str(path))
    if not raw:  # blank or comments only: running the defaults would not be what was meant
        raise XsweepError("the config file is empty", where=str(path),
                          fix="write an experiment (copy experiments/quickstart.yaml and edit it)")
    for override in overrides:
        key, value = parse_override(override)
        set_dotted(raw, key, value, where=f"override {override!r}")
        lines.pop(key, None)
    cfg = from_dict(raw, source=str(path), lines=lines)
    return _resolve_paths(cfg, path.parent)


def parse_yaml(text: str, source: str) -> tuple[dict, dict[str, int]]:
    """Parse YAML safely; return the data and the line (1-based) of every dotted key."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)  # never yaml.load: a config is data, not Python objects
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise XsweepError(f"YAML tag not allowed: {exc.problem}",
                          where=f"{source}:{mark.line + 1}" if mark else source,
                          fix="configs are plain data (mappings, lists, numbers, strings); "
                              "remove the `!!` tag") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise XsweepError(f"malformed YAML: {problem}", where=where,
                          fix="fix the YAML syntax at that line (indentation, ':' after keys)") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise XsweepError("the top level must be a mapping of keys to values", where=source,
                          fix="start the file with keys such as `name:`, `optim:`, `sweep:`")
    lines: dict[str, int] = {}
    if node is not None:
        _collect_lines(node, "", lines, source)
    return data, lines


def _collect_lines(node: yaml.Node, prefix: str, lines: dict[str, int], source: str) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        if key in seen:  # YAML itself would keep the last value silently
            raise XsweepError(f"key {key!r} appears twice", where=f"{source}:{key_node.start_mark.line + 1}",
                              fix=f"keep one {key!r}; the earlier one is at line {lines[key]}")
        seen.add(key)
        lines[key] = key_node.start_mark.line + 1
        # Sweep grids hold dotted keys as data, not nesting: keep their lines under the grid.
        _collect_lines(value_node, key + ".", lines, source)


def parse_override(text: str) -> tuple[str, Any]:
    """`optim.lr=1e-3` -> ("optim.lr", 0.001); the value is read as a YAML scalar or list."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise XsweepError(f"override {text!r} is not of the form key.sub=value",
                          fix="write overrides like optim.lr=1e-3 or sweep.seeds=[0,1]")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def with_overrides(cfg: ExperimentConfig, values: dict[str, Any]) -> ExperimentConfig:
    """Return a copy of `cfg` with dotted keys set (the grammar of sweep grids), checked."""
    raw = to_dict(cfg)
    for key, value in values.items():
        set_dotted(raw, key, value, where=f"sweep value {key}={value!r}")
    return from_dict(raw, source="sweep grid", lines={}, check_grid=False)


def from_dict(raw: dict, *, source: str = "<config>", lines: dict[str, int] | None = None,
              check_grid: bool = True) -> ExperimentConfig:
    """Build and check an `ExperimentConfig` from plain data. `check_grid=False` skips checking each
    grid value against this config: a trial's config (one grid point applied) is checked as itself,
    and its other points, which may set keys together differently, are not its concern."""
    lines = lines or {}
    cfg = build(ExperimentConfig, raw, "", source, lines)
    check_experiment(cfg, source, lines, check_grid=check_grid)
    return cfg


def to_dict(cfg: Any) -> dict:
    """The config as plain data (what `config.yaml` in a run directory holds)."""
    return copy.deepcopy(dataclasses.asdict(cfg))


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def _resolve_paths(cfg: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Relative data and prompt paths are relative to the config file; check they exist."""
    if cfg.data.path not in NAMED_DATA:
        data_path = Path(cfg.data.path).expanduser()
        if not data_path.is_absolute():
            data_path = (base / data_path).resolve()
        if not data_path.exists():
            raise XsweepError(f"data folder {str(data_path)!r} does not exist", where="data.path",
                              fix="point data.path at a MASSIVE folder of <locale>.jsonl files "
                                  "(relative to the config file), or use `demo`")
        cfg.data.path = str(data_path)
    if cfg.align.retrieval == "tatoeba":
        from xsweep.paths import data_root

        cfg.align.retrieval = str(data_root() / "tatoeba")  # found, or explained, when the stage runs
    elif cfg.align.retrieval and cfg.align.retrieval != "demo":
        folder = Path(cfg.align.retrieval).expanduser()
        folder = folder if folder.is_absolute() else (base / folder).resolve()
        if not folder.exists():
            raise XsweepError(f"Tatoeba folder {str(folder)!r} does not exist", where="align.retrieval",
                              fix="point align.retrieval at a folder of tatoeba.<iso3>-eng.* files, use "
                                  "`tatoeba` after `xsweep data download tatoeba`, or `demo`")
        cfg.align.retrieval = str(folder)
    cfg.align.data = _resolve_align_data(cfg.align.data, base, "align.data")
    for key, values in cfg.sweep.grid.items():  # a grid comparing corpora names them as the section would
        for i, value in enumerate(values):
            if key == "align.data":
                values[i] = _resolve_align_data(value, base, f"sweep.grid.{key}")
            elif isinstance(value, dict) and "align.data" in value:
                value["align.data"] = _resolve_align_data(value["align.data"], base, f"sweep.grid.{key}")
    if cfg.prompt.init_from:
        init = Path(cfg.prompt.init_from).expanduser()
        cfg.prompt.init_from = str(init if init.is_absolute() else (base / init).resolve())
    return cfg


def _resolve_align_data(value: str | None, base: Path, where: str) -> str | None:
    """Named alignment data as it is; a path made absolute (relative to the config file), and checked."""
    if not value or value in NAMED_ALIGN_DATA or "://" in value:
        return value
    align_path = Path(value).expanduser()
    if not align_path.is_absolute():
        align_path = (base / align_path).resolve()
    if not align_path.exists():
        raise XsweepError(f"alignment data {str(align_path)!r} does not exist", where=where,
                          fix="point align.data at an XSGD-layout folder, a folder of tatoeba.<iso3>-eng.* files "
                              "or a .tsv file of parallel lines (relative to the config file), or use "
                              f"{', '.join(NAMED_ALIGN_DATA)}")
    return str(align_path)
