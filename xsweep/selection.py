"""Model selection and aggregation over seeds, as the paper's protocol prescribes.

For each configuration group (the trial record's `group_key`):
- a learning rate is *eligible* only if every expected seed has a completed trial with a best
  English dev score; its dev score is the mean over seeds of those best scores (a rate pruned at a
  milestone, `sweep.pruning`, is not: its seeds stopped there);
- the chosen learning rate has the highest mean dev score, ties going to the smaller rate;
- each language's test score is the mean over the chosen rate's seeds;
- AVG is the mean over seeds of each seed's average over all languages, and std the sample
  standard deviation (ddof=1) of those per-seed averages, the paper's "AVG (std)".

Nothing is averaged silently over fewer items: a seed missing a language has no language
average, and every gap is listed in `missing` / `missing_seeds` and counted. Pure functions: no
Ray, no files.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from xsweep.errors import XsweepError
from xsweep.record import STATUSES, TrialRecord

# Mean dev scores closer than this are a tie (accuracies live in [0, 1]; a difference this
# small is float noise from summing in another order, never a real difference).
TIE_TOLERANCE = 1e-12
DEFAULT_TRAIN_LOCALE = "en-US"
# A sweep with trials in these states has not finished: its results are provisional. Pruned trials
# have: their learning rate lost at a milestone and will not run again.
UNFINISHED = ("running", "paused", "stopped")


@dataclass
class LrRow:
    """One learning rate of a group, as the selection saw it."""

    lr: float
    mean_dev: float | None
    """Mean over seeds of the seeds' best English dev score (over the `n_dev` seeds having one)."""
    n_seeds: int
    """Seeds with a record at this learning rate."""
    n_dev: int
    """Seeds with a best dev score (the count `mean_dev` is over)."""
    eligible: bool
    """All expected seeds present and completed with a dev score."""
    statuses: dict[str, int]
    """Status -> number of seeds."""
    seeds: list[int]
    reason: str = ""
    """Why the rate is not eligible; empty when it is."""


@dataclass
class LanguageScore:
    mean: float | None
    """Mean test score over the seeds that have this language; None if none has it."""
    n: int
    """Seeds the mean is over."""
    of: int
    """Seeds that should have it (the chosen rate's seeds)."""
    std: float | None = None
    """Sample std (ddof=1) over those seeds (error bars); None with fewer than two."""

    @property
    def complete(self) -> bool:
        return self.mean is not None and self.n == self.of


@dataclass
class GroupSummary:
    group_key: str
    group_name: str
    metric: str
    """Name of the score (accuracy, f1); values are fractions in [0, 1]."""
    train_locale: str
    chosen_lr: float | None
    """Selected learning rate; None if no rate has any completed seed."""
    provisional: bool
    """True when no rate was eligible and the choice is the best among completed seeds only."""
    lr_table: dict[float, LrRow]
    locales: list[str]
    """Languages reported, training locale first, then sorted."""
    per_language: dict[str, LanguageScore]
    seed_averages: dict[int, float | None]
    """Seed -> average over all `locales`; None when the seed lacks a language."""
    avg: float | None
    """Mean over seeds of the per-seed language averages (over `avg_seeds`)."""
    std: float | None
    """Sample std (ddof=1) of the per-seed averages; None with fewer than two."""
    seeds_used: list[int]
    """Seeds of the chosen learning rate."""
    avg_seeds: list[int]
    """Seeds that have a language average, i.e. the ones AVG and std are over."""
    expected_seeds: list[int]
    missing: list[tuple[int, str]] = field(default_factory=list)
    """(seed, locale) test scores absent for the chosen learning rate."""
    missing_seeds: list[tuple[float, int]] = field(default_factory=list)
    """(lr, seed) grid points with no record at all."""
    statuses: dict[str, int] = field(default_factory=dict)
    """Status -> number of trials in the whole group (diverged and failed stay visible)."""
    partial: bool = False
    """The sweep is still running or was interrupted, or seeds are missing."""
    config: dict[str, Any] = field(default_factory=dict)
    """A resolved config of the group (lr and seed are those of one trial): for table layouts."""
    aligned_on: str | None = None
    """APT: the parallel data the group's starting prompt was aligned on (its records say)."""

    @property
    def avg_complete(self) -> bool:
        """AVG is over every seed of the chosen rate, and std exists when it should."""
        return self.avg is not None and len(self.avg_seeds) == len(self.seeds_used)


