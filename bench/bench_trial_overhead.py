"""Per-trial overhead of downstream trials on Ray: a Ray Train worker group per trial (the
baseline) vs the loop in the trial's own reused Tune actor (xsweep's `sweep.trial.run_trial`).

    .venv/bin/python -m bench.bench_trial_overhead [--trials 8] [--backbone builtin:tiny]
                                                   [--group] [--out results.json]

Overhead of a trial: from the moment Tune may launch it to its first training step. Trials run one
at a time, so that moment is when `fit()` began (the first trial) or when the previous trial
ended (the others). The first training step ends when the loop logs its first training loss: a probe in
the trial's process wraps `TrialWriter.scalar` and writes the time of that first `train/loss`,
without touching the loop. Everything between is overhead: starting actors and workers,
Ray Train's worker group, imports, reading the data, loading the backbone, building the model.
Data and backbone are on disk before any timing (`prepare_inputs`), as in a sweep.

(a) baseline: each Tune trial is a small driver that builds a one-worker `TorchTrainer` whose
    worker runs the loop (xsweep's hosting until this benchmark; kept here to measure against).
(b) xsweep: `tune.with_resources(run_trial, ...)` with `reuse_actors=True`; the actor keeps the
    frozen backbone, so trials 2..N of an actor also skip loading it.
(c) with `--group`: xsweep's own worker-group path (`sweep.workers`), the same trials at
    `resources.num_workers` 2 and half a CPU a worker: each Tune trial is a driver that builds a
    two-worker `TorchTrainer`; the probe sits in rank 0's worker.
All run in one Ray session, with the same trials (N learning rates, one seed, 1 epoch).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

TITLE = "Downstream trial overhead on Ray"
COMMAND = ".venv/bin/python -m bench.bench_trial_overhead"
EXPERIMENT = """\
name: bench-overhead
method: pt
backbone: {{name: "{backbone}"}}
data: {{path: demo, max_seq_len: 48, shots: 5, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 16}}
optim: {{epochs: 1, batch_size: 16}}
sweep:
  grid: {{optim.lr: [{lrs}]}}
  seeds: [0]
  max_concurrent_trials: 1
resources: {{cpus_per_trial: 1}}
storage: {{root: {root}}}
"""


@contextmanager
def first_step_probe(trial_id: str, probe_dir: str):
    """In a trial's process: write `<probe_dir>/<trial_id>` with the time the first step ended.

    The loop logs `train/loss` after every optimiser step (`TrialWriter.scalar`); its first call
    marks the end of the first training step, whatever the loop's internals are called.
    """
    from xsweep.trial_log import TrialWriter

    original, seen = TrialWriter.scalar, []

    def timed(writer, name, *args, **kwargs):
        if name == "train/loss" and not seen:
            seen.append(time.time())
            Path(probe_dir, trial_id).write_text(repr(seen[0]))
        return original(writer, name, *args, **kwargs)

    TrialWriter.scalar = timed
    try:
        yield
    finally:
        TrialWriter.scalar = original


def xsweep_trial(config: dict[str, Any]) -> None:
    """(b): xsweep's trainable, with the probe."""
    from xsweep.sweep.trial import run_trial

    with first_step_probe(config["spec"]["trial_id"], config["probe_dir"]):
        run_trial({**config, "specs": [config["spec"]]})


def baseline_worker(loop_config: dict[str, Any]) -> None:
    """(a), the Ray Train worker: the loop, reporting through `ray.train.report`."""
    import ray.train
    import torch

    from xsweep.train.downstream import run_downstream
    from xsweep.train.spec import TrialSpec

    torch.set_num_threads(max(1, int(loop_config["cpus_per_worker"])))
    with first_step_probe(loop_config["spec"]["trial_id"], loop_config["probe_dir"]):
        run_downstream(TrialSpec(**loop_config["spec"]), report=ray.train.report)


