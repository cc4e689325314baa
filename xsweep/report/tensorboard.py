"""TensorBoard event files: one writer per trial, group mean/std runs, and a reader.

Tag convention (one prefix per split, so TensorBoard groups the charts):
`train/loss`, `dev/<locale>/<metric>`, `test/<locale>/<metric>`.

A trial writes its HParams summaries when it *starts*, with every resolved config key flattened
to a dotted name, so the HParams dashboard can filter and compare trials while they run; the
metrics named there are ordinary scalars written under the same tags.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from xsweep.record import TrialRecord
from xsweep.report.select import GroupSummary

# Seconds between flushes: short enough that TensorBoard shows a running trial within a minute.
FLUSH_SECS = 20
GROUPS_DIR = "_groups"
SUMMARY_RUN = "_summary"


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, float | str]:
    """Dotted keys -> HParams values: numbers stay numbers; lists, None and bools become strings.

    Bools become "true"/"false" because torch would store them as 1.0/0.0; None becomes "null"
    so that a key is never silently absent from one trial's hparams.
    """
    flat: dict[str, float | str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, name + "."))
        elif isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            flat[name] = value
        elif isinstance(value, str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


class TrialWriter:
    """A SummaryWriter for one trial (or one summary run), with the tag convention above."""

    def __init__(self, logdir: Path):
        # Imported here so that reading records and tables never pays for importing torch.
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.logdir), flush_secs=FLUSH_SECS)
        self._session_open = False

    def hparams(self, config: dict[str, Any], metric_names: list[str]) -> None:
        """Write the HParams experiment and session-start summaries (call when the trial starts)."""
        from torch.utils.tensorboard.summary import hparams

        experiment, session_start, _ = hparams(
            flatten_config(config), {name: 0.0 for name in metric_names})
        file_writer = self._writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(session_start)
        self._session_open = True
        self._writer.flush()  # the dashboard should list the trial now, not at the next flush

    def scalar(self, tag: str, value: float, step: int) -> None:
        self._writer.add_scalar(tag, float(value), global_step=int(step))

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Several scalars at one step, e.g. the final values of the HParams metrics."""
        for tag, value in values.items():
            self.scalar(tag, value, step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        """Markdown text (the Text dashboard renders it)."""
        self._writer.add_text(tag, text, global_step=step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self, status: str = "completed") -> None:
        """End the HParams session with the trial's record status, and close the files.

        A trial still "running" (e.g. a worker killed and resumed later) or "paused" (at a pruning
        milestone) writes no session end, so the dashboard does not show it as finished.
        """
        if self._session_open and status not in ("running", "paused"):
            self._writer._get_file_writer().add_summary(_session_end_summary(status))
        self._session_open = False
        self._writer.close()

    def end_session(self, status: str) -> None:
        """End the HParams session an earlier writer of this trial opened (a trial pruned at a
        milestone is ended by the runner, not by its own loop, which paused)."""
        self._writer._get_file_writer().add_summary(_session_end_summary(status))
        self._writer.flush()

    def __enter__(self) -> "TrialWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# Record status -> HParams session status (the dashboard colours and filters by it). The plugin
# knows no "aborted": a stopped or pruned trial's session ends as STATUS_UNKNOWN.
_SESSION_STATUS = {"completed": "STATUS_SUCCESS", "diverged": "STATUS_FAILURE", "failed": "STATUS_FAILURE"}


def _session_end_summary(status: str) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    end = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.Status.Value(_SESSION_STATUS.get(status, "STATUS_UNKNOWN")))
    content = plugin_data_pb2.HParamsPluginData(session_end_info=end, version=metadata.PLUGIN_DATA_VERSION)
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=meta)])


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


def start_tensorboard(logdir: Path, port: int = 0, host: str = "127.0.0.1",
                      timeout_s: float = 60.0) -> tuple["subprocess.Popen", str]:
    """Start TensorBoard on `host` (loopback by default) and return (process, url) once it answers.

    `port` 0 picks a free port. The caller owns the process: `process.terminate()` stops it.
    """
    import socket
    import subprocess
    import sys
    import tempfile
    import time
    import urllib.request

    from xsweep.errors import XsweepError

    logdir = Path(logdir)
    # Loopback requests must not go through an HTTP proxy set in the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(3):
        chosen = port or _free_port(host)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host,
               "--port", str(chosen), "--reload_interval", "2"]
        # A file, not a pipe: a long-lived server would block once an unread pipe fills up.
        log = tempfile.TemporaryFile(mode="w+")
        process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
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