def summarise(records: list[TrialRecord], *, locales: list[str] | None = None,
              expected_seeds: list[int] | None = None) -> list[GroupSummary]:
    """One `GroupSummary` per group key, in order of group name.

    `locales`: languages to report; default: every language any completed trial of the group
    was tested on. `expected_seeds`: seeds every learning rate must have; default: every seed
    seen in the group or declared in its configs' `sweep.seeds` (so a seed present for one rate
    and absent for another, or never started at all, is a gap).
    """
    groups: dict[str, list[TrialRecord]] = {}
    for record in records:
        groups.setdefault(record.group_key, []).append(record)
    summaries = [_summarise_group(recs, locales, expected_seeds) for recs in groups.values()]
    return sorted(summaries, key=lambda s: (s.group_name, s.group_key))


def _summarise_group(records: list[TrialRecord], locales: list[str] | None,
                     expected_seeds: list[int] | None) -> GroupSummary:
    first = records[0]
    by_point: dict[tuple[float, int], TrialRecord] = {}
    for record in records:
        point = (record.lr, record.seed)
        if point in by_point:
            other = by_point[point]
            raise XsweepError(
                f"two trials of group {first.group_name} have lr={record.lr:g} and seed={record.seed}: "
                f"{other.trial_id} and {record.trial_id}",
                where=f"group {first.group_key}",
                fix="delete the stale trial's folder so that one record per (lr, seed) remains")
        by_point[point] = record
    seeds = sorted(set(expected_seeds) if expected_seeds is not None else _declared_seeds(records))
    lrs = sorted({r.lr for r in records})
    lr_table = {lr: _lr_row(lr, by_point, seeds) for lr in lrs}
    chosen, provisional = _choose(lr_table)

    train_locale = str(first.config.get("data", {}).get("train_locale", DEFAULT_TRAIN_LOCALE))
    if locales is None:
        seen = {loc for r in records if r.status == "completed" for loc in r.test_scores}
        locales = sorted(seen)
    locales = _order_locales(locales, train_locale)

    chosen_records = [] if chosen is None else [
        by_point[(chosen, s)] for s in seeds
        if (chosen, s) in by_point and by_point[(chosen, s)].status == "completed"]
    seeds_used = [r.seed for r in chosen_records]
    per_language: dict[str, LanguageScore] = {}
    missing: list[tuple[int, str]] = []
    for loc in locales:
        values = [r.test_scores[loc] for r in chosen_records if loc in r.test_scores]
        missing += [(r.seed, loc) for r in chosen_records if loc not in r.test_scores]
        per_language[loc] = LanguageScore(_mean(values), len(values), len(chosen_records),
                                          statistics.stdev(values) if len(values) >= 2 else None)
    missing.sort()

    # A seed's language average exists only over the full language set: averaging a seed over
    # fewer languages would change what the number means (a different language mix).
    seed_averages: dict[int, float | None] = {}
    for r in chosen_records:
        complete = bool(locales) and all(loc in r.test_scores for loc in locales)
        seed_averages[r.seed] = _mean([r.test_scores[loc] for loc in locales]) if complete else None
    avg_seeds = [s for s, v in seed_averages.items() if v is not None]
    averages = [seed_averages[s] for s in avg_seeds]
    avg = _mean(averages)
    std = statistics.stdev(averages) if len(averages) >= 2 else None

    missing_seeds = [(lr, s) for lr in lrs for s in seeds if (lr, s) not in by_point]
    statuses = _count(r.status for r in records)
    partial = bool(missing_seeds) or any(statuses.get(s, 0) for s in UNFINISHED)
    config = dict(first.config)
    return GroupSummary(
        group_key=first.group_key, group_name=first.group_name, metric=first.metric,
        train_locale=train_locale, chosen_lr=chosen, provisional=provisional, lr_table=lr_table,
        locales=locales, per_language=per_language, seed_averages=seed_averages, avg=avg, std=std,
        seeds_used=seeds_used, avg_seeds=avg_seeds, expected_seeds=seeds, missing=missing,
        missing_seeds=missing_seeds, statuses=statuses, partial=partial, config=config,
        aligned_on=first.aligned_on)


