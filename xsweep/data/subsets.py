"""Fixed, stratified subsets of the dev and test partitions, for quick science.

The NLI head scores every utterance against every intent, so a full English NLI dev evaluation
costs what many training epochs cost, and a full test costs that again per language.
`data.max_dev_examples` and `data.max_test_examples_per_locale` cut each partition to a subset
that keeps every intent's share (largest remainders; every intent keeps at least one utterance
when the size allows). The subset is drawn once, from the training locale's partition, with a
fixed seed and each intent's own random stream, so it depends only on the ids and intents there:
every trial of a sweep, and of any later sweep over the same data, scores the same utterances.
MASSIVE is parallel (an utterance has the same id in every locale), so the same ids are used in
every language and the per-language scores stay comparable. The driver writes the ids into the
run directory (`SUBSETS_FILE`).
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from xsweep.data.fewshot import id_sort_key
from xsweep.errors import XsweepError

SUBSET_SEED = 0
"""Not the trial's seed: every trial must score the same utterances."""

SUBSETS_FILE = "eval_subsets.json"
"""In the run directory: {partition: {size: [ids]}} for each partition and size the sweep cuts to."""

SIZE_KEYS = {"dev": "max_dev_examples", "test": "max_test_examples_per_locale"}
"""The `data` key that cuts each partition."""


def subset_size(data: Any, partition: str) -> int | None:
    """The size `data` (a `DataConfig`) cuts `partition` to; None: the whole partition."""
    key = SIZE_KEYS.get(partition)
    return getattr(data, key) if key else None


@functools.lru_cache(maxsize=16)
def massive_subset_ids(data_dir: Path, train_locale: str, partition: str, size: int) -> tuple[str, ...]:
    """The subset of a MASSIVE partition, drawn in the training locale (read once per process)."""
    from xsweep.data.massive import read_massive

    return tuple(stratified_ids(read_massive(Path(data_dir), train_locale, [partition]), size))


def stratified_ids(rows: Sequence[Any], size: int, *, seed: int = SUBSET_SEED) -> list[str]:
    """`size` ids of `rows` (each with `.id` and `.intent`), every intent keeping its share; all
    ids when `size` is at least their number. Sorted by id."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise XsweepError(f"a subset size must be a positive integer, got {size!r}", fix="use e.g. 600, or null for all")
    by_intent: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        by_intent[row.intent].append(row.id)
    total = sum(len(ids) for ids in by_intent.values())
    if size >= total:
        return sorted((row.id for row in rows), key=id_sort_key)
    intents = sorted(by_intent)
    # One utterance per intent first (when the size allows), the rest in proportion to what is left.
    taken = {intent: 1 if size >= len(intents) else 0 for intent in intents}
    left = {intent: len(by_intent[intent]) - taken[intent] for intent in intents}
    rest = size - sum(taken.values())
    quota = {intent: rest * left[intent] / sum(left.values()) for intent in intents}
    for intent in intents:
        taken[intent] += int(quota[intent])
    by_remainder = sorted(intents, key=lambda i: (-(quota[i] - int(quota[i])), i))
    for intent in by_remainder[:size - sum(taken.values())]:
        taken[intent] += 1
    chosen = []
    for intent in intents:
        ids = sorted(by_intent[intent], key=id_sort_key)
        chosen += random.Random(f"{seed}:{intent}").sample(ids, taken[intent])
    return sorted(chosen, key=id_sort_key)


def keep_ids(rows: Sequence[Any], ids: Sequence[str], *, where: str) -> list[Any]:
    """The rows whose id is in `ids`, in file order; every id must be there (MASSIVE is parallel)."""
    wanted = set(ids)
    kept = [row for row in rows if row.id in wanted]
    if len(kept) != len(wanted):
        missing = sorted(wanted - {row.id for row in kept}, key=id_sort_key)
        raise XsweepError(f"{len(missing)} of the {len(wanted)} subset ids chosen in the training locale are "
                          f"missing here (e.g. {', '.join(missing[:3])})", where=where,
                          fix="use a complete MASSIVE locale file, or turn the subset off "
                              "(data.max_dev_examples / data.max_test_examples_per_locale: null)")
    return kept
