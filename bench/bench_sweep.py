"""Sweep time end to end: the quickstart's grid, xsweep against straightforward baselines.

    .venv/bin/python -m bench.bench_sweep [--epochs 30] [--milestone 5] [--out results.json]

All run the same trials (experiments/quickstart.yaml: 2 learning rates x 2 seeds, PT with a layer
prompt of 16 on the built-in model and the demo data, an English dev evaluation every epoch) in
one Ray session, with data and backbone already on disk, and each writes a results table:
  baseline       the issue's straightforward sweep: a Ray Train worker group per trial (Tune trial
                 -> TorchTrainer -> worker runs the loop), which loads the backbone and reads and
                 tokenizes its data itself, and tests every language at every evaluation
                 (`TrialSpec.test_at_every_evaluation`) as well as at the end.
  kind baseline  the same, testing every language once, at the end: what is left when only the
                 hosting differs.
  xsweep         `run_sweep` on the quickstart as it is: trials in reused Tune actors that keep the
                 frozen backbone loaded, English dev only during the grid, then the selected
                 learning rate tested on every language.
  xsweep pruned  the same with `sweep.pruning.milestones=[--milestone]`: the worse learning rate
                 stops, on both seeds, at that epoch.
The selected results must be identical (the script compares the results tables and fails if they
differ): every sweep trains the selected trials with the same loop, so the difference is the harness.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

TITLE = "Sweep time, quickstart grid"
COMMAND = ".venv/bin/python -m bench.bench_sweep"


def baseline_run(cfg, specs: list, run_dir: Path) -> float:
    """Run `specs` as one Ray Train worker group per trial; return the wall seconds."""
    from ray import tune

    resources = asdict(cfg.resources)
    tuner = tune.Tuner(
        tune.with_resources(_baseline_trial, {"cpu": 0.01}),  # the trainer's worker holds the real CPU
        param_space={"spec": tune.grid_search([asdict(s) for s in specs]), "resources": resources,
                     "train_storage": str(run_dir / "train")},
        tune_config=tune.TuneConfig(trial_name_creator=lambda t: t.config["spec"]["trial_id"],
                                    trial_dirname_creator=lambda t: t.config["spec"]["trial_id"]),
        run_config=tune.RunConfig(name="tune", storage_path=str(run_dir / "ray"), verbose=0),
    )
    started = time.perf_counter()
    results = tuner.fit()
    seconds = time.perf_counter() - started
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise SystemExit(f"baseline: a trial failed: {errors[0]}")
    return seconds


def _baseline_trial(config: dict) -> None:
    """The overhead benchmark's baseline trial (one definition of it in bench/), without its probe."""
    import tempfile as _tempfile

    from bench.bench_trial_overhead import baseline_trial

    with _tempfile.TemporaryDirectory() as probe_dir:  # the overhead benchmark's probe, unused here
        baseline_trial({**config, "probe_dir": probe_dir})


def table(run_dir: Path) -> list[list[str]]:
    with open(run_dir / "results" / "results.csv", encoding="utf-8") as f:
        return list(csv.reader(f))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="optim.epochs (the quickstart's is 30)")
    parser.add_argument("--milestone", type=int, default=5,
                        help="sweep.pruning milestone of the pruned xsweep run (epochs)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    from xsweep.config import load_config
    from xsweep.paths import REPO_ROOT
    from xsweep.report.run import report_run
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.ray_session import start_ray
    from xsweep.sweep.runner import plan_trials, run_sweep

    with tempfile.TemporaryDirectory(prefix="xsweep-bench-sweep-") as tmp:
        root = Path(tmp)
        overrides = [f"storage.root={root}", f"optim.epochs={args.epochs}"]
        quiet = lambda _: None  # noqa: E731
        base_cfg = load_config(REPO_ROOT / "experiments" / "quickstart.yaml",
                               [*overrides, "storage.name=baseline", "sweep.evaluate=all"])
        inputs = prepare_inputs(base_cfg, log=quiet)  # data and backbone on disk before any timing
        start_ray()

        timings: dict[str, float] = {}
        for name, extra in (("xsweep", []), ("xsweep_pruned", [f"sweep.pruning.milestones=[{args.milestone}]"])):
            cfg = load_config(REPO_ROOT / "experiments" / "quickstart.yaml", [*overrides, f"storage.name={name}", *extra])
            started = time.perf_counter()
            run_dir, failed = run_sweep(cfg, log=quiet)
            timings[name] = time.perf_counter() - started
            if failed:
                raise SystemExit(f"{name}: trials failed: {failed}")
            report_run(run_dir)
        run_dir = root / "xsweep"
        same = table(run_dir) == table(root / "xsweep_pruned")
        for name, every in (("baseline", True), ("kind_baseline", False)):
            base_dir = root / name
            specs = [replace(s, test_at_every_evaluation=every) for s in plan_trials(base_cfg, base_dir, inputs)]
            timings[name] = baseline_run(base_cfg, specs, base_dir)
            report_run(base_dir)
            same = same and table(run_dir) == table(base_dir)
        result = {"trials": len(specs), "epochs": args.epochs, "locales": len(inputs.eval_locales),
                  **{f"{name}_s": round(seconds, 1) for name, seconds in timings.items()},
                  "milestone": args.milestone,
                  "ratio": round(timings["baseline"] / timings["xsweep"], 2),
                  "ratio_kind": round(timings["kind_baseline"] / timings["xsweep"], 2),
                  "ratio_pruned": round(timings["baseline"] / timings["xsweep_pruned"], 2),
                  "ratio_kind_pruned": round(timings["kind_baseline"] / timings["xsweep_pruned"], 2),
                  "identical_tables": same, "machine": f"{platform.machine()}, {platform.processor() or '?'}",
                  "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if not same:
        raise SystemExit("the two sweeps selected different results: the comparison is void")
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    base, kind = result["baseline_s"], result["kind_baseline_s"]
    return (f"{written_by(command)}\n\n"
            f"{result['trials']} trials of experiments/quickstart.yaml ({result['epochs']} epochs, English dev "
            f"every epoch, {result['locales']} test languages); data and backbone on disk before timing; one Ray "
            "session, the sweeps one after another.\n\n"
            "| sweep | wall seconds | baseline / it | kind baseline / it |\n|---|---|---|---|\n"
            f"| baseline (the issue's): a Ray Train worker group per trial, every language tested at every "
            f"evaluation | {base} | 1.00x | |\n"
            f"| kind baseline: a Ray Train worker group per trial, every language tested once per trial | "
            f"{kind} | | 1.00x |\n"
            f"| xsweep, the quickstart as it is: reused actors, backbone kept, English dev only, then the "
            f"selected lr tested (evaluation stage) | {result['xsweep_s']} | **{result['ratio']}x** | "
            f"{result['ratio_kind']}x |\n"
            f"| xsweep with `sweep.pruning.milestones=[{result['milestone']}]`: the worse half of the learning "
            f"rates stops on all seeds at epoch {result['milestone']} | {result['xsweep_pruned_s']} | "
            f"**{result['ratio_pruned']}x** | {result['ratio_kind_pruned']}x |\n\n"
            f"Identical results tables (the selected lr's test scores per language, all four sweeps): "
            f"{result['identical_tables']}. All train the selected trials with the same loop for the same epochs "
            "(a paused trial continues bit for bit), so their training is common to all; the differences are "
            "trial start-up, evaluation, per-trial loading, and, with pruning, the epochs the worse learning "
            "rate does not train.\n")


if __name__ == "__main__":
    from bench.run import update_section

    update_section(TITLE, section(main()))
