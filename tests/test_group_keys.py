"""Group keys survive upgrades: a config key added later, at its default, leaves them unchanged.

The keys pinned below were computed by xsweep before this round's new config keys existed (commit
18c9472). A trial's id starts with its group key and `--resume` finds finished trials by id, so a
change here means every existing run would retrain: register a new key in `record.ADDED_KEYS`
with the default it is added with. A changed default is a schema change (docs/CHANGELOG.md).
"""

from __future__ import annotations

import pytest

from xsweep.config import grid_points, load_config, to_dict, with_overrides
from xsweep.record import ADDED_KEYS, group_of, training_config

PINNED = {
    ("quickstart.yaml", 0): "5087f3c23e0f",
    ("apt_demo.yaml", 0): "fd556047676b",
    ("apt_demo.yaml", 1): "a88543c9c8ff",
    ("massive_intent_nli.yaml", 0): "e5a1fc41a368",
    ("massive_slots.yaml", 0): "066700708410",
    ("sgd_intent.yaml", 0): "c9223d820241",
}


def resolved(repo_root, experiment: str, point: int) -> dict:
    cfg = load_config(repo_root / "experiments" / experiment)
    return to_dict(with_overrides(cfg, grid_points(cfg)[point]))


@pytest.mark.parametrize(("experiment", "point"), sorted(PINNED))
def test_group_keys_are_those_of_runs_made_before_the_new_keys(repo_root, experiment, point):
    assert group_of(resolved(repo_root, experiment, point))[0] == PINNED[experiment, point]


def test_every_added_key_exists_with_its_registered_default(repo_root):
    defaults = to_dict(load_config(repo_root / "experiments" / "quickstart.yaml"))
    for dotted, default in ADDED_KEYS.items():
        section = defaults
        for name in dotted.split("."):
            assert name in section, f"ADDED_KEYS names {dotted}, which the schema lacks"
            section = section[name]
        assert section == default, f"{dotted}'s default is {section!r}, registered as {default!r}"


def test_an_added_key_set_to_another_value_is_another_group(repo_root):
    """Leaving a key out of the hash at its default must not hide a trial that changed it."""
    assert ADDED_KEYS, "no added key to check with"
    base = resolved(repo_root, "quickstart.yaml", 0)
    for dotted, default in ADDED_KEYS.items():
        changed = to_dict(with_overrides(load_config(repo_root / "experiments" / "quickstart.yaml"),
                                         {dotted: _other(dotted, default)}))
        assert group_of(changed)[0] != group_of(base)[0], dotted
        assert training_config(changed) != training_config(base), dotted


def test_a_config_written_without_the_added_keys_is_the_same_training(repo_root):
    """What an older xsweep wrote (no added keys) and what this one resolves train the same trial:
    a checkpoint written before the keys existed is resumed, not refused."""
    current = resolved(repo_root, "quickstart.yaml", 0)
    older = to_dict(with_overrides(load_config(repo_root / "experiments" / "quickstart.yaml"), {}))
    for dotted in ADDED_KEYS:
        *parents, leaf = dotted.split(".")
        section = older
        for name in parents:
            section = section[name]
        del section[leaf]
    assert training_config(older) == training_config(current)
    assert group_of(older) == group_of(current)


OTHER_CHOICE = {"optim.precision": "fp32", "data.max_dev_examples": 600, "data.max_test_examples_per_locale": 300,
                "backbone.pooling": "mean", "backbone.text_prefix": "query: "}
"""For added keys that take one of a few strings, or are off (None) by default: another valid value."""


def _other(dotted: str, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value / 2 if isinstance(value, float) else value + 1
    assert dotted in OTHER_CHOICE, f"name another valid value of {dotted} in OTHER_CHOICE"
    return OTHER_CHOICE[dotted]
