"""Pruning of learning rates (`sweep.pruning`): the decision, its config, the paused trial's exact
resume, and a real sweep on Ray that prunes a learning rate which cannot learn.

The trials use the built-in `micro` backbone: `tiny` takes minutes to pretrain in a fresh test
cache. `micro` learns intents with FT (not with PT), so the sweep that must prune a rate for its
score is FT; its PT group shows the evaluation stage testing only the selected rate.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from xsweep.cli import main
from xsweep.config import dump_yaml, load_config
from xsweep.errors import XsweepError
from xsweep.record import DevPoint, TrialRecord, read_record, read_records
from xsweep.selection import summarise
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.pruning import Candidate, kept_count, plan_pruning
from xsweep.sweep.runner import _check_existing_run, plan_trials
from xsweep.train.downstream import CHECKPOINT_FILE, run_downstream
from xsweep.train.spec import TrialSpec

# --- the decision: a pure function of the records ----------------------------------------------------


def trial(lr: float, seed: int, scores: list[float], *, group: str = "g", status: str = "paused") -> tuple:
    """A candidate and its record, evaluated once per epoch with these dev scores."""
    trial_id = f"{group}-lr{lr:g}-s{seed}"
    record = TrialRecord(trial_id=trial_id, group_key=group, group_name=f"name-{group}", lr=lr, seed=seed,
                         status=status,
                         dev_history=[DevPoint(step=10 * e, epoch=e, score=s, train_loss=1.0)
                                      for e, s in enumerate(scores, 1)])
    return Candidate(trial_id, group, f"name-{group}", lr, seed), record


def plan(trials: list[tuple], milestones: list[int] = (2,), keep: float = 0.5):
    return plan_pruning([c for c, _ in trials], {c.trial_id: r for c, r in trials if r is not None},
                        list(milestones), keep)


@pytest.mark.timeout(10)
def test_a_milestone_keeps_the_rates_with_the_best_mean_over_seeds_and_prunes_every_seed_of_the_others():
    trials = [
        trial(1e-1, 0, [0.1, 0.9]), trial(1e-1, 1, [0.1, 0.1]),  # one lucky seed: mean 0.50
        trial(1e-2, 0, [0.6, 0.6]), trial(1e-2, 1, [0.6, 0.7]),  # mean 0.65
        trial(1e-3, 0, [0.7, 0.5]), trial(1e-3, 1, [0.6, 0.5]),  # best so far, not last: mean 0.65 too
        trial(1e-4, 0, [0.2, 0.3]), trial(1e-4, 1, [0.2, 0.4]),  # mean 0.35
    ]
    result = plan(trials)
    [decision] = result.decisions
    assert decision.epoch == 2 and list(decision.kept) == [1e-3, 1e-2]  # a tie goes to the smaller rate
    assert decision.kept[1e-2] == pytest.approx(0.65) and list(decision.pruned) == [1e-1, 1e-4]
    assert sorted(result.to_prune) == sorted(c.trial_id for c, _ in trials if c.lr in (1e-1, 1e-4))
    assert set(result.to_prune.values()) == {2}
    # The survivors run to their end, on every seed; the pruned run nothing more.
    assert result.targets == {c.trial_id: None for c, _ in trials if c.lr in (1e-2, 1e-3)}


@pytest.mark.timeout(10)
def test_the_score_at_a_milestone_ignores_later_evaluations_so_a_resumed_sweep_decides_the_same():
    ahead = [trial(1e-2, 0, [0.5, 0.5, 0.99, 0.99], status="completed"), trial(1e-3, 0, [0.6, 0.6, 0.6])]
    [decision] = plan(ahead).decisions
    assert decision.kept == {1e-3: 0.6} and decision.pruned == {1e-2: 0.5}


@pytest.mark.timeout(10)
def test_groups_are_never_compared_with_each_other():
    trials = [trial(1e-2, 0, [0.9, 0.9], group="a"), trial(1e-3, 0, [0.8, 0.8], group="a"),
              trial(1e-2, 0, [0.1, 0.1], group="b"), trial(1e-3, 0, [0.2, 0.2], group="b")]
    decisions = {d.group_key: d for d in plan(trials).decisions}
    assert list(decisions["a"].kept) == [1e-2] and list(decisions["b"].kept) == [1e-3]


@pytest.mark.timeout(10)
def test_at_least_one_rate_is_kept_and_nothing_pauses_where_nothing_can_be_pruned():
    assert [kept_count(n, 0.5) for n in (1, 2, 3, 4, 7)] == [1, 1, 2, 2, 4]
    assert kept_count(3, 0.1) == 1 and kept_count(10, 0.3) == 3  # 0.3 x 10 is not 3.0000000000000004 here
    [decision] = plan([trial(lr, 0, [0.5, 0.5]) for lr in (1e-1, 1e-2, 1e-3)], keep=0.1).decisions
    assert list(decision.kept) == [1e-3]
    # One rate in the group: no milestone can prune it, so its trials run straight to the end.
    lonely = [trial(1e-2, 0, [], status="running"), (Candidate("new", "g", "name-g", 1e-2, 1), None)]
    result = plan(lonely, milestones=[2, 4])
    assert result.decisions == [] and result.targets == {"g-lr0.01-s0": None, "new": None}


@pytest.mark.timeout(10)
def test_a_group_waits_at_a_milestone_until_every_seed_of_its_rates_has_reached_it():
    trials = [trial(1e-2, 0, [0.5, 0.6]), trial(1e-2, 1, [0.5], status="failed"),
              trial(1e-3, 0, [0.5, 0.6, 0.7], status="running"), (Candidate("never-ran", "g", "name-g", 1e-3, 1), None)]
    result = plan(trials, milestones=[2, 3])
    assert result.decisions == [] and result.to_prune == {}
    assert result.targets == {"g-lr0.01-s1": 2, "never-ran": 2}  # the others stand at epoch 2 already


@pytest.mark.timeout(10)
def test_early_stopped_seeds_count_with_their_history_and_a_rate_with_a_diverged_seed_ranks_last():
    trials = [trial(1e-1, 0, [0.9, 0.9]), trial(1e-1, 1, [0.9], status="diverged"),   # lost before epoch 2
              trial(1e-2, 0, [0.3], status="completed"), trial(1e-2, 1, [0.4, 0.4]),  # early stop: 0.3 counts
              trial(1e-3, 0, [0.2, 0.2]), trial(1e-3, 1, [0.2, 0.2])]
    [decision] = plan(trials, keep=0.6).decisions
    assert decision.kept == {1e-2: pytest.approx(0.35), 1e-3: pytest.approx(0.2)}
    assert decision.pruned == {1e-1: None}
    # Only the unfinished trial of the pruned rate is marked: a diverged or completed record stays true.
    assert sorted(plan(trials, keep=0.6).to_prune) == ["g-lr0.1-s0"]


@pytest.mark.timeout(10)
def test_a_second_milestone_compares_only_the_survivors_of_the_first():
    trials = [trial(lr, seed, scores) for lr, scores in
              ((1e-1, [0.1, 0.1, 0.1, 0.1]), (1e-2, [0.5, 0.5, 0.9, 0.9]), (1e-3, [0.6, 0.6, 0.7, 0.7]),
               (1e-4, [0.4, 0.4, 0.4, 0.4])) for seed in (0, 1)]
    for candidate, record in trials:  # the first milestone's losers were marked when it was decided
        if candidate.lr in (1e-1, 1e-4):
            record.status, record.dev_history = "pruned", record.dev_history[:2]
    result = plan(trials, milestones=[2, 4])
    first, second = result.decisions
    assert list(first.kept) == [1e-3, 1e-2] and list(second.kept) == [1e-2] and list(second.pruned) == [1e-3]
    assert sorted(result.to_prune) == ["g-lr0.001-s0", "g-lr0.001-s1"]  # the pruned are not marked twice
    assert result.targets == {"g-lr0.01-s0": None, "g-lr0.01-s1": None}


# --- config --------------------------------------------------------------------------------------------

EXPERIMENT = """\
name: {name}
method: {method}
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 32, shots: {shots}, eval_locales: [en-US, de-DE]}}
prompt: {prompt}
optim: {{epochs: 4, batch_size: 16, patience: {patience}}}
sweep:
  grid:
    optim.lr: {lrs}
  seeds: [0, 1]
  evaluate: {evaluate}
