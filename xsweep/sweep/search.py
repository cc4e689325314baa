"""Optuna (TPE) search: an alternative to listing values in the grid, with the grid's seed handling.

One study per grid point (the grid then holds only the axes that are not searched). TPE suggests
`parallel` points at a time; each point runs as ordinary trials, one per seed, and TPE is told the
mean over seeds of their best English dev scores, so a suggested point is judged exactly like a
grid point. Trials keep the grid's stable ids, and a seeded TPE told the same scores suggests the
same points again, so `--resume` finds every finished trial and runs only what is missing.
What each study suggested and scored is written to `search/optuna-<n>.json` in the run directory.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Callable

from xsweep.atomic import write_json
from xsweep.config import ExperimentConfig, grid_points
from xsweep.record import RECORD_FILE, read_record

RunTrials = Callable[[int, list[dict[str, Any]]], list[Any]]
"""run_trials(first_index, points) -> the TrialSpecs of those points, all run (finished ones skipped)."""


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The point an Optuna trial suggests: dotted key -> value."""
    point = {}
    for key, spec in space.items():
        if "choices" in spec:
            point[key] = trial.suggest_categorical(key, spec["choices"])
        elif spec.get("int"):
            point[key] = trial.suggest_int(key, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log")))
        else:
            point[key] = trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))
    return point


def point_score(specs: list[Any]) -> float | None:
    """Mean best English dev score over a point's finished seeds; None if none finished."""
    scores = []
    for spec in specs:
        path = Path(spec.trial_dir) / RECORD_FILE
        if path.is_file():
            record = read_record(path)
            if record.status == "completed" and record.best_dev is not None:
                scores.append(record.best_dev)
    return statistics.fmean(scores) if scores else None


def run_optuna(cfg: ExperimentConfig, run_dir: Path, run_trials: RunTrials, *, log: Callable[[str], None]
               ) -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    o = cfg.sweep.optuna
    bases = grid_points(cfg)
    for study_number, base in enumerate(bases):
        sampler = optuna.samplers.TPESampler(seed=o.seed + study_number)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        history: list[dict[str, Any]] = []
        fixed = ", ".join(f"{k}={v}" for k, v in base.items()) or "no grid axes"
        while len(history) < o.trials:
            asked = [study.ask() for _ in range(min(o.parallel, o.trials - len(history)))]
            points = [{**base, **suggest(trial, o.space)} for trial in asked]
            # Indices continue the grid's numbering: each point owns its index, stable on resume.
            first = len(bases) + study_number * o.trials + len(history)
            specs = run_trials(first, points)
            seeds = len(cfg.sweep.seeds)
            for i, (trial, point) in enumerate(zip(asked, points)):
                score = point_score(specs[i * seeds:(i + 1) * seeds])
                if score is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, score)
                history.append({"point": point, "mean_best_dev": score})
            log(f"optuna study {study_number + 1}/{len(bases)} ({fixed}): {len(history)}/{o.trials} points; "
                f"best so far {_best(history)}")
        write_json(run_dir / "search" / f"optuna-{study_number}.json",
                   {"fixed": base, "space": o.space, "sampler": "TPE", "seed": o.seed + study_number,
                    "seeds_per_point": list(cfg.sweep.seeds), "points": history})


def _best(history: list[dict[str, Any]]) -> str:
    scored = [h for h in history if h["mean_best_dev"] is not None]
    if not scored:
        return "none yet"
    top = max(scored, key=lambda h: h["mean_best_dev"])
    values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in top["point"].items())
    return f"{top['mean_best_dev']:.4f} at {values}"
