"""Device time a sweep spent: per trial (in its record), per group and per stage, summed.

A trial's device-seconds are its wall-clock seconds (training in its process, plus the evaluation
stage's testing of its checkpoint) times the share of a device it held: `gpus_per_trial` of a GPU
when it had one, else `cpus_per_trial` CPUs, times `resources.num_workers` on a worker group. An alignment stage counts its seconds times its
workers (worker-seconds: align.json does not record the device). The budget cap of a sweep (`sweep.budget_device_hours`) counts the same figure.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from xsweep.record import TrialRecord
from xsweep.train.align_folder import RESULT_FILE, finished_folder


@dataclass
class Spent:
    seconds: float
    """Wall-clock seconds."""
    device_seconds: float
    """Seconds times the device share held."""
    device: str
    """`GPU` or `CPU`: what `device_seconds` counts."""


def trial_spent(record: TrialRecord) -> Spent:
    resources = record.config.get("resources", {})
    seconds = record.train_seconds + record.eval_seconds
    workers = int(resources.get("num_workers", 1) or 1)  # a worker group: each worker held the trial's share
    gpus = float(resources.get("gpus_per_trial", 0) or 0) * workers
    if gpus > 0:
        return Spent(seconds, seconds * gpus, "GPU")
    return Spent(seconds, seconds * float(resources.get("cpus_per_trial", 1) or 1) * workers, "CPU")


def stage_spent(stage_dir: str | Path) -> Spent | None:
    """An alignment stage's time, from its align.json (None if it has not finished); `stage_dir`: its
    folder, or in a bucket run its URI."""
    summary_file = finished_folder(stage_dir) / RESULT_FILE
    if not summary_file.is_file():
        return None
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    seconds, workers = float(summary.get("seconds", 0.0)), int(summary.get("world_size", 1))
    return Spent(seconds, seconds * workers, "worker")  # align.json does not say which device a worker had


def device_hours(records: list[TrialRecord]) -> float:
    """Device-hours of these trials (what the budget cap counts)."""
    return sum(trial_spent(r).device_seconds for r in records) / 3600


def spent_table(records: list[TrialRecord]) -> str:
    """Markdown: device time per group and stage, and the total."""
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    for record in records:
        groups[record.group_name].append(record)
    lines = ["Device time spent (device-seconds = seconds x the share of a device held)", "",
             "| what | trials | wall seconds | device-seconds | device |", "|---|---|---|---|---|"]
    total = 0.0
    for name, members in sorted(groups.items()):
        spent = [trial_spent(r) for r in members]
        device = "/".join(sorted({s.device for s in spent}))
        seconds, device_seconds = sum(s.seconds for s in spent), sum(s.device_seconds for s in spent)
        total += device_seconds
        lines.append(f"| {name} | {len(members)} | {seconds:.0f} | {device_seconds:.0f} | {device} |")
    for stage_dir in sorted({r.config.get("prompt", {}).get("init_from") for r in records} - {None}):
        stage = stage_spent(stage_dir)
        if stage is not None:
            total += stage.device_seconds
            lines.append(f"| alignment stage {Path(stage_dir.split('?')[0]).name} | - | {stage.seconds:.0f} | "
                         f"{stage.device_seconds:.0f} | {stage.device} |")
    lines.append(f"| **total** | {len(records)} | | {total:.0f} ({total / 3600:.2f} h) | |")
    return "\n".join(lines) + "\n"
