"""TensorBoard for a finished or running sweep: group mean/std runs, a reader, and the server.

Each trial's own event files are written by its loop through `xsweep.trial_log.TrialWriter`
(tag convention there); this module adds the runs derived from the records (`_groups/`,
`_summary`), reads event files back, and starts TensorBoard on loopback.
"""

from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from xsweep.record import TrialRecord
from xsweep.selection import GroupSummary
from xsweep.trial_log import TrialWriter

if TYPE_CHECKING:
    import subprocess

GROUPS_DIR = "_groups"
SUMMARY_RUN = "_summary"


def read_scalars(logdir: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Run (folder relative to `logdir`, "." for its root) -> tag -> [(step, value)] by step."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for run_dir in event_dirs(logdir):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        if tags:
            result[_run_name(run_dir, logdir)] = {
                tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in tags}
    return result


def read_plugin_content(logdir: Path, plugin: str) -> dict[str, dict[str, bytes]]:
    """Run -> tag -> plugin metadata content (e.g. plugin "hparams" or "text")."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = {}
    for run_dir in event_dirs(logdir):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        try:
            content = acc.PluginTagToContent(plugin)
        except KeyError:  # no summary of that plugin in this run
            continue
        if content:
            result[_run_name(run_dir, logdir)] = dict(content)
    return result


def event_dirs(logdir: Path) -> list[Path]:
    """Folders under `logdir` (itself included) holding event files, sorted."""
    logdir = Path(logdir)
    return sorted({p.parent for p in logdir.rglob("events.out.tfevents.*") if p.is_file()})


def _run_name(run_dir: Path, logdir: Path) -> str:
    return run_dir.relative_to(logdir).as_posix() or "."


def safe_run_name(name: str) -> str:
    """A group name as one folder name (group names hold '/' and ':')."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).strip("_") or "group"


def write_group_summaries(summaries: list[GroupSummary], records: list[TrialRecord], logdir: Path,
                          tables_markdown: str | None = None) -> list[Path]:
    """Per group, runs `_groups/<group>/{mean,mean+std,mean-std}` of the chosen lr's dev and
    train-loss curves over seeds; plus a `_summary` run with the tables as text.

    At each step the curve is over the seeds evaluated at that step (early stopping ends seeds
    at different steps); `dev/<locale>/<metric>/n_seeds` says how many, so a tail over fewer
    seeds is visible. Returns the run folders written.
    """
    from xsweep.report.tables import format_table_markdown, selection_rows, markdown_table

    logdir = Path(logdir)
    written = []
    for summary in summaries:
        if summary.chosen_lr is None:
            continue
        chosen = [r for r in records if r.group_key == summary.group_key and r.lr == summary.chosen_lr
                  and r.seed in summary.seeds_used]
        base = logdir / GROUPS_DIR / f"{safe_run_name(summary.group_name)}-{summary.group_key[:6]}"
        dev_tag = f"dev/{summary.train_locale}/{summary.metric}"
        curves = {dev_tag: _by_step(chosen, lambda p: p.score),
                  "train/loss": _by_step(chosen, lambda p: p.train_loss)}
        runs = {name: TrialWriter(base / name) for name in ("mean", "mean+std", "mean-std")}
        try:
            for tag, by_step in curves.items():
                for step, values in sorted(by_step.items()):
                    mean = statistics.fmean(values)
                    runs["mean"].scalar(tag, mean, step)
                    if tag == dev_tag:
                        runs["mean"].scalar(f"{tag}/n_seeds", len(values), step)
                    if len(values) >= 2:  # the sample std needs two seeds
                        std = statistics.stdev(values)
                        runs["mean+std"].scalar(tag, mean + std, step)
                        runs["mean-std"].scalar(tag, mean - std, step)
            for loc, score in summary.per_language.items():
                if score.mean is not None:
                    runs["mean"].scalar(f"test/{loc}/{summary.metric}", score.mean, 0)
            sel_header, sel_rows = selection_rows(summary)
            runs["mean"].text("selection", markdown_table(sel_header, sel_rows))
        finally:
            for writer in runs.values():
                writer.close()
        written += [base / name for name in runs]
    with TrialWriter(logdir / SUMMARY_RUN) as writer:
        writer.text("results", tables_markdown or format_table_markdown(summaries))
    written.append(logdir / SUMMARY_RUN)
    return written


def _by_step(records: list[TrialRecord], value) -> dict[int, list[float]]:
    by_step: dict[int, list[float]] = {}
    for record in records:
        for point in record.dev_history:
            v = value(point)
            if v is not None and math.isfinite(v):
                by_step.setdefault(point.step, []).append(v)
    return by_step


def start_tensorboard(logdir: Path | str, port: int = 0, host: str = "127.0.0.1",
                      timeout_s: float = 60.0, env: dict[str, str] | None = None) -> tuple["subprocess.Popen", str]:
    """Start TensorBoard on `host` (loopback by default) and return (process, url) once it answers.

    `port` 0 picks a free port. `logdir` may be an `s3://` URI, with `env` from
    `storage.tensorboard_source` added to the server's environment. The caller owns the process:
    `process.terminate()` stops it.
    """
    import os
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    from xsweep.errors import XsweepError

    logdir = logdir if str(logdir).startswith("s3://") else Path(logdir)
    # Loopback requests must not go through an HTTP proxy set in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(3):
        chosen = port or _free_port(host)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
               "--port", str(chosen), "--reload_interval", "2"]
        # A file, not a pipe: a long-lived server would block once an unread pipe fills up.
        log = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True,
                                   env={**os.environ, **env} if env else None)
        url = f"http://{host}:{chosen}/"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with opener.open(url + "data/environment", timeout=2) as response:
                    if response.status == 200:
                        log.close()
                        return process, url
            except (OSError, socket.timeout):
                time.sleep(0.3)
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
            raise XsweepError(f"TensorBoard did not answer on {url} within {timeout_s:.0f} s",
                              where=str(logdir), fix="check that `tensorboard --version` works in this environment")
        log.seek(0)
        error = log.read().strip().splitlines()[-3:]
        log.close()
        if port:  # a port the user asked for: no retry on another one
            break
        # Another program may have taken the free port between our check and TensorBoard's bind.
    raise XsweepError(f"TensorBoard exited: {' '.join(error)}", where=str(logdir),
                      fix="choose another --port, or check the TensorBoard installation")


def _free_port(host: str) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
