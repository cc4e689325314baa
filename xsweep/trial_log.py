"""TensorBoard event files of one trial: the writer a worker loop logs to.

Tag convention (one prefix per split, so TensorBoard groups the charts):
`train/loss`, `dev/<locale>/<metric>`, `test/<locale>/<metric>`.

A trial writes its HParams summaries when it *starts*, so the HParams dashboard can filter and
compare trials while they run. They hold the values its caller passes: the keys the sweep varies
(`TrialSpec.hparams`), not every key of the resolved config, most of which (the `align.*`
section of a PT run, say) are the same in every trial and would crowd the table and push the
metrics out of sight. The whole resolved config goes to the Text dashboard as `config`. The
metrics named there are ordinary scalars written under the same tags. The loops receive their
writer from whoever runs them (sweep/trial.py), as they receive their reporter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from xsweep.dotted import flatten

# Seconds between flushes: short enough that TensorBoard shows a running trial within a minute.
FLUSH_SECS = 20


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, float | str]:
    """Dotted keys -> HParams values: numbers stay numbers; lists, None and bools become strings.

    Bools become "true"/"false" because torch would store them as 1.0/0.0; None becomes "null"
    so that a key is never silently absent from one trial's hparams.
    """
    flat: dict[str, float | str] = {}
    for name, value in flatten(config, prefix=prefix).items():
        if isinstance(value, bool):
            flat[name] = "true" if value else "false"
        elif isinstance(value, (int, float)):
            flat[name] = value
        elif isinstance(value, str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, sort_keys=True, default=str)
    return flat


def pick_hparams(flat: dict[str, float | str], keys: list[str]) -> dict[str, float | str]:
    """The entries of `flat` that `keys` name, in the order of `keys`: a key is a leaf, or a
    section that stands for all its leaves; a key the config lacks is "null" (as in
    `flatten_config`, so that every trial of a sweep lists the same hparams)."""
    picked: dict[str, float | str] = {}
    for key in keys:
        leaves = {name: value for name, value in flat.items() if name == key or name.startswith(key + ".")}
        picked.update(leaves or {key: "null"})
    return picked


class TrialWriter:
    """A SummaryWriter for one trial (or one summary run), with the tag convention above."""

    def __init__(self, logdir: Path):
        # Imported here so that reading records and tables never pays for importing torch.
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = SummaryWriter(log_dir=str(self.logdir), flush_secs=FLUSH_SECS)
        self._session_open = False

    def hparams(self, values: dict[str, Any], metric_names: list[str], config: dict[str, Any]) -> None:
        """Write the HParams experiment and session-start summaries of `values` (dotted key ->
        value), and the whole resolved `config` as the text summary `config` (call when the trial
        starts). TensorBoard takes its columns from the first experiment summary it finds, so
        every trial of a sweep must pass the same keys (`pick_hparams` gives them)."""
        import yaml
        from torch.utils.tensorboard.summary import hparams

        experiment, session_start, _ = hparams(flatten_config(values), {name: 0.0 for name in metric_names})
        file_writer = self._writer._get_file_writer()
        file_writer.add_summary(experiment)
        file_writer.add_summary(session_start)
        self.text("config", "```yaml\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True) + "```")
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
