"""k-shot sampling per intent, reproducible from (seed, ids) alone.

The paper trains on 5, 15 or all English examples per intent. The sample depends only on the seed
and the set of examples, never on their order in the file, and each intent is drawn from its own
random stream, so adding or removing one class does not reshuffle the others. The sampled ids are
saved in the run directory; `select_ids` rebuilds the exact sample from them.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from xsweep.atomic import write_json
from xsweep.data.massive import MassiveExample
from xsweep.errors import XsweepError


@dataclass(frozen=True)
class FewShotSample:
    """The selected examples (sorted by id), their ids, and the classes smaller than `shots`."""

    examples: list[MassiveExample]
    ids: list[str]
    short_classes: dict[str, int] = field(default_factory=dict)
    """intent -> examples available, for each intent with fewer than `shots` (all of them used)."""
    shots: int | None = None
    seed: int = 0


def id_sort_key(example_id: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order ("2" < "10"), other ids after them in string order."""
    return (0, int(example_id)) if example_id.isdigit() else (1, example_id)


def sample_few_shot(examples: Sequence[MassiveExample], shots: int | None,
                    seed: int) -> FewShotSample:
    """Draw `shots` examples per intent (all of them when `shots` is None).

    An intent with fewer than `shots` examples contributes all it has and is listed in
    `short_classes`. `shots` larger than every class is an error: the "few-shot" run would
    silently be an all-data run.
    """
    if not examples:
        raise XsweepError("no examples to sample from", fix="check the partition and locale")
    if shots is not None and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
        raise XsweepError(f"shots must be a positive integer or None (all), got {shots!r}",
                          fix="use e.g. 5, 15 or null")
    ordered = sorted(examples, key=lambda ex: id_sort_key(ex.id))
    ids_seen = [ex.id for ex in ordered]
    if len(set(ids_seen)) != len(ids_seen):
        dup = next(i for i, j in zip(ids_seen, ids_seen[1:]) if i == j)
        raise XsweepError(f"duplicate example id {dup!r}",
                          fix="sample from one locale and partition at a time")
    by_intent: dict[str, list[MassiveExample]] = defaultdict(list)
    for ex in ordered:
        by_intent[ex.intent].append(ex)
    if shots is not None and all(len(v) < shots for v in by_intent.values()):
        largest = max(len(v) for v in by_intent.values())
        raise XsweepError(f"shots={shots} is larger than every intent (largest has {largest})",
                          fix=f"use shots <= {largest}, or null for all data")
    chosen: list[MassiveExample] = []
    short: dict[str, int] = {}
    for intent in sorted(by_intent):
        pool = by_intent[intent]
        if shots is None:
            chosen.extend(pool)
        elif len(pool) < shots:
            short[intent] = len(pool)
            chosen.extend(pool)
        else:
            # A string seed is hashed with SHA-512 by `random`: stable across processes and
            # independent of PYTHONHASHSEED.
            chosen.extend(random.Random(f"{seed}:{intent}").sample(pool, shots))
    chosen.sort(key=lambda ex: id_sort_key(ex.id))
    return FewShotSample(examples=chosen, ids=[ex.id for ex in chosen], short_classes=short,
                         shots=shots, seed=seed)


def save_sample(sample: FewShotSample, path: Path) -> None:
    """Write the sample's ids, short classes, shots and seed as JSON, atomically."""
    write_json(path, {"ids": sample.ids, "short_classes": sample.short_classes,
                      "shots": sample.shots, "seed": sample.seed})


def load_sample_ids(path: Path) -> list[str]:
    """The ids saved by `save_sample`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise XsweepError(f"cannot read few-shot sample: {e}", where=str(path),
                          fix="the file is written by save_sample; re-run the sampling") from None
    ids = data.get("ids") if isinstance(data, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise XsweepError("few-shot sample has no list of string 'ids'", where=str(path),
                          fix="the file is written by save_sample; re-run the sampling")
    return ids


def select_ids(examples: Iterable[MassiveExample], ids: Sequence[str]) -> list[MassiveExample]:
    """The examples with the given ids, in `ids` order; a missing id is an error."""
    by_id = {ex.id: ex for ex in examples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise XsweepError(f"{len(missing)} saved ids are not in the data (first: {missing[0]!r})",
                          fix="the run was sampled from other data; use the same data files")
    return [by_id[i] for i in ids]
