"""Reliability without Ray: divergence, checkpoint and resume of the trial loop, atomic writes,
and the security rules (safe YAML, no unpickling, loopback servers, no credentials).

The trial loop runs in-process on the built-in `micro` backbone and the demo data (a trial takes
about a second), so these tests are fast; tests/test_reliability_ray.py kills real processes.
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT
from xsweep.record import TrialRecord, read_record, read_records, write_record
from xsweep.report.run import report_run
from xsweep.selection import summarise
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream
from xsweep.train.spec import TrialSpec

pytestmark = pytest.mark.timeout(120)

DIVERGING_LR = 1.0e20  # Adam moves every weight by ~lr: the second step's loss is NaN (checked below)

EXPERIMENT = """\
name: rel
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US, de-DE]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 5, batch_size: 16, patience: 5}}
sweep: {{grid: {{optim.lr: [{lrs}]}}, seeds: [0], evaluate: all}}  # every trial tests itself
storage: {{root: {root}}}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Plan the trials of a small experiment (data and backbone prepared once): lrs -> specs."""
    root = tmp_path_factory.mktemp("reliability")
    torch.set_num_threads(1)  # as in a Ray worker with cpus_per_trial 1

    def plan(lrs: list[float], name: str) -> list[TrialSpec]:
        path = root / f"{name}.yaml"
        path.write_text(EXPERIMENT.format(lrs=", ".join(map(repr, lrs)), root=root / "runs"))
        cfg = load_config(path)
        return plan_trials(cfg, root / "runs" / name, prepare_inputs(cfg, log=lambda _: None))

    return plan


class Killed(BaseException):
    """Stands for SIGKILL inside the loop: not an Exception, so nothing in the loop handles it."""


def kill_after_evaluation(epoch: int):
    def report(metrics: dict) -> None:
        if metrics.get("epoch") == epoch and "dev" in metrics:
            raise Killed()
    return report


# --- divergence --------------------------------------------------------------------------------


def test_nan_loss_ends_the_trial_as_diverged_at_once(sweep):
    spec = sweep([DIVERGING_LR], "diverge")[0]
    reports: list[dict] = []
    record = run_downstream(spec, report=reports.append)
    assert record.status == "diverged", "the deterministic trigger no longer diverges: pick a larger lr"
    assert re.fullmatch(r"training loss became (nan|inf|-inf) at step 2 \(epoch 1\)", record.error)
    assert record.dev_history == [] and record.test_scores == {} and record.best_dev is None
    assert reports == [{"step": 1, "epoch": 1, "status": "diverged"}]
    trial_dir = Path(spec.trial_dir)
    assert read_record(trial_dir / "record.json") == record
    assert not (trial_dir / "best").exists() and not (trial_dir / CHECKPOINT_FILE).exists()


def test_report_shows_a_diverged_trial_as_diverged_not_as_a_score(sweep):
    specs = sweep([0.03, DIVERGING_LR], "mixed")
    records = {s.config["optim"]["lr"]: run_downstream(s) for s in specs}
    assert records[0.03].status == "completed" and records[DIVERGING_LR].status == "diverged"
    run_dir = Path(specs[0].trial_dir).parents[1]
    paths = report_run(run_dir)
    markdown = paths.table_markdown.read_text()
    assert "trials: completed 1, diverged 1" in markdown
    assert "| 1e+20 | missing | 1/1 | no | diverged 1 | seed 0 diverged |" in markdown
    [summary] = summarise(read_records(run_dir))
    assert summary.chosen_lr == 0.03 and not summary.provisional
    assert summary.avg == pytest.approx(sum(records[0.03].test_scores.values()) / 2)


def test_a_group_whose_trials_all_diverged_has_no_score(tmp_path):
    for seed in (0, 1):
        record = TrialRecord(trial_id=f"t-s{seed}", group_key="g", group_name="massive-vanilla/pt/layer4",
                             lr=0.1, seed=seed, status="diverged", error="training loss became nan at step 3",
                             config={"sweep": {"seeds": [0, 1]}})
        write_record(record, tmp_path / "trials" / record.trial_id)
    markdown = report_run(tmp_path).table_markdown.read_text()
    assert "| AVG | missing |" in markdown and "diverged 2" in markdown
    assert "seed 0 diverged; seed 1 diverged" in markdown


# --- checkpoint and resume of one trial ---------------------------------------------------------


def history(record: TrialRecord) -> list[float]:
    return [x for p in record.dev_history for x in (p.step, p.epoch, p.score, p.train_loss)]


@pytest.fixture(scope="module")
def uninterrupted(sweep):
    return run_downstream(sweep([0.03], "whole")[0])


@pytest.mark.parametrize("kill_epoch", [2, 5], ids=["mid-training", "after-last-evaluation"])
def test_a_killed_trial_resumes_from_its_checkpoint_as_if_never_stopped(sweep, uninterrupted, kill_epoch):
    spec = sweep([0.03], f"killed{kill_epoch}")[0]
    with pytest.raises(Killed):
        run_downstream(spec, report=kill_after_evaluation(kill_epoch))
    cut = read_record(Path(spec.trial_dir) / "record.json")
    assert cut.status == "running" and len(cut.dev_history) == kill_epoch
    assert (Path(spec.trial_dir) / CHECKPOINT_FILE).is_file()

    resumed = run_downstream(spec)
    assert resumed.status == "completed"
    assert resumed.resumed_at == [cut.dev_history[-1].step]
    # Losses and scores depend on every random draw (data order, dropout): equal means the
    # random-number state was restored too, not only the weights.
    assert history(resumed) == pytest.approx(history(uninterrupted), abs=1e-6)
    assert resumed.test_scores == pytest.approx(uninterrupted.test_scores, abs=1e-6)
    assert (resumed.best_dev, resumed.best_step) == (uninterrupted.best_dev, uninterrupted.best_step)
    assert not (Path(spec.trial_dir) / CHECKPOINT_FILE).exists(), "a finished trial keeps no checkpoint"


def test_an_unsafe_checkpoint_is_refused_not_executed(sweep, tmp_path):
    spec = sweep([0.03], "unsafe")[0]
    marker = tmp_path / "code-ran"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    Path(spec.trial_dir).mkdir(parents=True)
    torch.save({"format": 1, "payload": Exploit()}, Path(spec.trial_dir) / CHECKPOINT_FILE)
    with pytest.raises(XsweepError) as info:
        run_downstream(spec)
    assert "cannot read the trial checkpoint safely" in info.value.what
    assert info.value.where.endswith(CHECKPOINT_FILE) and "delete checkpoint.pt" in info.value.fix
    assert not marker.exists()


def test_a_checkpoint_of_another_configuration_is_refused(sweep):
    spec = sweep([0.03], "other")[0]
    with pytest.raises(Killed):
        run_downstream(spec, report=kill_after_evaluation(1))
    changed = TrialSpec(**{**spec.__dict__, "config": {**spec.config, "seed": 99}})
    with pytest.raises(XsweepError, match="written for another configuration"):
        run_downstream(changed)


# --- atomic outputs ----------------------------------------------------------------------------

ATOMIC_WRITER = textwrap.dedent("""
    import sys
    from xsweep.atomic import write_text
    path, size = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    i = 0
    while True:
        write_text(path, ("AB"[i % 2]) * size)
        i += 1
