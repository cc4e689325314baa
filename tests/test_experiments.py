"""Every shipped experiment plans, as `xsweep run FILE --dry-run` plans it, to the trials and
alignment runs README.md's table of the paper's experiments promises, and each planned trial is
whole: a learning rate from the grid, a seed, every seed of its group, its stage's prompt.

The dry run needs no data or backbone (it projects MASSIVE from its published sizes and skips
SGD's). Planning the alignment runs needs their corpora's folders to exist (a run is named by its
sources): the data root holds the real Tatoeba sets from ../shared/data, and the project's demo
XSGD stands in for XSGD, which ../shared/data lacks. No file of either is read.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from xsweep.cli import EXPERIMENTS_DIR, main
from xsweep.config import grid_points, load_config
from xsweep.paths import REPO_ROOT
from xsweep.trial_log import flatten_config, pick_hparams

pytestmark = pytest.mark.timeout(60)

SHIPPED = sorted(EXPERIMENTS_DIR.glob("*.yaml"))
NOT_IN_README_TABLE = {"quickstart.yaml": (4, 0), "e5_pilot.yaml": (8, 0), "e5_pilot_layer_prompt.yaml": (4, 0),
                       "e5_reproduction.yaml": (48, 1)}
"""Experiments outside the paper's table: (trials, alignment runs). The quickstart's header says
"2 learning rates x 2 seeds"; it has no alignment stage. The e5 pilots (README, "A real multilingual
model"): 2 poolings x 2 prefixes x 2 rates, and 2 position conventions x dropout on or off; the e5
reproduction: 16 (head, method, shots, lr) points x 3 seeds, one Tatoeba alignment. They read the
folder scripts/massive13.sh assembles (the `massive13` fixture)."""


def readme_table() -> dict[str, tuple[int, int]]:
    """README.md "The paper's experiments": file -> (trials, alignment runs), from its Trials column
    (`315 + 1 alignment`, `280 + 4 alignments`, `4 alignments`)."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## The paper's experiments", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        row = re.match(r"^\| `([\w.]+\.yaml)` \|.*\| ([^|]+) \|$", line)
        if row:
            cell = re.fullmatch(r"(?:(\d+)(?: \+ )?)?(?:(\d+) alignments?)?", row.group(2).strip())
            assert cell and any(cell.groups()), f"README row for {row.group(1)}: cannot read {row.group(2)!r}"
            table[row.group(1)] = (int(cell.group(1) or 0), int(cell.group(2) or 0))
    return table


def test_the_readme_table_lists_every_shipped_experiment():
    table = readme_table()
    assert len(table) >= 8, table
    assert set(table) | set(NOT_IN_README_TABLE) == {p.name for p in SHIPPED}
    assert not set(table) & set(NOT_IN_README_TABLE)


def dry_run(path: Path, root: Path, capsys, monkeypatch) -> str:
    """`xsweep run FILE --dry-run`, in process, with anything that would run the sweep a failure."""
    import xsweep.sweep.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("--dry-run must not run the sweep or start Ray")

    monkeypatch.setattr(runner, "run_sweep", refuse)
    monkeypatch.setattr(runner, "start_ray", refuse)
    assert main(["run", str(path), f"storage.root={root}", "--dry-run"]) == 0
    return capsys.readouterr().out


@pytest.fixture
def data_root(tmp_path, monkeypatch, shared_data, demo) -> Path:
    """XSWEEP_DATA as `xsweep data download tatoeba` leaves it, with the real Tatoeba sets from
    ../shared/data. XSGD is a manual download that ../shared/data lacks: the project's own demo
    XSGD, in XSGD's layout, stands in (planning reads neither; it names them)."""
    root = tmp_path / "data-root"
    root.mkdir()
    (root / "tatoeba").symlink_to(shared_data / "tatoeba")
    (root / "xsgd").symlink_to(demo / "xsgd")
    monkeypatch.setenv("XSWEEP_DATA", str(root))
    return root


def plan(path: Path, root: Path, demo: Path):
    """The alignment runs and trials `xsweep run` would start, planned by the runner's own
    functions (`plan_align_stages`, `plan_trials`), without preparing data or backbone."""
    from xsweep.sweep.prepare import PreparedInputs
    from xsweep.sweep.runner import plan_trials, run_dir_of
    from xsweep.sweep.stages import plan_align_stages

    cfg = load_config(path, [f"storage.root={root}"])
    stages = plan_align_stages(cfg, cfg.backbone.name, demo_dir=demo)
    if not cfg.sweep.downstream:
        return cfg, stages, []
    inputs = PreparedInputs(data_dir=root / "data", eval_locales=["en-US"], backbone_path=cfg.backbone.name,
                            data_files=[])
    return cfg, stages, plan_trials(cfg, run_dir_of(cfg), inputs, stages)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_experiment_plans_as_the_readme_says(path, tmp_path, capsys, monkeypatch, data_root, demo,
                                                           massive13):
    trials, alignments = {**readme_table(), **NOT_IN_README_TABLE}[path.name]
    runs = tmp_path / "runs"
    out = dry_run(path, runs, capsys, monkeypatch)
    assert not runs.exists(), "a dry run wrote into storage.root"

    # What the dry run prints: the trial count, and one line per alignment run.
    head = out.splitlines()[0]
    if trials:
        counted = re.match(r"experiment \w+: (\d+) grid points x (\d+) seeds = (\d+) trials; (\d) stage", head)
        assert counted, head
        points, seeds, total, stage_count = map(int, counted.groups())
        assert points * seeds == total == trials, head
        assert stage_count == (2 if alignments else 1), head
    else:
        assert "the alignment stage only" in head, head
    stage_line = re.search(r"^stage 1: (\d+) alignment run\(s\)", out, re.MULTILINE)
    assert (int(stage_line.group(1)) if stage_line else 0) == alignments, out
    printed_stage_trials = [int(n) for n in re.findall(r"^  .*: (\d+) APT trials start from it$", out, re.MULTILINE)]
    assert len(printed_stage_trials) == alignments, out

    # The trials themselves, as the runner plans them.
    cfg, stages, specs = plan(path, runs, demo)
    assert len(stages) == alignments
    assert len(specs) == trials
    if not trials:
        return
    assert len({s.trial_id for s in specs}) == trials and len({s.trial_dir for s in specs}) == trials
    grid_lrs = cfg.sweep.grid.get("optim.lr")
    variant_lrs = [point["optim.lr"] for point in grid_points(cfg) if "optim.lr" in point]  # set with other keys
    seeds_of: dict[tuple[str, float], list[int]] = defaultdict(list)
    for spec in specs:
        lr, seed = spec.config["optim"]["lr"], spec.config["seed"]
        assert isinstance(lr, float) and lr > 0, spec.trial_id
        assert lr in (grid_lrs or variant_lrs or [cfg.optim.lr]), (spec.trial_id, lr)
        assert seed in cfg.sweep.seeds, spec.trial_id
        assert spec.config["sweep"]["grid"] == {}, "a trial's config is one grid point"
        seeds_of[(spec.group_key, lr)].append(seed)
    for (group, lr), seeds in seeds_of.items():
        assert sorted(seeds) == sorted(cfg.sweep.seeds), f"group {group} lr {lr}: seeds {seeds}"
    if grid_lrs:  # every group sweeps the whole learning-rate axis
        lrs_of = defaultdict(set)
        for group, lr in seeds_of:
            lrs_of[group].add(lr)
        assert all(lrs == set(grid_lrs) for lrs in lrs_of.values()), lrs_of

    # APT trials start from their stage's prompt, as many as the dry run said, and name the corpus it
    # was aligned on; no other trial does either.
    assert len({stage.output_dir for stage in stages}) == len(stages)
    assert all(stage.output_dir.parent == runs / "stages" for stage in stages)
    apt = [s for s in specs if s.config["method"] == "apt"]
    assert Counter(s.config["prompt"]["init_from"] for s in apt) == \
        Counter({str(stage.output_dir): n for stage, n in zip(stages, printed_stage_trials)})
    corpus = {str(stage.output_dir): stage.spec.sources[0].corpus for stage in stages}
    assert all(s.aligned_on == corpus[s.config["prompt"]["init_from"]] for s in apt)
    assert all(s.config["prompt"]["init_from"] is None and s.aligned_on is None for s in specs if s.config["method"] != "apt")

    # Their HParams in TensorBoard: the keys the grid sets and the seed, in the grid's order, the
    # same for every trial (TensorBoard takes its columns from one), telling every trial apart; the
    # `align` section only where the grid sets it, with the value the grid gave (an APT trial's
    # resolved config drops the section: its prompt is aligned already).
    swept = [*dict.fromkeys(key for point in grid_points(cfg) for key in point), "seed"]
    assert all(list(s.hparams) == swept for s in specs), (swept, specs[0].hparams)
    assert len({json.dumps(s.hparams, sort_keys=True) for s in specs}) == trials
    for spec in specs:
        resolved = [key for key in swept if not key.startswith("align.")]
        assert pick_hparams(flatten_config(spec.config), resolved) == {k: spec.hparams[k] for k in resolved}

    # The cost projection counts the same trials, by method (SGD and the demo data are not projected).
    by_method = re.search(r"^  trials: ([\d,]+) \(([^)]*)\)", out, re.MULTILINE)
    if cfg.data.path == "massive":
        assert by_method, out
        assert int(by_method.group(1).replace(",", "")) == trials
        methods = Counter(s.config["method"] for s in specs)
        assert by_method.group(2) == ", ".join(f"{m} {n:,}" for m, n in methods.items())