def baseline_trial(config: dict[str, Any]) -> None:
    """(a), the Tune trainable: build and fit a single-trial, one-worker TorchTrainer."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    spec, cpus = config["spec"], config["resources"]["cpus_per_trial"]
    TorchTrainer(
        baseline_worker,
        train_loop_config={"spec": spec, "cpus_per_worker": cpus, "probe_dir": config["probe_dir"]},
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": cpus}),
        run_config=ray.train.RunConfig(name=spec["trial_id"], storage_path=config["train_storage"],
                                       callbacks=[TuneReportCallback()]),
    ).fit()


def group_worker(loop_config: dict[str, Any], probe_dir: str) -> None:
    """(c), a rank of the worker group: xsweep's worker, rank 0 with the probe."""
    import ray.train

    from xsweep.sweep.workers import trial_worker

    if ray.train.get_context().get_world_rank() != 0:
        return trial_worker(loop_config)
    with first_step_probe(loop_config["spec"]["trial_id"], probe_dir):
        trial_worker(loop_config)


def group_trial(config: dict[str, Any]) -> None:
    """(c), the Tune trainable: xsweep's driver of the trial's worker group (`sweep.workers`)."""
    from functools import partial

    from xsweep.sweep.workers import run_on_workers
    from xsweep.train.spec import TrialSpec

    run_on_workers(TrialSpec(**config["spec"]), worker=partial(group_worker, probe_dir=config["probe_dir"]))


def run_trials(hosting: str, specs: list, resources: dict, folder: Path) -> dict:
    """Run `specs` one at a time under `hosting`; return overheads (s) in trial order and the wall time."""
    from ray import tune

    probe_dir = folder / "probe"
    probe_dir.mkdir(parents=True)
    ended: dict[str, float] = {}

    class TrialEnds(tune.Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            ended[trial.config["spec"]["trial_id"]] = time.time()

    if hosting == "xsweep":
        from xsweep.sweep.hosting import trial_resources
        from xsweep.config import ResourcesConfig

        trainable = tune.with_resources(xsweep_trial, trial_resources(ResourcesConfig(**resources)))
    elif hosting == "group":
        from xsweep.sweep.hosting import DRIVER_CPUS

        trainable = tune.with_resources(group_trial, {"cpu": DRIVER_CPUS})
    else:  # the driver only waits on its trainer; the trainer's worker holds the real resources
        trainable = tune.with_resources(baseline_trial, {"cpu": 0.01})
    tuner = tune.Tuner(
        trainable,
        param_space={"spec": tune.grid_search([asdict(s) for s in specs]), "resources": resources,
                     "probe_dir": str(probe_dir), "train_storage": str(folder / "train")},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=hosting == "xsweep",
                                    trial_name_creator=lambda t: t.config["spec"]["trial_id"],
                                    trial_dirname_creator=lambda t: t.config["spec"]["trial_id"]),
        run_config=tune.RunConfig(name="tune", storage_path=str(folder / "ray"), verbose=0,
                                  callbacks=[TrialEnds()]),
    )
    start = time.time()
    results = tuner.fit()
    wall = time.time() - start
    errors = [r.error for r in results if r.error is not None]
    if errors:
        raise SystemExit(f"{hosting}: a trial failed: {errors[0]}")
    first_steps = {}
    for spec in specs:
        probe = probe_dir / spec.trial_id
        if not probe.is_file():
            raise SystemExit(f"{hosting}: trial {spec.trial_id} recorded no first step "
                             "(does the loop still log train/loss each step?)")
        first_steps[spec.trial_id] = float(probe.read_text())
    # Tune runs a grid in its own order: sort trials by when they started training.
    order = sorted(first_steps, key=first_steps.get)
    launchable = [start] + [ended[t] for t in order[:-1]]
    overheads = [first_steps[t] - ready for t, ready in zip(order, launchable)]
    return {"overheads_s": [round(x, 3) for x in overheads], "wall_s": round(wall, 2)}