""")


def test_a_kill_during_a_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target, size = tmp_path / "results.md", 2_000_000
    target.write_text("A" * size)
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        child = subprocess.Popen([sys.executable, "-c", ATOMIC_WRITER, str(target), str(size)],
                                 stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        text = target.read_text()
        assert text in ("A" * size, "B" * size), f"a torn file after a kill at {delay} s"


# Every place in xsweep/ that writes a file, and why a kill cannot leave it half-written there.
# Writes through xsweep.atomic (write_text, write_json, atomic_path) need no entry.
REVIEWED_WRITES = {
    ("xsweep/atomic.py", "write_text", "write_text"): "the atomic primitive writes its temporary path",
    ("xsweep/data/download.py", "_fetch", "open"): "into a work folder, moved into place by _replace_dir",
    ("xsweep/data/download.py", "_unpack", "open"): "into a work folder, moved into place by _replace_dir",
    ("xsweep/data/download.py", "_unpack", "copyfileobj"): "into that work folder",
    ("xsweep/data/download.py", "download", "write_text"): "the marker inside the work folder",
    ("xsweep/data/synth.py", "_write_massive", "write_text"): "inside write_demo_data's mkdtemp folder",
    ("xsweep/data/synth.py", "_write_tatoeba", "write_text"): "inside write_demo_data's mkdtemp folder",
    ("xsweep/data/synth.py", "write_demo_data", "write_text"): "inside its mkdtemp folder, then os.replace",
    ("xsweep/data/synth_sgd.py", "write_sgd", "write_text"): "called only inside write_demo_data's folder",
    ("xsweep/models/builtin.py", "build_builtin_backbone", "save_pretrained"): "mkdtemp folder, then rename",
    ("xsweep/predict.py", "pulled_trial", "write_bytes"): "into its own TemporaryDirectory, read there and removed",
    ("xsweep/models/checkpoint.py", "_save_tensors", "save_file"): "inside atomic_path",
    ("xsweep/report/plots.py", "_save", "savefig"): "inside atomic_path",
    ("xsweep/storage.py", "write_bytes", "open_output_stream"): "one object in a bucket, visible only once the "
                                                                "upload completes, whole",
    ("xsweep/storage.py", "pull", "copy_files"): "into atomic_path's temporary name",
    ("xsweep/storage.py", "push", "copy_files"): "to one object in a bucket, visible only once whole",
    ("xsweep/sweep/workers.py", "follower_spec", "copyfile"): "into a rank > 0 worker's own scratch folder, "
                                                              "which nothing else reads",
    ("xsweep/train/align.py", "_write_checkpoint", "save"): "mkdtemp folder, then rename",
    ("xsweep/train/checkpoint.py", "write_checkpoint", "save"): "inside atomic_path",
}
_METHOD_WRITERS = {"write_text", "write_bytes", "savefig", "save_pretrained", "save_to_disk", "save", "dump",
                   "copyfileobj", "copy", "copy2", "copyfile", "to_csv", "to_json", "open_output_stream"}
_FUNCTION_WRITERS = {"save_file", "copy_files"}


def file_writes(root: Path) -> set[tuple[str, str, str]]:
    """(file, enclosing function, call) of every call that writes a file under `root`.

    Bare `write_text(...)` / `write_json(...)` calls are xsweep.atomic's and are not listed.
    """
    found = set()
    for path in sorted(root.rglob("*.py")):
        rel = str(path.relative_to(REPO_ROOT))
        stack: list[str] = []

        class Visitor(ast.NodeVisitor):
            def visit_FunctionDef(self, node):
                stack.append(node.name)
                self.generic_visit(node)
                stack.pop()

            visit_AsyncFunctionDef = visit_FunctionDef

            def visit_Call(self, node):
                func, where = node.func, stack[-1] if stack else "<module>"
                if isinstance(func, ast.Attribute) and func.attr in _METHOD_WRITERS:
                    found.add((rel, where, func.attr))
                elif isinstance(func, ast.Name) and func.id in _FUNCTION_WRITERS:
                    found.add((rel, where, func.id))
                elif isinstance(func, ast.Name) and func.id == "open":
                    modes = [a for a in node.args[1:2]] + [k.value for k in node.keywords if k.arg == "mode"]
                    if any(isinstance(m, ast.Constant) and set(str(m.value)) & set("wax+") for m in modes):
                        found.add((rel, where, "open"))
                self.generic_visit(node)

        Visitor().visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_every_file_write_goes_through_a_temporary_name():
    unreviewed = file_writes(REPO_ROOT / "xsweep") - set(REVIEWED_WRITES)
    assert not unreviewed, (
        f"writes not known to be atomic: {sorted(unreviewed)}; write through xsweep.atomic "
        "(write_text, write_json, atomic_path), or add the call to REVIEWED_WRITES with the reason it is safe")


def test_trial_outputs_are_written_atomically(sweep, monkeypatch):
    """Record, label map, few-shot ids, prompt and head, predictions, checkpoint: each via a temporary name."""
    import xsweep.atomic

    renamed: list[str] = []
    real_replace = os.replace

    def replace(src, dst):
        assert Path(src).name.startswith(".") and Path(src).name.endswith(".tmp"), src
        renamed.append(Path(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(xsweep.atomic.os, "replace", replace)
    spec = sweep([0.03], "atomic")[0]
    run_downstream(spec)
    written = {p.name for p in Path(spec.trial_dir).rglob("*") if p.is_file()}
    assert written == {"record.json", "labels.json", "few_shot_sample.json", "trainable.safetensors",
                       "trainable.json", "en-US.jsonl", "de-DE.jsonl"}  # per-example test predictions
    trial_dir = Path(spec.trial_dir).resolve()
    # Only this trial's files: a cold cache also builds the backbone here, atomically, elsewhere.
    assert written | {CHECKPOINT_FILE} == {p.name for p in renamed if trial_dir in p.resolve().parents}


# --- security ----------------------------------------------------------------------------------


def python_files() -> list[Path]:
    return sorted((REPO_ROOT / "xsweep").rglob("*.py")) + sorted((REPO_ROOT / "scripts").rglob("*.py"))


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else None
            yield owner, name, node


def test_yaml_is_read_with_safe_loading_only():
    for path in python_files():
        for owner, name, node in calls(path):
            if owner == "yaml":
                assert name in ("safe_load", "safe_dump", "compose", "safe_load_all", "YAMLError"), \
                    f"{path}:{node.lineno}: yaml.{name}; use yaml.safe_load"
                loaders = [k.value for k in node.keywords if k.arg == "Loader"]
                assert all(isinstance(v, ast.Attribute) and v.attr == "SafeLoader" for v in loaders), \
                    f"{path}:{node.lineno}: yaml.{name} with a loader other than SafeLoader"


def test_python_objects_in_an_experiment_are_rejected(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(XsweepError, match="YAML tag not allowed"):
        load_config(path)


def test_checkpoints_are_loaded_without_unpickling():
    for path in python_files():
        for owner, name, node in calls(path):
            if owner == "torch" and name == "load":
                flag = [k.value for k in node.keywords if k.arg == "weights_only"]
                assert flag and isinstance(flag[0], ast.Constant) and flag[0].value is True, \
                    f"{path}:{node.lineno}: torch.load without weights_only=True"
            assert not (owner in ("pickle", "dill", "cloudpickle") and name in ("load", "loads")), \
                f"{path}:{node.lineno}: {owner}.{name} unpickles arbitrary objects"


def test_servers_bind_to_loopback_by_default():
    import inspect

    from xsweep.cli import build_parser
    from xsweep.report.tensorboard import start_tensorboard

    assert build_parser().parse_args(["tensorboard", "runs/x"]).host == "127.0.0.1"
    assert inspect.signature(start_tensorboard).parameters["host"].default == "127.0.0.1"
    source = (REPO_ROOT / "xsweep" / "sweep" / "ray_session.py").read_text()
    assert "include_dashboard=False" in source  # a local sweep starts no dashboard at all
    assert "0.0.0.0" not in "".join(p.read_text() for p in python_files())


def test_ray_token_authentication_is_never_turned_off():
    texts = {p: p.read_text() for p in [*python_files(), REPO_ROOT / "cluster.yaml", REPO_ROOT / "Makefile",
                                        *(REPO_ROOT / "scripts").glob("*.sh")] if p.is_file()}
    for path, text in texts.items():
        assert not re.search(r"RAY_AUTH_MODE\W{0,4}disabled", text), f"{path} turns Ray's token auth off"


def test_cluster_yaml_holds_no_credentials_and_keeps_the_dashboard_private():
    text = (REPO_ROOT / "cluster.yaml").read_text()
    cluster = yaml.safe_load(text)
    secret = re.compile(r"(secret|password|passwd|token|access_key|api_key|credential|private_key)", re.I)

    def walk(node, where="") -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                # A file mount copies a file (the token file) to the nodes; its value is a path, not a secret.
                copies_a_file = where == "file_mounts." and str(value).startswith(("~/", "/", "./"))
                assert not (secret.search(str(key)) and value and not copies_a_file), \
                    f"cluster.yaml {where}{key} holds a credential"
                walk(value, f"{where}{key}.")
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
        elif isinstance(node, str):
            assert not re.search(r"(AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY)", node), where

    walk(cluster)
    head = " ".join(cluster["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert "ray dashboard cluster.yaml" in text and "127.0.0.1:8265" in text  # reached by port forwarding


def test_docs_reliability_lists_every_reliability_test():
    doc = (REPO_ROOT / "docs" / "reliability.md").read_text()
    listed = set(re.findall(r"`(test_[a-z0-9_]+)`", doc))
    tests = {name for f in ("test_bad_inputs.py", "test_reliability.py", "test_reliability_ray.py")
             for name in re.findall(r"^def (test_\w+)", (REPO_ROOT / "tests" / f).read_text(), re.M)}
    assert listed - tests == set(), "docs/reliability.md names tests that do not exist"
    assert tests - listed == set(), "tests missing from the table in docs/reliability.md"
