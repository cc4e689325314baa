"""Few-shot sampling: seeded, order-independent, short classes listed, saved ids reproduce it."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from xsweep.data.fewshot import load_sample_ids, sample_few_shot, save_sample, select_ids
from xsweep.data.massive import MassiveExample, read_massive
from xsweep.errors import XsweepError
from xsweep.paths import shared_data_dir

pytestmark = pytest.mark.timeout(60)
MASSIVE = shared_data_dir() / "massive"


def _examples(sizes: dict[str, int]) -> list[MassiveExample]:
    out, i = [], 0
    for intent, n in sizes.items():
        for _ in range(n):
            out.append(MassiveExample(str(i), "en-US", "train", "s", intent, f"u{i}", None))
            i += 1
    return out


def test_same_seed_same_ids_other_seed_other_ids_any_input_order():
    examples = _examples({"a": 30, "b": 30, "c": 3})
    first = sample_few_shot(examples, 5, seed=1)
    shuffled = examples[:]
    random.Random(0).shuffle(shuffled)
    assert sample_few_shot(shuffled, 5, seed=1).ids == first.ids
    assert sample_few_shot(examples, 5, seed=2).ids != first.ids
    assert Counter(ex.intent for ex in first.examples) == {"a": 5, "b": 5, "c": 3}
    assert first.short_classes == {"c": 3}
    assert sample_few_shot(examples, None, seed=1).ids == [ex.id for ex in examples]


def test_dropping_a_class_keeps_the_others_sample():
    examples = _examples({"a": 30, "b": 30})
    both = sample_few_shot(examples, 5, seed=3)
    only_a = sample_few_shot([e for e in examples if e.intent == "a"], 5, seed=3)
    assert [i for i, e in zip(both.ids, both.examples) if e.intent == "a"] == only_a.ids


def test_bad_shots_are_errors():
    examples = _examples({"a": 3, "b": 4})
    with pytest.raises(XsweepError, match="larger than every intent"):
        sample_few_shot(examples, 5, seed=0)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(XsweepError):
            sample_few_shot(examples, bad, seed=0)
    with pytest.raises(XsweepError):
        sample_few_shot([], 5, seed=0)


def test_save_and_reload_reproduces_the_sample(tmp_path):
    examples = _examples({"a": 30, "b": 2})
    sample = sample_few_shot(examples, 15, seed=7)
    path = tmp_path / "run" / "fewshot.json"
    save_sample(sample, path)
    saved = json.loads(path.read_text())
    assert saved == {"ids": sample.ids, "short_classes": {"b": 2}, "shots": 15, "seed": 7}
    assert select_ids(examples, load_sample_ids(path)) == sample.examples
    with pytest.raises(XsweepError):
        select_ids(examples[:3], sample.ids)


def test_real_cooking_query_is_a_short_class_at_5_shots(shared_data):
    train = read_massive(MASSIVE, "en-US", ["train"])
    sample = sample_few_shot(train, 5, seed=0)
    assert sample.short_classes == {"cooking_query": 4}
    assert len(sample.ids) == 59 * 5 + 4
    assert sample_few_shot(train, 5, seed=0).ids == sample.ids
    assert sample_few_shot(train, 5, seed=1).ids != sample.ids
    fifteen = sample_few_shot(train, 15, seed=0)
    assert fifteen.short_classes == {"cooking_query": 4, "music_dislikeness": 14}