def _declared_seeds(records: list[TrialRecord]) -> set[int]:
    """Seeds seen in the group plus those its configs declare (`sweep.seeds`), so a seed whose
    trials never started is still counted as missing."""
    seeds = {r.seed for r in records}
    for r in records:
        declared = r.config.get("sweep", {}).get("seeds") if isinstance(r.config.get("sweep"), dict) else None
        if isinstance(declared, list):
            seeds.update(int(s) for s in declared)
    return seeds


def _lr_row(lr: float, by_point: dict[tuple[float, int], TrialRecord], seeds: list[int]) -> LrRow:
    present = [by_point[(lr, s)] for s in seeds if (lr, s) in by_point]
    # Records of seeds outside an explicit `expected_seeds` still count as visible trials.
    extra = [r for (r_lr, s), r in by_point.items() if r_lr == lr and s not in seeds]
    present += sorted(extra, key=lambda r: r.seed)
    devs = [r.best_dev for r in present if r.best_dev is not None]
    statuses = _count(r.status for r in present)
    reasons = []
    absent = [s for s in seeds if (lr, s) not in by_point]
    if absent:
        reasons.append(f"seed {', '.join(map(str, absent))} missing")
    if any(r.status == "pruned" for r in present):
        epochs = sorted({r.pruned_at_epoch for r in present if r.pruned_at_epoch is not None})
        reasons.append(f"pruned at epoch {', '.join(map(str, epochs))}" if epochs else "pruned")
    reasons += [f"seed {r.seed} {r.status}" for r in present if r.status not in ("completed", "pruned")]
    no_dev = [f"seed {r.seed} has no dev score" for r in present
              if r.status == "completed" and r.best_dev is None]
    reasons += no_dev
    return LrRow(lr=lr, mean_dev=_mean(devs), n_seeds=len(present), n_dev=len(devs),
                 eligible=not reasons and bool(present), statuses=statuses,
                 seeds=[r.seed for r in present], reason="; ".join(reasons))


def _choose(lr_table: dict[float, LrRow]) -> tuple[float | None, bool]:
    """(chosen lr, provisional). Highest mean dev among eligible rates, ties to the smaller rate.

    With no eligible rate (a sweep still running, or every rate lost a seed) a provisional
    choice is made so a running sweep can be read; the summary says so and the tables mark it.
    It prefers rates that can still become eligible (no diverged, failed or pruned seed), then any rate
    with a completed seed.
    """
    eligible = [row for row in lr_table.values() if row.eligible and row.mean_dev is not None]
    if eligible:
        return _best(eligible), False
    usable = [row for row in lr_table.values() if row.statuses.get("completed", 0) and row.mean_dev is not None]
    hopeful = [row for row in usable if not any(row.statuses.get(s) for s in ("diverged", "failed", "pruned"))]
    fallback = hopeful or usable
    return (_best(fallback), True) if fallback else (None, False)


def _best(rows: list[LrRow]) -> float:
    top = max(row.mean_dev for row in rows)  # type: ignore[type-var]
    tied = [row.lr for row in rows if top - row.mean_dev <= TIE_TOLERANCE]  # type: ignore[operator]
    return min(tied)


def _mean(values: list[float]) -> float | None:
    # fsum is exact before the final rounding, so the mean does not depend on seed order.
    return math.fsum(values) / len(values) if values else None


def _count(statuses) -> dict[str, int]:
    counts = Counter(statuses)
    ordered = {s: counts[s] for s in STATUSES if counts[s]}
    ordered.update({s: n for s, n in counts.items() if s not in ordered})
    return ordered


def _order_locales(locales: list[str], train_locale: str) -> list[str]:
    unique = sorted(set(locales))
    return ([train_locale] if train_locale in unique else []) + [loc for loc in unique if loc != train_locale]
