"""What `xsweep run CONFIG --dry-run` prints about cost, under the plan.

The upper bounds of the projection (sweep/cost.py), device-hours at a measured rate
(sweep/throughput.py), and, when asked: the expected figure of `--like RUN_DIR` (the share of
`optim.epochs` a finished run's trials trained before early stopping) and the trials that fit on
one GPU from `--gpu-check FILE` (bench/gpu_check.py's peak memory of one trial). Anything not
measured is printed as "not measured", with the command that measures it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xsweep.config import ExperimentConfig, grid_points, with_overrides
from xsweep.paths import cache_dir
from xsweep.sweep.cost import (MEAN_HYPOTHESIS_TOKENS, BackboneSize, DataSize, Projection, backbone_size,
                               compute_kind, data_size, project)
from xsweep.sweep.throughput import THROUGHPUT_FILE, describe_measurement, hours_at, rates, stored_measurements

BENCH_STEP = "python -m bench.bench_step"
GPU_CHECK = "python -m bench.gpu_check"


def _device_words(device: str, precision: str, precision_setting: str) -> str:
    if device == "cpu":
        return f"{precision} on CPU (resources.gpus_per_trial 0)"
    assumed = (" (optim.precision auto: taken as bf16, what a bf16-capable GPU resolves it to; a dry run "
               "queries no GPU)") if precision_setting == "auto" and precision == "bf16" else ""
    return f"{precision} on a GPU (resources.gpus_per_trial > 0){assumed}"


def describe_cost(cfg: ExperimentConfig, throughput: str | None = None) -> list[str]:
    """The lines `--dry-run` prints under the plan."""
    data = data_size(cfg)
    if data is None:
        return ["cost projection: skipped, the data's size is unknown without reading it "
                f"(data.dataset {cfg.data.dataset}, data.path {cfg.data.path}: "
                "MASSIVE 1.1 or a MASSIVE-format folder on disk is projected)"]
    backbone = backbone_size(cfg.backbone.name)
    p = project(cfg, data, backbone)
    methods = ", ".join(f"{m} {n:,}" for m, n in p.trials_by_method.items())
    where = ("every trial tests itself" if cfg.sweep.evaluate == "all" else
             "FT trials test themselves; PT/APT only the selected learning rate's seeds (sweep.evaluate: selected)")
    nli = cfg.head.kind == "nli" or any(with_overrides(cfg, pt).head.kind == "nli" for pt in grid_points(cfg))
    pairs = f" (NLI: x{data.intents} intents a sequence)" if nli else ""
    lines = [
        "cost projection (upper bounds: every trial counted for all optim.epochs and every dev evaluation they "
        "allow; early stopping usually ends trials much sooner, see --like; alignment stages not included)",
        f"  data: {data.source}; {data.intents} intents, dev {data.dev:,}, test {len(data.test)} locale(s), "
        f"{sum(data.test.values()):,} utterances",
        f"  trials: {p.trials:,} ({methods})" + (f", {cfg.sweep.optuna.trials} Optuna points per grid point"
                                                if cfg.sweep.search == "optuna" else ""),
        f"  training: at most {p.train_examples:,} examples ({p.train_sequences:,} sequences), {p.steps:,} steps",
        f"  English dev: at most {p.dev_evaluations:,} evaluations, {p.dev_sequences:,} sequences{pairs}",
        f"  test: {p.tested_trials:,} trials x {len(data.test)} locale(s) = {p.test_sequences:,} sequences ({where})",
    ]
    if backbone is None:
        lines.append(f"  FLOPs: skipped, backbone {cfg.backbone.name!r} has no known size (known: built-ins, "
                     "XLM-R base/large/XL, MiniLM, a local folder with config.json, or a hub id in the Hugging "
                     "Face cache)")
        return lines
    pair_tokens = f", +{MEAN_HYPOTHESIS_TOKENS:.0f} an NLI pair" if nli else ""
    lines += [
        f"  FLOPs ({backbone.name}: {backbone.layers} layers, hidden {backbone.hidden}, "
        f"{backbone.layer_params / 1e6:,.0f}M layer + {backbone.embedding_params / 1e6:,.0f}M embedding parameters; "
        f"{data.mean_tokens:.1f} tokens an utterance{pair_tokens}): training {p.train_flops:.2e}, dev {p.dev_flops:.2e}, "
        f"test {p.test_flops:.2e}, total {p.total_flops:.2e}",
        "    forward ~ 2 x layer parameters x tokens + 4 x layers x hidden x T x (T + layer prompt); backward "
        "~ 1x forward with a frozen backbone (activation gradients), 2x for FT; head, optimiser, padding left out",
    ]
    lines += ["  " + line for line in device_hours(cfg, p, backbone, data, throughput)]
    return lines


def device_hours(cfg: ExperimentConfig, p: Projection, backbone: BackboneSize, data: DataSize,
                 throughput: str | None) -> list[str]:
    """The upper bound in device-hours at measured rates, or which measurement is missing and how to make it."""
    found, missing = rates(p, backbone, data, throughput)
    if not missing:
        said = "; ".join(dict.fromkeys(said for _, said in found.values()))
        return [f"device-hours: at most {hours_at(p, found):,.1f} at {said}"]
    stored = stored_measurements()
    lines = []
    for device, precision in missing:
        fix = (f"`{BENCH_STEP} --backbone {cfg.backbone.name}` measures it on this CPU, or pass --throughput "
               "RATE" if device == "cpu" else f"bench_step measures CPUs only: run `{GPU_CHECK} --out DIR` on the "
               f"GPU and pass its {precision} training TFLOP/s as --throughput <N>T")
        lines.append(f"device-hours: not measured for {backbone.name} (hidden {backbone.hidden}, FFN "
                     f"{backbone.intermediate}) at {_device_words(device, precision, cfg.optim.precision)}; {fix}")
    lines.append("  stored measurements: " + ("; ".join(describe_measurement(m) for m in stored) if stored else
                                              f"none ({cache_dir() / THROUGHPUT_FILE})"))
    return lines


# ---------------------------------------------------------------------------------------------
# From measurement: early stopping of an earlier run, memory of one trial on a GPU


@dataclass(frozen=True)
class EarlyStopping:
    """How much of `optim.epochs` the finished trials of a run trained."""

    run_dir: Path
    fraction_by_method: dict[str, float]
    """Method -> mean over its finished trials of epochs trained / optim.epochs."""
    records_by_method: dict[str, int]
    fraction: float
    """The mean over all finished trials, for methods the run did not have."""
    left_out: int
    """Records of trials that had not finished (running, paused, failed, diverged, ...)."""
    precisions: tuple[str, ...]


def epochs_trained(record: Any) -> int | None:
    """Epochs a finished trial trained: its last dev evaluation (training stops right after one), or,
    without a dev history, its best epoch + patience x eval_every_epochs, at most optim.epochs."""
    if record.dev_history:
        return max(point.epoch for point in record.dev_history)
    if record.best_epoch is None:
        return None
    optim = record.config.get("optim", {})
    return min(record.best_epoch + optim.get("patience", 5) * optim.get("eval_every_epochs", 1),
               optim.get("epochs", record.best_epoch))


def read_early_stopping(run_dir: Path) -> EarlyStopping:
    """The early stopping of the run in `run_dir`, from its trial records (`--like RUN_DIR`)."""
    from xsweep.errors import XsweepError
    from xsweep.record import RECORD_FILE, read_records

    run_dir = Path(run_dir)
    fix = "give a run directory of an earlier `xsweep run` (it holds trials/<id>/record.json), e.g. runs/<name>"
    if not run_dir.is_dir():
        raise XsweepError(f"run directory {str(run_dir)!r} does not exist", where="--like", fix=fix)
    records = read_records(run_dir)
    if not records:
        raise XsweepError(f"no trial records in {str(run_dir)!r} (no trials/*/{RECORD_FILE})", where="--like",
                          fix=fix)
    shares: dict[str, list[float]] = {}
    precisions = set()
    for record in records:
        epochs = record.config.get("optim", {}).get("epochs")
        trained = epochs_trained(record) if record.status == "completed" else None
        if trained is None or not epochs:
            continue
        shares.setdefault(record.config.get("method", "?"), []).append(min(trained / epochs, 1.0))
        precisions.add(record.precision or "fp32")
    if not shares:
        raise XsweepError(f"none of the {len(records)} trial records in {str(run_dir)!r} is of a finished trial "
                          "with its dev history and optim.epochs", where="--like",
                          fix="give a run whose trials finished (status completed), or finish it with --resume")
    every = [share for method in shares.values() for share in method]
    return EarlyStopping(run_dir, {m: sum(v) / len(v) for m, v in shares.items()},
                         {m: len(v) for m, v in shares.items()}, sum(every) / len(every),
                         len(records) - len(every), tuple(sorted(precisions)))


def describe_expected(cfg: ExperimentConfig, like: EarlyStopping, throughput: str | None = None) -> list[str]:
    """The expected figure next to the upper bound: training and dev scaled by the share of
    optim.epochs the trials of `like` trained, by method (test runs once a trial either way)."""
    data, backbone = data_size(cfg), backbone_size(cfg.backbone.name)
    per_method = ", ".join(f"{m} {f:.0%} over {like.records_by_method[m]}" for m, f in like.fraction_by_method.items())
    said = (f"expected, like {like.run_dir} ({sum(like.records_by_method.values())} finished trial records"
            + (f"; {like.left_out} unfinished left out" if like.left_out else "")
            + f"; {'/'.join(like.precisions)}): trials trained {per_method} of their optim.epochs; "
            f"other methods at the overall {like.fraction:.0%}")
    if data is None or backbone is None:
        return [f"  {said}; no FLOPs to scale (the data's or the backbone's size is unknown)"]
    p = project(cfg, data, backbone)
    fraction = {method: like.fraction_by_method.get(method, like.fraction) for method, _, _ in p.flops_by_kind}
    flops = sum(fraction[m] * train_dev + test for (m, _, _), (train_dev, test) in p.flops_by_kind.items())
    found, missing = rates(p, backbone, data, throughput)
    hours = (f"device-hours {hours_at(p, found, fraction):,.1f} (upper bound {hours_at(p, found):,.1f})" if not missing
             else "device-hours not measured (above)")
    return [f"  {said}",
            f"    training and dev scaled by it, test not: FLOPs {flops:.2e} (upper bound {p.total_flops:.2e}), {hours}"]


GPU_CHECK_KEYS = {"device": ("type", "name"), "shape": ("layers", "hidden", "intermediate", "vocab"),
                  "memory_per_trial": ("precision", "batch", "peak_mib")}
"""What the dry run reads of bench/gpu_check.py's gpu_check.json."""


