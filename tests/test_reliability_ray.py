"""Killing real processes of a running sweep: the driver (`xsweep run`) and a trial's process.

The sweep's driver runs as `python -m xsweep run ... --address <the test session's Ray>`, a real
process on the shared session cluster (tests/conftest.py's `ray_session`), so that it can be
killed with SIGKILL like a cancelled job. The uninterrupted reference is the same trial loop run
in-process with the same seeds and one thread, as a trial's actor with cpus_per_trial 1 runs it.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.paths import REPO_ROOT
from xsweep.record import read_record, read_records
from xsweep.selection import summarise
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream

pytestmark = [pytest.mark.ray]

# Long enough (about 0.1 s an epoch) to be caught mid-trial, short enough for a test.
EXPERIMENT = """\
name: {name}
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: {epochs}, batch_size: 16, patience: 1000}}
sweep:
  grid: {{optim.lr: [{lrs}]}}
  seeds: [{seeds}]
  max_concurrent_trials: 1
  evaluate: all  # every trial tests inside itself, as the in-process reference does
resources: {{cpus_per_trial: 1}}
storage: {{root: {root}}}
"""


def write_experiment(folder: Path, name: str, *, lrs: str, seeds: str, epochs: int, root: Path | None = None) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, lrs=lrs, seeds=seeds, epochs=epochs, root=root or folder / "runs"))
    return path


def start_driver(config: Path, address: str, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xsweep", "run", str(config), "--address", address, *extra],
                            cwd=REPO_ROOT, stdout=log.open("a"), stderr=subprocess.STDOUT)


def records_now(run_dir: Path) -> dict[str, object]:
    out = {}
    for path in run_dir.glob("trials/*/record.json"):
        try:
            out[path.parent.name] = read_record(path)
        except Exception:  # noqa: BLE001 - never torn (atomic), but a trial may be mid-creation
            pass
    return out


def wait_for(condition, what: str, timeout_s: float, log: Path, every_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}; driver log:\n{log.read_text()[-3000:]}")


def wait_until_idle(ray, log: Path) -> None:
    """The killed driver's trials are gone once the session's CPUs are all free again."""
    total = ray.cluster_resources().get("CPU", 0)
    wait_for(lambda: ray.available_resources().get("CPU", 0) >= total - 1e-6, "the killed job's trial actors to exit",
             90, log, every_s=0.5)


def reference(config: Path, folder: Path) -> Path:
    """The same trials, uninterrupted, run in-process into `folder` (one thread, as in a trial's actor)."""
    cfg = load_config(config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec in plan_trials(cfg, folder, prepare_inputs(cfg, log=lambda _: None)):
            run_downstream(spec)
    finally:
        torch.set_num_threads(threads)
    return folder


def history(record) -> list[float]:
    return [x for p in record.dev_history for x in (p.step, p.epoch, p.score, p.train_loss)]


def same_table(run_dir: Path, reference_dir: Path) -> None:
    [got], [want] = summarise(read_records(run_dir)), summarise(read_records(reference_dir))
    assert got.chosen_lr == want.chosen_lr and got.seeds_used == want.seeds_used
    assert got.avg == pytest.approx(want.avg, abs=1e-6) and got.std == pytest.approx(want.std, abs=1e-6)
    for locale, score in want.per_language.items():
        assert got.per_language[locale].mean == pytest.approx(score.mean, abs=1e-6), locale


@pytest.fixture(scope="module")
def address(ray_session) -> str:
    return ray_session.get_runtime_context().gcs_address


# --- the driver is killed, then resumed --------------------------------------------------------


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory, ray_session, address):
    folder = tmp_path_factory.mktemp("driver-killed")
    config = write_experiment(folder, "cut", lrs="0.03", seeds="0, 1", epochs=40)
    prepare_inputs(load_config(config), log=lambda _: None)  # the cache the subprocesses reuse
    run_dir, log = folder / "runs" / "cut", folder / "driver.log"

    driver = start_driver(config, address, log)

    def one_done_one_cut() -> dict | None:
        records = records_now(run_dir)
        done = [r for r in records.values() if r.status == "completed"]
        running = [r for r in records.values() if r.status == "running" and len(r.dev_history) >= 3]
        return {"done": done[0], "cut": running[0]} if done and running else None

    state = wait_for(one_done_one_cut, "one finished trial and one with 3 evaluations", 180, log)
    driver.send_signal(signal.SIGKILL)
    assert driver.wait(timeout=30) == -signal.SIGKILL
    wait_until_idle(ray_session, log)

    done_path = run_dir / "trials" / state["done"].trial_id / "record.json"
    cut_dir = run_dir / "trials" / state["cut"].trial_id
    before = {"done_bytes": done_path.read_bytes(), "done_mtime": done_path.stat().st_mtime_ns,
              "cut": read_record(cut_dir / "record.json"), "cut_has_checkpoint": (cut_dir / CHECKPOINT_FILE).is_file()}

    resumed = start_driver(config, address, log, "--resume")
    assert resumed.wait(timeout=300) == 0, log.read_text()[-3000:]
    return {"run_dir": run_dir, "done_path": done_path, "cut_dir": cut_dir, "before": before, "log": log,
            "reference": reference(config, folder / "reference")}


@pytest.mark.timeout(600)
def test_finished_trials_are_not_rerun_and_their_records_unchanged(killed_and_resumed):
    k = killed_and_resumed
    assert k["done_path"].read_bytes() == k["before"]["done_bytes"]
    assert k["done_path"].stat().st_mtime_ns == k["before"]["done_mtime"]
    assert "1 already completed, 1 to run" in k["log"].read_text()


@pytest.mark.timeout(600)
def test_a_cut_off_trial_restarts_from_its_last_checkpoint(killed_and_resumed):
    k = killed_and_resumed
    cut_before = k["before"]["cut"]
    assert k["before"]["cut_has_checkpoint"]
    after = read_record(k["cut_dir"] / "record.json")
    assert after.status == "completed"
    # It resumed at (or after) the last evaluation the killed run had recorded, not from step 0.
    assert len(after.resumed_at) == 1 and after.resumed_at[0] >= cut_before.dev_history[-1].step > 0
    assert history(after)[: len(history(cut_before))] == history(cut_before)
    reference_record = read_record(k["reference"] / "trials" / after.trial_id / "record.json")
    assert history(after) == pytest.approx(history(reference_record), abs=1e-6)  # random state included
    assert not (k["cut_dir"] / CHECKPOINT_FILE).exists()


@pytest.mark.timeout(600)
def test_the_resumed_sweep_table_equals_an_uninterrupted_run(killed_and_resumed):
    k = killed_and_resumed
    same_table(k["run_dir"], k["reference"])
    assert (k["run_dir"] / "results" / "results.csv").is_file()


# --- a trial's process is killed mid-trial; a diverging trial beside it --------------------------


@pytest.fixture(scope="module")
def trial_process_killed(tmp_path_factory, ray_session, address):
    folder = tmp_path_factory.mktemp("trial-killed")
    config = write_experiment(folder, "wk", lrs="1.0e20, 0.03", seeds="0", epochs=40)
    prepare_inputs(load_config(config), log=lambda _: None)
    run_dir, log = folder / "runs" / "wk", folder / "driver.log"

    driver = start_driver(config, address, log)

    def training_trial():
        for record in records_now(run_dir).values():
            if record.lr == 0.03 and record.status == "running" and len(record.dev_history) >= 3:
                return record
        return None

    victim = wait_for(training_trial, "the 0.03 trial's third evaluation", 180, log)
    pid = int(victim.worker.rsplit(":", 1)[1])
    # Only the Tune actor this test's sweep started for its trials: its pid comes from the trial's own record.
    assert b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes().lower()
    os.kill(pid, signal.SIGKILL)
    code = driver.wait(timeout=300)
    return {"code": code, "run_dir": run_dir, "victim": victim, "pid": pid, "log": log,
            "reference": reference(config, folder / "reference")}


@pytest.mark.timeout(600)
def test_a_killed_trial_process_is_retried_from_its_checkpoint_and_the_sweep_completes(trial_process_killed):
    w = trial_process_killed
    assert w["code"] == 0, w["log"].read_text()[-3000:]
    after = read_record(w["run_dir"] / "trials" / w["victim"].trial_id / "record.json")
    assert after.status == "completed"
    assert int(after.worker.rsplit(":", 1)[1]) != w["pid"], "a new process finished the trial"
    assert len(after.resumed_at) == 1 and after.resumed_at[0] >= w["victim"].dev_history[-1].step
    reference_record = read_record(w["reference"] / "trials" / after.trial_id / "record.json")
    assert history(after) == pytest.approx(history(reference_record), abs=1e-6)
    assert after.test_scores == pytest.approx(reference_record.test_scores, abs=1e-6)


@pytest.mark.timeout(600)
def test_a_diverged_trial_does_not_stop_the_sweep(trial_process_killed):
    w = trial_process_killed
    records = {r.lr: r for r in read_records(w["run_dir"])}
    assert records[1.0e20].status == "diverged" and records[0.03].status == "completed"
    markdown = (w["run_dir"] / "results" / "results.md").read_text()
    assert "| 1e+20 | missing | 1/1 | no | diverged 1 | seed 0 diverged |" in markdown
    log = w["log"].read_text()
    # xsweep reports no failed trial (Ray's own log does tell of the killed process and the retry).
    assert "diverged" in log and not re.search(r"^(trial \S+ failed: |  failed )", log, re.M)


# --- the disk fills up mid-sweep ----------------------------------------------------------------


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory):
    """A 64 MiB file system of its own (tmpfs) to fill up; skipped only where one cannot be mounted."""
    folder = tmp_path_factory.mktemp("small-disk")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "--lazy", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its file system has no byte left, as another job might."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


