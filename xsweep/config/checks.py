"""The rules of a whole experiment: each section's own (`check` in schema.py), in a fixed order,
and those that relate sections: the method and its prompt, the alignment stage and the grid,
fusing, the Optuna space, and every grid value making a valid config on its own.

The first broken rule is the error reported, so the order of `check_experiment` is part of what
a user sees.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from xsweep.config.coerce import build, try_coerce, where
from xsweep.config.grid import axis_value, grid_points
from xsweep.config.schema import ExperimentConfig, Fail, can_fuse
from xsweep.dotted import set_dotted
from xsweep.errors import XsweepError


def check_experiment(cfg: ExperimentConfig, source: str, lines: dict[str, int], *,
                     check_grid: bool = True) -> None:
    """Raise an XsweepError at the first rule `cfg` breaks. `check_grid=False` (a trial's config)
    leaves out what concerns the experiment's grid as a whole."""
    def fail(key: str, what: str, fix: str) -> None:
        raise XsweepError(what, where=where(source, lines, key), fix=fix)

    cfg.optim.check(fail)
    cfg.prompt.check(fail)
    cfg.head.check(fail)
    if cfg.backbone.text_prefix and (cfg.head.kind == "slot" or cfg.data.dataset == "conll"):
        fail("backbone.text_prefix", f"backbone.text_prefix {cfg.backbone.text_prefix!r} is put before sentence "
             "inputs, but slot filling labels the utterance's words (and data.dataset conll reads words too)",
             "leave backbone.text_prefix empty for slot filling and CoNLL data")
    _check_prompt_source(cfg, fail)
    cfg.align.check(fail)
    if check_grid and not cfg.sweep.downstream and not cfg.align.data:  # an experiment's, not a trial's
        fail("sweep.downstream", "sweep.downstream is false and there is no alignment stage: nothing would run",
             "set align.data (and align.retrieval), or leave sweep.downstream true")
    cfg.align.check_corpus(fail)
    _check_align_in_sweep(cfg, fail, check_grid=check_grid)
    if cfg.method != "apt" and cfg.prompt.init_from:
        fail("prompt.init_from", f"prompt.init_from is only used by method apt, not {cfg.method}",
             "remove prompt.init_from or use method: apt")
    cfg.data.check(fail, head_kind=cfg.head.kind)
    cfg.resources.check(fail)
    cfg.sweep.check(fail, optim=cfg.optim)
    _check_fuse(cfg, fail)
    _check_workers(cfg, fail)
    s = cfg.sweep
    if s.search == "optuna":  # before the grid: a grid value is checked on a config with these settings
        _check_optuna(cfg, fail)
    if check_grid:
        _check_grid_values(cfg, fail, source)
    # Last, after the grid values: a grid value's config carries this budget, so a bad budget in an
    # experiment with a grid is reported through its first grid value, as it always was.
    if s.budget_device_hours is not None and not s.budget_device_hours > 0:
        fail("sweep.budget_device_hours", f"sweep.budget_device_hours must be positive, got {s.budget_device_hours}",
             "give the device-hours the sweep may spend, e.g. 10, or null for no cap")


def _check_prompt_source(cfg: ExperimentConfig, fail: Fail) -> None:
    """The method decides whether there is a prompt, and APT's prompt comes from exactly one place."""
    p = cfg.prompt
    if cfg.method in ("pt", "apt") and p.kind == "none":
        fail("prompt.kind", f"method {cfg.method} trains a prompt but prompt.kind is 'none'",
             "set prompt.kind to layer or input, or use method: ft")
    if cfg.method == "ft" and p.kind != "none":
        fail("prompt.kind", "method ft fine-tunes the whole backbone and takes no prompt",
             "set prompt.kind: none for ft, or use method: pt")
    if cfg.method == "apt" and not p.init_from and not cfg.align.data:
        fail("prompt.init_from", "method apt starts from an aligned prompt, but neither align.data (an "
             "alignment stage) nor prompt.init_from (a saved prompt) is set",
             "set align.data to parallel data (e.g. demo) so the sweep aligns the prompt first, or "
             "prompt.init_from to the directory of an alignment run's saved prompt")
    if p.init_from and cfg.align.data:
        fail("prompt.init_from", "prompt.init_from and align.data both say where APT's prompt comes from",
             "keep one: align.data runs the alignment stage, prompt.init_from reuses a saved prompt")


def _check_align_in_sweep(cfg: ExperimentConfig, fail: Fail, *, check_grid: bool) -> None:
    """Align settings are planned before the trials (never searched), and a grid that varies them
    must not run the other methods' trials twice."""
    if cfg.sweep.search == "optuna" and any(k == "align" or k.startswith("align.") for k in cfg.sweep.optuna.space):
        fail("sweep.optuna.space", "align settings cannot be searched by Optuna: each value needs an alignment run "
             "of its own, planned before the trials", "list them in sweep.grid instead, e.g. "
             "variant: [{method: apt, align.data: xsgd}, {method: apt, align.data: tatoeba}]")
    if not check_grid:
        return
    # Only APT trials read the align section (the sweep drops it from the others): grid points that
    # differ in align keys alone give the other methods the same trial twice.
    seen: dict[str, dict[str, Any]] = {}
    for point in grid_points(cfg):
        method = point.get("method", cfg.method)
        rest = {k: v for k, v in point.items() if k != "align" and not k.startswith("align.")}
        if method == "apt":
            continue
        key = repr(sorted(rest.items()))
        if key in seen and seen[key] != point:
            axis = next(k for k, values in cfg.sweep.grid.items()
                        if any(d == "align" or d.startswith("align.") for v in values for d in axis_value(k, v)))
            fail(f"sweep.grid.{axis}", f"the grid points {seen[key]} and {point} differ only in align keys, which "
                 f"only APT trials use: their {method} trials would run twice",
                 "set the align keys together with method apt in one axis, e.g. "
                 "variant: [{method: pt}, {method: apt, align.data: xsgd}, {method: apt, align.data: tatoeba}]")
        seen[key] = point


def _check_fuse(cfg: ExperimentConfig, fail: Fail) -> None:
    """Fusing needs a fusable setup (or a grid that may make some groups fusable). Pruning is fine:
    each fused trial checkpoints, pauses at a milestone and resumes as a lone trial does."""
    s = cfg.sweep
    # A grid that sets the method, head or data may make some groups fusable: those are fused at run time.
    grid_may_change = any(key.split(".")[0] in ("method", "head", "data") or any(isinstance(v, dict) for v in values)
                          for key, values in s.grid.items())
    if s.fuse > 1 and not can_fuse(cfg.method, cfg.head.kind, cfg.data.dataset) and not grid_may_change:
        fail("sweep.fuse", f"sweep.fuse {s.fuse} fuses PT/APT trials with the vanilla head on MASSIVE, but this "
             f"experiment is {cfg.method} with the {cfg.head.kind} head on {cfg.data.dataset}",
             "set sweep.fuse: 1")
    if s.fuse > 1 and cfg.optim.precision == "fp16" and "optim.precision" not in s.grid:
        fail("sweep.fuse", "fused trials compute in fp32 or bf16, not fp16 (fused fp16 is untested)",
             "set optim.precision: bf16 (or fp32), or sweep.fuse: 1")


def _check_workers(cfg: ExperimentConfig, fail: Fail) -> None:
    """A worker group runs one trial with its global batch split among the workers."""
    workers = cfg.resources.num_workers
    if workers <= 1:
        return
    if cfg.sweep.fuse > 1:
        fail("sweep.fuse", f"sweep.fuse {cfg.sweep.fuse} fuses trials in one process, but resources.num_workers "
             f"{workers} runs each trial on a worker group", "set sweep.fuse: 1, or resources.num_workers: 1")
    if cfg.optim.batch_size < workers:
        fail("optim.batch_size", f"optim.batch_size {cfg.optim.batch_size} leaves a worker of the {workers} "
             "(resources.num_workers) without a row of the batch",
             f"use optim.batch_size >= {workers}, or fewer workers")


def _check_grid_values(cfg: ExperimentConfig, fail: Fail, source: str) -> None:
    """Grid keys and values: no seeds or sweep keys, no empty or mixed axes, and each value makes a
    valid config on its own (types and combinations)."""
    for key, values in cfg.sweep.grid.items():
        gkey = f"sweep.grid.{key}"
        for value in values:
            for dotted in axis_value(key, value):
                if dotted in ("seed", "sweep") or dotted.startswith("sweep."):
                    fail(gkey, f"{dotted!r} cannot be a grid key", "list seeds in sweep.seeds instead")
        if not values:
            fail(gkey, f"sweep grid {key!r} has no values", "list at least one value")
        bundles = [isinstance(value, dict) for value in values]
        if any(bundles) and not all(bundles):
            fail(gkey, f"sweep grid {key!r} mixes mappings and plain values",
                 "make every value a mapping of keys set together, or none")
        for value in values:
            try:
                _probe(cfg, axis_value(key, value), where=gkey, source=source, drop_sweep=False)
            except XsweepError as exc:
                fail(gkey, f"sweep grid value {key}={value!r} is invalid: {exc.what}",
                     exc.fix or "fix the grid value")


def _check_optuna(cfg: ExperimentConfig, fail: Fail) -> None:
    """The Optuna settings and space: well-formed ranges, not also in the grid, and valid configs at
    their ends (or every choice)."""
    o = cfg.sweep.optuna
    if o.trials < 1 or o.parallel < 1:
        fail("sweep.optuna", "sweep.optuna.trials and .parallel must be at least 1", "e.g. trials: 20, parallel: 4")
    if not o.space:
        fail("sweep.optuna.space", "search is optuna but sweep.optuna.space is empty",
             "give ranges, e.g. space: {optim.lr: {low: 1.0e-4, high: 1.0e-1, log: true}}")
    for key, spec in o.space.items():
        where = f"sweep.optuna.space.{key}"
        if key in cfg.sweep.grid:
            fail(where, f"{key!r} is both searched by Optuna and listed in sweep.grid",
                 f"remove {key} from sweep.grid (write `grid: {{}}` for no grid axes)")
        if key == "seed" or key.startswith("sweep."):
            fail(where, f"{key!r} cannot be searched", "list seeds in sweep.seeds instead")
        allowed = {"choices"} if "choices" in spec else {"low", "high", "log", "int"}
        unknown = set(spec) - allowed
        if unknown or ("choices" not in spec and not {"low", "high"} <= set(spec)):
            fail(where, f"range {spec!r} is neither {{low, high[, log, int]}} nor {{choices}}",
                 "write {low: 1.0e-4, high: 1.0e-1, log: true} or {choices: [1, 8, 16]}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"]:
                fail(where, "choices must be a non-empty list", "e.g. choices: [1, 8, 16]")
            samples = spec["choices"]
        else:
            ok_low, low = try_coerce(spec["low"], float)
            ok_high, high = try_coerce(spec["high"], float)
            if not (ok_low and ok_high) or not low < high or (spec.get("log") and low <= 0):
                fail(where, f"range needs numbers low < high (and low > 0 with log); got {spec!r}",
                     "e.g. {low: 1.0e-4, high: 1.0e-1, log: true}")
            samples = [int(low), int(high)] if spec.get("int") else [low, high]
        for value in samples:
            try:
                _probe(cfg, {key: value}, where=where, source="optuna space", drop_sweep=True)
            except XsweepError as exc:
                fail(where, f"searching {key} gives an invalid config at {value!r}: {exc.what}",
                     exc.fix or "fix the range")
    if cfg.align.data and any(key.startswith("prompt.") for key in o.space):
        fail("sweep.optuna.space", "an experiment with an alignment stage cannot search prompt settings: "
             "each would need its own alignment run", "list prompt settings in sweep.grid instead")


def _probe(cfg: ExperimentConfig, values: dict[str, Any], *, where: str, source: str, drop_sweep: bool) -> None:
    """Build `cfg` with dotted `values` set, checking it as a config of its own. `drop_sweep`: the
    whole sweep section goes (an Optuna point), else only its grid (a grid value)."""
    probe = copy.deepcopy(dataclasses.asdict(cfg))
    if drop_sweep:
        probe["sweep"] = {}
    else:
        probe["sweep"]["grid"] = {}
    for dotted, item in values.items():
        set_dotted(probe, dotted, item, where=where)
    check_experiment(build(ExperimentConfig, probe, "", source, {}), source, {})
