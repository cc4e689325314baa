"""How downstream trials run on Ray: in their own reused Tune actor, with the backbone kept per process.

docs/trials.md gives the measurement behind this; these tests check what it relies on: a reused
process loads the frozen backbone once and gets the same results as a fresh load, fractional CPUs
pack trials into one actor, and a bad input found in a trial ends it without a retry.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from xsweep.cli import main
from xsweep.config import ResourcesConfig, load_config
from xsweep.record import read_record, read_records
from xsweep.sweep import hosting
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import _run_on_ray, plan_trials
from xsweep.train import downstream
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream

EXPERIMENT = """\
name: {name}
method: {method}
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: 5, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 2, batch_size: 16}}
sweep:
  grid: {{optim.lr: [{lrs}]}}
  seeds: [0]
  max_concurrent_trials: 1
resources: {{cpus_per_trial: {cpus}}}
storage: {{root: {root}}}
"""


def experiment(folder: Path, name: str, *, lrs: str = "0.03", cpus: float = 1, method: str = "pt") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, method=method, lrs=lrs, cpus=cpus, root=folder / "runs"))
    return path


def history(record) -> list[float]:
    return [x for p in record.dev_history for x in (p.step, p.epoch, p.score, p.train_loss)]


def test_trials_in_one_process_load_the_backbone_once_with_the_results_of_a_fresh_load(tmp_path):
    cfg = load_config(experiment(tmp_path, "cache", lrs="0.03, 0.01"))
    inputs = prepare_inputs(cfg, log=lambda _: None)
    first, second = plan_trials(cfg, tmp_path / "shared", inputs)
    hosting.forget_backbones()  # earlier tests in this process (retrieval, say) may have cached it
    loads = hosting.backbone_disk_loads()
    run_downstream(first, load_backbone=hosting.backbone_loader("pt"))
    assert hosting.backbone_disk_loads() == loads + 1
    shared = run_downstream(second, load_backbone=hosting.backbone_loader("pt"))
    assert hosting.backbone_disk_loads() == loads + 1, "the second trial reused the loaded backbone"

    [alone] = [s for s in plan_trials(cfg, tmp_path / "alone", inputs) if s.trial_id == second.trial_id]
    fresh = run_downstream(alone)  # loads from disk, after no other trial
    assert history(shared) == pytest.approx(history(fresh), abs=1e-6)
    assert shared.test_scores == pytest.approx(fresh.test_scores, abs=1e-6)


def test_a_fine_tuned_backbone_never_reaches_the_next_trial(tmp_path, monkeypatch):
    """An FT trial then a PT trial in one process, each through the Tune trainable (`run_trial`, as a
    reused actor runs them): FT trains its encoder's weights, and the PT trial after it still gets
    the backbone bit for bit as it is on disk."""
    import ray.tune

    from xsweep.models.backbone import load_backbone
    from xsweep.sweep.fusion import MEMBER_KEY
    from xsweep.sweep.trial import run_trial

    reports: list[dict] = []
    monkeypatch.setattr(ray.tune, "report", reports.append)  # outside Tune: keep what the trial reports
    encoders: dict[str, torch.nn.Module] = {}  # the encoder each trial was given, by method
    real_run = downstream.run_trials

    def observed(specs, *args, load_backbone, **kwargs):
        def load(*a, **k):
            encoder, tokenizer = load_backbone(*a, **k)
            encoders[specs[0].config["method"]] = encoder
            return encoder, tokenizer
        return real_run(specs, *args, load_backbone=load, **kwargs)

    monkeypatch.setattr(downstream, "run_trials", observed)
    cfg = load_config(experiment(tmp_path, "ftpt"),
                      ["optim.epochs=1", "sweep.grid={variant: [{method: ft, prompt.kind: none, optim.lr: 1.0e-3}, {method: pt}]}"])
    ft, pt = plan_trials(cfg, tmp_path / "run", prepare_inputs(cfg, log=lambda _: None))
    assert (ft.config["method"], pt.config["method"]) == ("ft", "pt")
    hosting.forget_backbones()  # as in a fresh actor
    threads = torch.get_num_threads()  # run_trial sets the actor's thread count
    try:
        for spec in (ft, pt):
            run_trial({"specs": [dataclasses.asdict(spec)], "resources": {"cpus_per_trial": 1}})
    finally:
        torch.set_num_threads(threads)
    assert {read_record(Path(s.trial_dir) / "record.json").status for s in (ft, pt)} == {"completed"}
    assert {r[MEMBER_KEY] for r in reports} == {ft.trial_id, pt.trial_id}  # each reported to Tune

    on_disk = load_backbone(pt.backbone_path)[0].state_dict()
    tuned = encoders["ft"].state_dict()
    assert any(not torch.equal(tuned[k], on_disk[k]) for k in on_disk), "the FT trial did not train its encoder"
    given = encoders["pt"].state_dict()
    assert given.keys() == on_disk.keys()
    changed = [k for k in on_disk if not torch.equal(given[k], on_disk[k])]
    assert not changed, f"the PT trial got fine-tuned weights: {changed[:5]}"


def test_trial_resources_take_fractions_and_a_worker_group_trial_holds_only_its_driver(tmp_path):
    assert hosting.trial_resources(ResourcesConfig(cpus_per_trial=0.5)) == {"cpu": 0.5}
    assert hosting.trial_resources(ResourcesConfig(cpus_per_trial=2, gpus_per_trial=0.25)) == {"cpu": 2, "gpu": 0.25}
    one = load_config(experiment(tmp_path, "one"), ["resources.cpus_per_trial=0.5"])
    group = load_config(experiment(tmp_path, "group"), ["resources.num_workers=2"])
    specs = {name: plan_trials(cfg, tmp_path / name, prepare_inputs(cfg, log=lambda _: None))
             for name, cfg in (("one", one), ("group", group))}
    # Tune's view of a trial: its actor's share, or for a worker group the driver's sliver.
    assert hosting.trial_placement({"specs": [dataclasses.asdict(specs["one"][0])]}).bundles == [{"CPU": 0.5}]
    assert hosting.trial_placement({"specs": [dataclasses.asdict(specs["group"][0])]}).bundles == [
        {"CPU": hosting.DRIVER_CPUS}]
    assert hosting.group_concurrency(specs["one"], {"CPU": 2}) is None  # actors: as many as fit
    assert hosting.group_concurrency(specs["group"], {"CPU": 5}) == 2  # 2 workers x 1 CPU each


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_trials_with_half_a_cpu_run_one_after_another_in_one_reused_actor(tmp_path, ray_session):
    config = experiment(tmp_path, "half", lrs="0.03, 0.01, 0.003", cpus=0.5)
    assert main(["run", str(config)]) == 0
    records = read_records(tmp_path / "runs" / "half")
    assert len(records) == 3 and {r.status for r in records} == {"completed"}
    assert len({r.worker for r in records}) == 1, "every trial ran in the same (reused) process"


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_bad_input_in_a_trial_is_not_retried(tmp_path, ray_session):
    cfg = load_config(experiment(tmp_path, "bad"))
    [spec] = plan_trials(cfg, tmp_path / "run", prepare_inputs(cfg, log=lambda _: None))
    Path(spec.trial_dir).mkdir(parents=True)
    torch.save(["not", "a", "checkpoint"], Path(spec.trial_dir) / CHECKPOINT_FILE)  # found only by the trial
    lines: list[str] = []
    assert _run_on_ray(cfg, tmp_path / "run", [spec], log=lines.append) == [spec.trial_id]
    record = read_record(Path(spec.trial_dir) / "record.json")
    assert record.status == "failed" and "not one this version of xsweep writes" in record.error
    assert [line for line in lines if line.strip().startswith("start")] == [f"  start    {spec.trial_id}"], \
        "started once: Tune did not retry it"
    assert any(line.startswith(f"trial {spec.trial_id} failed: ") for line in lines)
