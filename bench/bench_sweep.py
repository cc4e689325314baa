"""Sweep time end to end: the quickstart's grid, xsweep against a straightforward baseline.

    .venv/bin/python -m bench.bench_sweep [--epochs 30] [--out results.json]

Both run the same trials (experiments/quickstart.yaml: 2 learning rates x 2 seeds, PT with a layer
prompt of 16 on the built-in model and the demo data) in one Ray session, with data and backbone
already on disk, and both write a results table:
  xsweep    `run_sweep`: trials in reused Tune actors that keep the frozen backbone loaded, English
            dev only during the grid, then the selected learning rate tested on every language.
  baseline  a Ray Train worker group per trial (Tune trial -> TorchTrainer -> worker runs the loop),
            which loads the backbone itself, and every trial tested on every language.
The selected results must be identical (the script compares the two results tables and fails if
they differ). The baseline does not test every language at every dev evaluation, which a naive
loop would: it is kinder to itself than the issue's baseline, so the ratio is conservative.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict
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
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    from xsweep.config import load_config
    from xsweep.paths import REPO_ROOT
    from xsweep.report.run import report_run
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.runner import plan_trials, run_sweep, start_ray

    with tempfile.TemporaryDirectory(prefix="xsweep-bench-sweep-") as tmp:
        root = Path(tmp)
        overrides = [f"storage.root={root}", f"optim.epochs={args.epochs}"]
        quiet = lambda _: None  # noqa: E731
        xsweep_cfg = load_config(REPO_ROOT / "experiments" / "quickstart.yaml", [*overrides, "storage.name=xsweep"])
        base_cfg = load_config(REPO_ROOT / "experiments" / "quickstart.yaml",
                               [*overrides, "storage.name=baseline", "sweep.evaluate=all"])
        inputs = prepare_inputs(xsweep_cfg, log=quiet)  # data and backbone on disk before any timing
        start_ray()

        started = time.perf_counter()
        run_dir, failed = run_sweep(xsweep_cfg, log=quiet)
        xsweep_s = time.perf_counter() - started
        if failed:
            raise SystemExit(f"xsweep: trials failed: {failed}")
        report_run(run_dir)

        base_dir = root / "baseline"
        specs = plan_trials(base_cfg, base_dir, inputs)
        baseline_s = baseline_run(base_cfg, specs, base_dir)
        report_run(base_dir)

        same = table(run_dir) == table(base_dir)
        result = {"trials": len(specs), "epochs": args.epochs, "xsweep_s": round(xsweep_s, 1),
                  "baseline_s": round(baseline_s, 1), "ratio": round(baseline_s / xsweep_s, 2),
                  "identical_tables": same, "machine": f"{platform.machine()}, {platform.processor() or '?'}",
                  "python": sys.version.split()[0]}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if not same:
        raise SystemExit("the two sweeps selected different results: the comparison is void")
    return result


def section(result: dict, command: str = COMMAND) -> str:
    return (f"Command: `{command}` ({result['trials']} trials of experiments/quickstart.yaml, "
            f"{result['epochs']} epochs; data and backbone on disk before timing; one Ray session).\n\n"
            "| hosting | wall seconds |\n|---|---|\n"
            f"| baseline: Ray Train worker group per trial, every trial tested on every language | "
            f"{result['baseline_s']} |\n"
            f"| xsweep: reused actors, backbone kept, selected lr tested (evaluation stage) | {result['xsweep_s']} |\n\n"
            f"**{result['ratio']}x** faster; identical results tables: {result['identical_tables']}. "
            "The baseline tests languages once per trial, not at every dev evaluation, so the ratio is "
            "conservative.\n")


if __name__ == "__main__":
    main()
