"""Trials on a Ray Train worker group (`resources.num_workers` 2) against the same trials in one
process, and a worker group that loses a worker mid-trial.

The worker-group trials run through the sweep's own Tuner (`runner._run_on_ray`) on the shared
session cluster; the reference is the same trial loop run in-process with one thread, as a trial's
actor runs it, with the same global batch. Dropout is off, so the two compute the same thing: each
worker's loss is its slice of the batch weighted by its share, and the workers' summed gradients
are the batch's mean gradient, up to the order of float additions. Measured here (2026-12-03, CPU,
fp32): mean training losses 5e-8 apart, dev and test scores equal. The tolerances below (losses
1e-5, scores 1e-6: one dev utterance of 140 moves a score by 0.007) leave room for summation order
on other CPUs and nothing more.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.record import RECORD_FILE, read_record
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import _run_on_ray, plan_trials
from xsweep.train.downstream import run_downstream

pytestmark = [pytest.mark.ray]

LOSS_TOLERANCE, SCORE_TOLERANCE = 1e-5, 1e-6
EXPERIMENT = """\
name: {name}
method: {method}
backbone: {{name: "builtin:micro", dropout: false}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: {prompt}, length: 4, dropout: 0}}
head: {{kind: vanilla, dropout: 0}}
optim: {{epochs: {epochs}, batch_size: 16, patience: 1000, lr: {lr}}}
sweep: {{seeds: [0], max_concurrent_trials: {concurrent}, evaluate: all}}
resources: {{cpus_per_trial: 0.5, num_workers: 2}}
storage: {{root: {root}}}
"""


def plan(root: Path, name: str, method: str, *, epochs: int, lr: float, concurrent: int = 1):
    """(config, the experiment's one trial on 2 workers, the same trial for one in-process run)."""
    path = root / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, method=method, epochs=epochs, lr=lr, concurrent=concurrent,
                                      prompt="none" if method == "ft" else "layer", root=root / "runs"))
    cfg = load_config(path)
    spec = plan_trials(cfg, root / "runs" / name, prepare_inputs(cfg, log=lambda _: None))[0]
    alone = dataclasses.replace(spec, trial_dir=str(root / "alone" / name),
                                tensorboard_dir=str(root / "alone" / f"{name}-tb"))
    return cfg, spec, alone


def run_alone(spec):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial's actor with one CPU
    try:
        return run_downstream(spec)
    finally:
        torch.set_num_threads(threads)


def assert_same_results(grouped, alone) -> None:
    assert grouped.status == alone.status == "completed"
    assert [(p.step, p.epoch) for p in grouped.dev_history] == [(p.step, p.epoch) for p in alone.dev_history]
    for got, want in zip(grouped.dev_history, alone.dev_history):
        assert got.score == pytest.approx(want.score, abs=SCORE_TOLERANCE)
        assert got.train_loss == pytest.approx(want.train_loss, abs=LOSS_TOLERANCE)
    assert (grouped.best_step, grouped.best_epoch) == (alone.best_step, alone.best_epoch)
    assert grouped.test_scores.keys() == alone.test_scores.keys() == {"en-US", "de-DE"}
    for locale, score in alone.test_scores.items():
        assert grouped.test_scores[locale] == pytest.approx(score, abs=SCORE_TOLERANCE)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory, ray_session):
    """An FT and a PT trial, each on 2 workers, run by one Tuner (both groups fit the 2 CPUs at
    once), and the same trials alone: method -> (record on the group, record alone)."""
    root = tmp_path_factory.mktemp("workers")
    ft_cfg, ft, ft_alone = plan(root, "ft", "ft", epochs=3, lr=1e-3, concurrent=2)
    _, pt, pt_alone = plan(root, "pt", "pt", epochs=3, lr=0.01)
    failed = _run_on_ray(ft_cfg, root / "runs" / "ft", [ft, pt], log=lambda _: None)
    assert failed == []
    return {"ft": (read_record(Path(ft.trial_dir) / RECORD_FILE), run_alone(ft_alone)),
            "pt": (read_record(Path(pt.trial_dir) / RECORD_FILE), run_alone(pt_alone))}


@pytest.mark.timeout(420)
@pytest.mark.parametrize("method", ["ft", "pt"])
def test_a_two_worker_trial_gives_the_results_of_the_trial_in_one_process(two_workers, method):
    grouped, alone = two_workers[method]
    assert grouped.workers == 2 and alone.workers == 1  # the record says how the trial ran
    assert_same_results(grouped, alone)


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_trial_restarts_the_group_from_the_checkpoint(tmp_path, ray_session):
    cfg, spec, alone = plan(tmp_path, "killed", "pt", epochs=8, lr=0.01)
    record_path = Path(spec.trial_dir) / RECORD_FILE
    killed: list[int] = []

    def kill_rank0_after_two_evaluations() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            record = read_record(record_path) if record_path.is_file() else None  # replaced atomically
            if record is not None and record.status != "running":
                return  # ended before it could be killed: the assertions below say so
            if record is not None and record.workers == 2 and len(record.dev_history) >= 2:
                pid = int(record.worker.rsplit(":", 1)[1])
                assert pid != os.getpid()
                os.kill(pid, signal.SIGKILL)
                killed.append(len(record.dev_history))
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_rank0_after_two_evaluations, daemon=True)
    watcher.start()
    failed = _run_on_ray(cfg, tmp_path / "runs" / "killed", [spec], log=lambda _: None)
    watcher.join(timeout=5)
    assert killed, "the trial ended before its worker could be killed"
    assert failed == []
    grouped = read_record(record_path)
    assert grouped.resumed_at, "the new group did not resume from the trial's checkpoint"
    assert grouped.resumed_at[0] in [p.step for p in grouped.dev_history[killed[0] - 1:]]  # at a later evaluation
    assert_same_results(grouped, run_alone(alone))


@pytest.mark.parametrize("override, where", [(["sweep.fuse=2"], "sweep.fuse"),
                                             (["optim.batch_size=1"], "optim.batch_size"),
                                             (["resources.num_workers=0"], "resources")])
def test_a_worker_group_refuses_what_it_cannot_run(tmp_path, override, where):
    path = tmp_path / "bad.yaml"
    path.write_text(EXPERIMENT.format(name="bad", method="pt", epochs=1, lr=0.01, concurrent=1, prompt="layer",
                                      root=tmp_path))
    with pytest.raises(XsweepError) as caught:
        load_config(path, override)
    assert where in caught.value.where and caught.value.fix