storage: {{root: {root}}}
resources: {{cpus_per_trial: 0.5}}
"""
PT = dict(method="pt", prompt="{kind: layer, length: 4}")
FT = dict(method="ft", prompt="{kind: none}")


def write_experiment(folder: Path, name: str, *, lrs: str = "[1.0e-2]", shots: str = "5", patience: int = 10,
                     evaluate: str = "selected", **method: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(EXPERIMENT.format(name=name, lrs=lrs, shots=shots, patience=patience, evaluate=evaluate,
                                      root=folder / "runs", **(method or PT)))
    return path


@pytest.mark.timeout(30)
@pytest.mark.parametrize("overrides, key, what", [
    (["sweep.pruning.milestones=[2, 2]"], "sweep.pruning.milestones", "increasing positive epochs"),
    (["sweep.pruning.milestones=[0]"], "sweep.pruning.milestones", "increasing positive epochs"),
    (["sweep.pruning.milestones=[4]"], "sweep.pruning.milestones", "not below optim.epochs (4)"),
    (["sweep.pruning.milestones=[2]", "optim.eval_every_epochs=3"], "sweep.pruning.milestones",
     "not an epoch where English dev is evaluated (every 3)"),
    (["sweep.pruning.keep=1"], "sweep.pruning.keep", "fraction in (0, 1)"),
    (["sweep.pruning.keep=0"], "sweep.pruning.keep", "fraction in (0, 1)"),
    (["sweep.pruning.milestones=[2]", "sweep.search=optuna", "sweep.grid={}",
      "sweep.optuna={space: {optim.lr: {low: 1.0e-3, high: 1.0e-1, log: true}}}"], "sweep.pruning", "optuna"),
    (["sweep.pruning.milestone=[2]"], "sweep.pruning.milestone", "did you mean milestones"),
    (["sweep.pruning.milestones=[3]", "sweep.grid={variant: [{optim.epochs: 3}, {optim.epochs: 6}]}"],
     "sweep.grid.variant", "milestone 3 is not below optim.epochs (3)"),
])
def test_bad_pruning_settings_are_refused_with_the_key_and_a_fix(tmp_path, overrides, key, what):
    path = write_experiment(tmp_path, "bad")
    with pytest.raises(XsweepError) as error:
        load_config(path, overrides)
    assert f"({key})" in error.value.where and what in error.value.message and error.value.fix


@pytest.mark.timeout(30)
def test_pruning_is_off_by_default_and_takes_ft_as_well(tmp_path):
    assert load_config(write_experiment(tmp_path, "default")).sweep.pruning.milestones == []
    cfg = load_config(write_experiment(tmp_path, "ft", **FT), ["sweep.pruning={milestones: [1, 2], keep: 0.34}"])
    assert cfg.sweep.pruning.milestones == [1, 2] and cfg.sweep.pruning.keep == 0.34


@pytest.mark.timeout(30)
def test_resume_may_not_change_pruning_nor_add_seeds_to_a_pruned_sweep(tmp_path):
    path = write_experiment(tmp_path, "resumed")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(dump_yaml(load_config(path, ["sweep.pruning.milestones=[2]"])))
    for overrides, key in ((["sweep.pruning.milestones=[1]"], "sweep.pruning.milestones"),
                           (["sweep.pruning.milestones=[2]", "sweep.pruning.keep=0.25"], "sweep.pruning.keep"),
                           (["sweep.pruning.milestones=[2]", "sweep.seeds=[0, 1, 2]"], "sweep.seeds")):
        with pytest.raises(XsweepError, match=f"differs .* in {key}"):
            _check_existing_run(run_dir, load_config(path, overrides), resume=True)
    _check_existing_run(run_dir, load_config(path, ["sweep.pruning.milestones=[2]"]), resume=True)
    # A run started before xsweep knew of pruning ran without it: resuming it so is no change.
    (run_dir / "config.yaml").write_text(dump_yaml(load_config(path)).replace("  pruning:\n    milestones: []\n"
                                                                             "    keep: 0.5\n", ""))
    assert "pruning" not in (run_dir / "config.yaml").read_text()
    _check_existing_run(run_dir, load_config(path), resume=True)


# --- the trial loop: a paused trial continues exactly ---------------------------------------------------


@pytest.fixture(scope="module")
def make_spec(tmp_path_factory):
    """(name, method settings) -> the TrialSpec of a one-trial experiment that tests itself."""
    root = tmp_path_factory.mktemp("paused")
    torch.set_num_threads(1)  # as in a Ray worker with cpus_per_trial 1

    def make(name: str, **settings) -> TrialSpec:
        path = write_experiment(root, name, evaluate="all", **settings)
        cfg = load_config(path, ["sweep.seeds=[0]"])
        [spec] = plan_trials(cfg, root / "runs" / name, prepare_inputs(cfg, log=lambda _: None))
        return spec

    return make


def epochs(record: TrialRecord) -> list[int]:
    return [point.epoch for point in record.dev_history]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("method", [PT, FT], ids=["pt", "ft"])
def test_a_trial_paused_at_milestones_ends_exactly_where_an_uninterrupted_one_ends(make_spec, method):
    whole = run_downstream(make_spec(f"whole-{method['method']}", **method))
    spec = make_spec(f"paused-{method['method']}", **method)
    trial_dir = Path(spec.trial_dir)

    first = run_downstream(dataclasses.replace(spec, stop_after_epoch=1))
    assert first.status == "paused" and epochs(first) == [1] and first.test_scores == {}
    assert (trial_dir / CHECKPOINT_FILE).is_file() and not (trial_dir / "best").exists()
    assert read_record(trial_dir / "record.json").status == "paused"
    second = run_downstream(dataclasses.replace(spec, stop_after_epoch=3))
    assert second.status == "paused" and epochs(second) == [1, 2, 3]
    again = run_downstream(dataclasses.replace(spec, stop_after_epoch=3))  # already there: trains nothing
    assert again.status == "paused" and again.dev_history == second.dev_history

    last = run_downstream(spec)
    assert last.status == "completed" and last.resumed_at == [second.dev_history[0].step, second.dev_history[2].step]
    assert last.dev_history == whole.dev_history  # steps, scores and losses, exactly
    assert (last.best_dev, last.best_epoch) == (whole.best_dev, whole.best_epoch)
    assert last.test_scores == whole.test_scores and set(last.test_scores) == {"en-US", "de-DE"}
    assert not (trial_dir / CHECKPOINT_FILE).exists()


@pytest.mark.timeout(60)
def test_a_trial_that_early_stops_before_its_milestone_completes_normally(make_spec):
    # lr 1e-7 does not move the dev score: patience 1 ends the trial after its second evaluation.
    spec = make_spec("early", lrs="[1.0e-7]", patience=1)
    record = run_downstream(dataclasses.replace(spec, stop_after_epoch=3))
    assert record.status == "completed" and epochs(record) == [1, 2] and record.test_scores


# --- a real sweep on Ray ---------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_sweep_prunes_a_rate_that_cannot_learn_on_all_its_seeds_and_selects_among_the_rest(
        tmp_path, ray_session, capsys):
    # Two groups: FT learns on `micro` (lr 1e-7 does not move), PT does not learn (its pruning is
    # decided by noise and ties), and its selected rate goes through the evaluation stage.
    path = write_experiment(tmp_path, "pruned", lrs="[3.0e-3, 1.0e-3, 1.0e-7]", shots="null", **FT)
    grid = "sweep.grid={variant: [{method: ft, prompt.kind: none}, {method: pt, prompt.kind: layer, prompt.length: 4}], " \
           "optim.lr: [3.0e-3, 1.0e-3, 1.0e-7]}"
    args = ["run", str(path), grid, "sweep.pruning.milestones=[2]"]
    assert main(args) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "pruned"
    records = read_records(run_dir)
    assert len(records) == 12
    groups = {s.config["method"]: s for s in summarise(records)}
    ft = groups["ft"]
    assert f"pruning {ft.group_name} at epoch 2 (mean dev over seeds): kept lr 0.003 (" in out
    assert "; pruned lr 1e-07 (" in out

    for method, summary in groups.items():
        mine = [r for r in records if r.group_key == summary.group_key]
        pruned = [r for r in mine if r.status == "pruned"]
        assert sorted(r.seed for r in pruned) == [0, 1] and len({r.lr for r in pruned}) == 1  # every seed of one rate
        for record in pruned:  # stopped at the milestone, untested, checkpoint kept
            assert epochs(record) == [1, 2] and record.pruned_at_epoch == 2 and not record.test_scores
            assert (run_dir / "trials" / record.trial_id / CHECKPOINT_FILE).is_file()
        for record in mine:
            if record.status != "pruned":
                assert record.status == "completed" and epochs(record) == [1, 2, 3, 4]
                assert record.resumed_at == [record.dev_history[1].step]  # paused at 2, continued from there
        assert not summary.partial and not summary.provisional and summary.seeds_used == [0, 1]
        assert summary.chosen_lr != pruned[0].lr
        assert summary.lr_table[pruned[0].lr].reason == "pruned at epoch 2"
        tested = {r.lr for r in mine if r.test_scores}
        # FT trials test themselves (every survivor); PT's evaluation stage tests the selected rate only.
        assert tested == ({summary.chosen_lr} if method == "pt" else {r.lr for r in mine} - {pruned[0].lr})
    assert groups["ft"].lr_table[1e-7].reason == "pruned at epoch 2"
    assert "evaluation stage: 2 trial(s) of the selected learning rates" in out
    assert "pruned at epoch 2" in (run_dir / "results" / "results.md").read_text()

    # --resume finds every decision in the records: nothing runs, nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in run_dir.glob("trials/*/record.json")}
    assert main([*args, "--resume"]) == 0
    assert "12 already completed, 0 to run" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("trials/*/record.json")} == stamps