@pytest.fixture(scope="module")
def disk_filled(tmp_path_factory, small_disk, ray_session, address):
    folder = tmp_path_factory.mktemp("disk-full")
    config = write_experiment(folder, "full", lrs="0.03, 0.01", seeds="0", epochs=20, root=small_disk / "runs")
    prepare_inputs(load_config(config), log=lambda _: None)
    run_dir, log = small_disk / "runs" / "full", folder / "driver.log"

    driver = start_driver(config, address, log)

    def training_trial():
        return next((r for r in records_now(run_dir).values() if len(r.dev_history) >= 2), None)

    victim = wait_for(training_trial, "a trial's second evaluation", 180, log)
    filler = fill(small_disk)
    code = driver.wait(timeout=300)
    full = {"code": code, "log": log.read_text(), "records": records_now(run_dir)}

    filler.unlink()  # space freed: the run resumes
    resumed = start_driver(config, address, log, "--resume")
    assert resumed.wait(timeout=300) == 0, log.read_text()[-3000:]
    return {"full": full, "victim": victim, "run_dir": run_dir, "reference": reference(config, folder / "reference")}


@pytest.mark.timeout(600)
def test_a_full_disk_ends_the_sweep_with_the_path_free_space_and_fix(disk_filled, small_disk):
    full = disk_filled["full"]
    assert full["code"] == 2, full["log"][-3000:]
    error = full["log"][full["log"].index("xsweep: error: "):]
    # Nearly nothing free: the failed write's temporary file was removed, which may free a page or two.
    assert "No space left on device" in error and re.search(r"has [\d.]+ (B|KiB) free of 64\.0 MiB", error)
    assert str(small_disk / "runs" / "full") in error and "fix: free space on that disk" in error
    assert "--resume" in error and "Traceback" not in error


@pytest.mark.timeout(600)
def test_a_full_disk_is_not_retried_and_starts_no_other_trial(disk_filled):
    full, victim = disk_filled["full"], disk_filled["victim"]
    assert full["log"].count(f"  start    {victim.trial_id}") == 1, full["log"][-3000:]
    assert list(full["records"]) == [victim.trial_id]  # the other trial never started
    assert full["records"][victim.trial_id].status == "running"  # its record is whole, as last written


@pytest.mark.timeout(600)
def test_after_space_is_freed_resume_gives_the_uninterrupted_table(disk_filled):
    records = read_records(disk_filled["run_dir"])
    assert [r.status for r in records] == ["completed", "completed"]
    same_table(disk_filled["run_dir"], disk_filled["reference"])


@pytest.mark.timeout(120)
def test_local_ray_keeps_token_authentication_on(ray_session):
    # xsweep's local Ray (start_ray) leaves Ray's default on: token auth for every client.
    assert os.environ.get("RAY_AUTH_MODE") == "token"