def summary(run: dict) -> dict:
    over = run["overheads_s"]
    return {"first_s": over[0], "later_mean_s": round(statistics.mean(over[1:]), 3) if len(over) > 1 else None,
            "amortised_s": round(statistics.mean(over), 3), "wall_s": run["wall_s"], "overheads_s": over}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8, help="trials per hosting (N learning rates)")
    parser.add_argument("--backbone", default="builtin:tiny", help="backbone.name of the trials")
    parser.add_argument("--xsweep-first", action="store_true",
                        help="run xsweep's hosting before the baseline (to see what going first costs)")
    parser.add_argument("--group", action="store_true",
                        help="also run the trials on 2-worker groups, as xsweep runs resources.num_workers 2")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)

    from xsweep.config import load_config, with_overrides
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.ray_session import start_ray
    from xsweep.sweep.runner import plan_trials

    lrs = ", ".join(f"{0.01 * (i + 1):.2f}" for i in range(args.trials))
    result: dict[str, Any] = {"trials": args.trials, "backbone": args.backbone, "xsweep_first": args.xsweep_first,
                              "group": args.group}
    with tempfile.TemporaryDirectory(prefix="xsweep-bench-trials-") as tmp:
        root = Path(tmp)
        config = root / "bench.yaml"
        config.write_text(EXPERIMENT.format(backbone=args.backbone, lrs=lrs, root=root / "runs"))
        cfg = load_config(config)
        inputs = prepare_inputs(cfg, log=lambda line: print(line, file=sys.stderr))
        start_ray()
        hostings = ("xsweep", "baseline") if args.xsweep_first else ("baseline", "xsweep")
        for hosting in hostings + ("group",) * args.group:
            # (c): the same trials as xsweep runs them at resources.num_workers 2 (half a CPU a worker)
            trial_cfg = with_overrides(cfg, {"resources.num_workers": 2, "resources.cpus_per_trial": 0.5}) \
                if hosting == "group" else cfg
            specs = plan_trials(trial_cfg, root / hosting / "run", inputs)
            result[hosting] = summary(run_trials(hosting, specs, asdict(cfg.resources), root / hosting))
            print(f"{hosting:8} first {result[hosting]['first_s']:6.2f} s, "
                  f"later mean {result[hosting]['later_mean_s']:6.2f} s, "
                  f"amortised {result[hosting]['amortised_s']:6.2f} s per trial, "
                  f"{args.trials} trials in {result[hosting]['wall_s']:.1f} s", flush=True)
    base, new = result["baseline"], result["xsweep"]
    result["amortised_ratio"] = round(base["amortised_s"] / new["amortised_s"], 1)
    result["wall_ratio"] = round(base["wall_s"] / new["wall_s"], 2)
    result["machine"] = f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}"
    print(f"ratio    {result['amortised_ratio']:.1f}x less overhead per trial (amortised over {args.trials}), "
          f"{result['wall_ratio']:.2f}x faster wall for the {args.trials} trials")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


def section(result: dict, command: str = COMMAND) -> str:
    """This benchmark's section of bench/RESULTS.md."""
    from bench.run import written_by

    base, new, n = result["baseline"], result["xsweep"], result["trials"]
    first = "xsweep's hosting" if result.get("xsweep_first") else "the baseline"
    if result.get("xsweep_first"):
        command += " --xsweep-first"
    if result.get("group"):
        command += f" --group --trials {n}"

    def row(name: str, r: dict) -> str:
        return f"| {name} | {r['first_s']:.2f} | {r['later_mean_s']:.2f} | {r['amortised_s']:.2f} | {r['wall_s']:.1f} |"

    return "\n".join([
        written_by(command),
        "",
        f"{n} downstream trials one at a time (backbone `{result['backbone']}`, 5 shots, 1 epoch, "
        f"1 CPU per trial; {first} ran first, in the same Ray session); overhead = from when Tune may launch "
        "a trial to the end of its first training step (docs/trials.md).",
        "",
        f"| hosting | first trial (s) | trials 2..{n}, mean (s) | amortised over {n} (s) | wall, {n} trials (s) |",
        "|---|---|---|---|---|",
        row("baseline: a Ray Train worker group per trial", base),
        row("xsweep: the trial's own Tune actor, reused, backbone kept", new),
        *([row("xsweep, resources.num_workers 2: a worker group per trial (0.5 CPU a worker)", result["group"])]
          if result.get("group") else []),
        "",
        f"Ratio: {result['amortised_ratio']:.1f}x less overhead per trial amortised over {n} trials; "
        f"{result['wall_ratio']:.2f}x less wall time for the {n} trials. Measured while other jobs "
        "shared the two cores; compare the ratio, not the seconds.",
        *(["", f"A trial on a 2-worker group (`resources.num_workers: 2`) pays "
               f"{result['group']['amortised_s'] / new['amortised_s']:.1f}x the amortised overhead of a trial in a "
               f"reused actor, every trial again: a driver, Train V2's controller, two worker processes, the "
               "process group and the backbone."] if result.get("group") else []),
        "",
    ])


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:])))
    print(f"wrote {RESULTS}")
