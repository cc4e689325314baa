"""Stratified dev/test subsets (xsweep/data/subsets.py) on the real MASSIVE files."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from xsweep.data.massive import read_massive
from xsweep.data.subsets import keep_ids, stratified_ids
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def en_test(shared_data):
    return read_massive(shared_data / "massive" / "1.1" / "data", "en-US", ["test"])


@pytest.mark.parametrize("size", [10, 59, 175, 600])
def test_a_subset_has_its_size_and_keeps_every_intents_share(en_test, size):
    ids = stratified_ids(en_test, size)
    assert len(ids) == size == len(set(ids))
    intent_of = {row.id: row.intent for row in en_test}
    full, cut = Counter(row.intent for row in en_test), Counter(intent_of[i] for i in ids)
    first = 1 if size >= len(full) else 0  # one utterance per intent first, when the size allows
    if first:
        assert set(cut) == set(full)
    for intent, count in cut.items():  # the rest in proportion to what each intent has left
        share = (size - first * len(full)) * (full[intent] - first) / (len(en_test) - first * len(full))
        assert abs(count - first - share) < 1, intent


def test_the_subset_is_fixed_by_ids_and_intents_not_by_file_order(en_test):
    shuffled = list(en_test)
    random.Random(7).shuffle(shuffled)
    assert stratified_ids(shuffled, 175) == stratified_ids(en_test, 175)
    assert stratified_ids(en_test, 175, seed=1) != stratified_ids(en_test, 175)


def test_a_size_above_the_partition_keeps_all(en_test):
    assert len(stratified_ids(en_test, 10_000)) == len(en_test)


def test_the_same_ids_pick_the_parallel_utterances_of_another_language(en_test, shared_data):
    ids = stratified_ids(en_test, 120)
    german = keep_ids(read_massive(shared_data / "massive" / "utt-only", "de-DE", ["test"]), ids, where="de-DE")
    english = keep_ids(en_test, ids, where="en-US")
    assert [r.id for r in german] == [r.id for r in english]
    assert [r.intent for r in german] == [r.intent for r in english]
    assert all(g.utt != e.utt for g, e in zip(german, english))


def test_ids_missing_from_a_locale_are_named(en_test):
    ids = stratified_ids(en_test, 60)
    with pytest.raises(XsweepError, match="missing here") as caught:
        keep_ids(en_test[:100], ids, where="fr-FR.jsonl")
    assert "fr-FR.jsonl" in caught.value.message and "null" in caught.value.message


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_a_bad_size_is_refused(en_test, size):
    with pytest.raises(XsweepError, match="positive integer"):
        stratified_ids(en_test, size)