def read_gpu_check(path: Path) -> dict[str, Any]:
    """bench/gpu_check.py's report (`--gpu-check FILE`), checked for the keys the dry run reads."""
    from xsweep.errors import XsweepError

    fix = f"give the gpu_check.json that `{GPU_CHECK} --out DIR` writes (DIR/gpu_check.json)"
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise XsweepError(f"cannot read {str(path)!r}: {exc.strerror or exc}", where="--gpu-check", fix=fix) from None
    except ValueError as exc:
        raise XsweepError(f"{str(path)!r} is not JSON: {exc}", where="--gpu-check", fix=fix) from None
    for section, keys in GPU_CHECK_KEYS.items():
        part = report.get(section) if isinstance(report, dict) else None
        absent = [f"{section}.{k}" for k in keys if not isinstance(part, dict) or k not in part]
        if absent:
            raise XsweepError(f"{str(path)!r} is not a gpu_check report: it lacks {', '.join(absent)}",
                              where="--gpu-check", fix=fix)
    return report


def _device_memory_mib(device: dict[str, Any]) -> tuple[float | None, str]:
    """The GPU's memory: the report's `memory_mib` where it gives one, else the size in the device's
    name (NVIDIA names most data-centre parts by it: "A100-SXM4-80GB", "H100 80GB HBM3")."""
    if isinstance(device.get("memory_mib"), (int, float)):
        return float(device["memory_mib"]), "measured by gpu_check"
    match = re.search(r"(\d+)\s*GB", str(device.get("name", "")))
    if match:
        return int(match.group(1)) * 1024.0, (f"{match.group(1)} GB from the device's name; gpu_check.json does not "
                                             "record the device's memory")
    return None, ""


def trials_per_gpu(cfg: ExperimentConfig, report: dict[str, Any] | None, source: str = "--gpu-check") -> list[str]:
    """How many trials fit on one GPU at each `resources.gpus_per_trial` of the grid, from the memory
    of one trial gpu_check measured; "not measured" with the reason and the fix otherwise."""
    shares = sorted({(trial.resources.gpus_per_trial, compute_kind(trial)[1])
                     for trial in (with_overrides(cfg, point) for point in grid_points(cfg))
                     if trial.resources.gpus_per_trial > 0})
    if not shares:
        return ["  trials per GPU: none asked for (resources.gpus_per_trial 0: the trials run on CPUs)"]
    if report is None:
        return [f"  trials per GPU: not measured (run `{GPU_CHECK} --out DIR` on the GPU, then add "
                "`--gpu-check DIR/gpu_check.json` to this dry run)"]
    device, shape, memory = report["device"], report["shape"], report["memory_per_trial"]
    per_trial = memory["peak_mib"]
    measured_on = f"{device['name']} ({device['type']}, {report.get('date', '?')})"
    backbone = backbone_size(cfg.backbone.name)
    ours = None if backbone is None else (backbone.layers, backbone.hidden, backbone.intermediate, backbone.vocab)
    theirs = (shape["layers"], shape["hidden"], shape["intermediate"], shape["vocab"])
    device_mib, device_said = _device_memory_mib(device)
    reason = None
    if device["type"] != "cuda" or not isinstance(per_trial, (int, float)):
        reason = f"{source} was measured on {measured_on}: memory per trial {per_trial}"
    elif ours != theirs:
        reason = (f"{source} measured a {theirs[0]}-layer encoder, hidden {theirs[1]}, FFN {theirs[2]}, vocabulary "
                  f"{theirs[3]}; backbone {cfg.backbone.name} is " + ("of unknown size" if ours is None else
                  f"{ours[0]} layers, hidden {ours[1]}, FFN {ours[2]}, vocabulary {ours[3]}"))
    elif device_mib is None:
        reason = f"{source} does not record the memory of {device['name']!r}, nor does its name give it"
    if reason:
        return [f"  trials per GPU: not measured ({reason}; run `{GPU_CHECK} --out DIR` on the GPU for this "
                "backbone, then --gpu-check DIR/gpu_check.json)"]
    lines = [f"  trials per GPU: one PT trial peaks at {per_trial:,.0f} MiB ({memory['precision']}, batch "
             f"{memory['batch']}, {shape['layers']}-layer encoder; {source}, {measured_on}); the GPU has "
             f"{device_mib:,.0f} MiB ({device_said}); this experiment trains at batch {cfg.optim.batch_size}"]
    for gpus, precision in shares:
        if precision != memory["precision"]:
            lines.append(f"    at resources.gpus_per_trial {gpus:g} ({precision}): not measured (memory was "
                         f"measured in {memory['precision']})")
            continue
        fit = math.floor(device_mib * gpus / per_trial)
        placed = f"Ray places {math.floor(1 / gpus)} trial(s) a GPU" if gpus <= 1 else f"a trial holds {gpus:g} GPUs"
        verdict = "fits" if fit >= 1 else "does not fit: raise resources.gpus_per_trial"
        lines.append(f"    at resources.gpus_per_trial {gpus:g}: {placed}; its share, {gpus:g} x {device_mib:,.0f} "
                     f"MiB, holds {fit} trial(s) of {per_trial:,.0f} MiB ({verdict})")
    return lines


def describe_measured(cfg: ExperimentConfig, like: EarlyStopping | None = None, gpu_check: dict | None = None,
                      throughput: str | None = None, gpu_check_source: str = "--gpu-check") -> list[str]:
    """The lines `--dry-run` prints after the upper bounds: the expected figure (with `--like`) and
    trials per GPU. Nothing for an experiment without downstream trials."""
    if not cfg.sweep.downstream:
        return []
    lines = describe_expected(cfg, like, throughput) if like is not None else []
    return lines + trials_per_gpu(cfg, gpu_check, gpu_check_source)


__all__ = ["EarlyStopping", "describe_cost", "describe_expected", "describe_measured", "read_early_stopping",
           "read_gpu_check", "trials_per_gpu"]
