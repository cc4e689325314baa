"""Selection and aggregation on hand-made records whose answers are worked out in the comments."""

from __future__ import annotations

import math

import pytest

from xsweep.errors import XsweepError
from xsweep.record import DevPoint, TrialRecord
from xsweep.selection import summarise


def make(lr: float, seed: int, dev: float | None, test: dict[str, float] | None = None, *,
         status: str = "completed", group: str = "g1", name: str = "massive-vanilla/pt/layer16") -> TrialRecord:
    record = TrialRecord(trial_id=f"{group}-lr{lr:g}-s{seed}", group_key=group, group_name=name, lr=lr,
                         seed=seed, status=status, config={"data": {"train_locale": "en-US"}})
    if dev is not None:
        record.add_dev(DevPoint(step=10, epoch=1, score=dev - 0.05, train_loss=1.0))
        record.add_dev(DevPoint(step=20, epoch=2, score=dev, train_loss=0.5))
    record.test_scores = dict(test or {})
    return record


def scores(en: float, de: float, ja: float) -> dict[str, float]:
    return {"en-US": en, "de-DE": de, "ja-JP": ja}


def tie_sweep() -> list[TrialRecord]:
    """lr 0.1: best dev but seed 1 diverged; lr 0.01 and 1e-3 tie at mean dev 0.70."""
    return [
        make(0.1, 0, 0.95, scores(0.9, 0.9, 0.9)),
        make(0.1, 1, 0.90, status="diverged"),
        make(0.1, 2, 0.95, scores(0.9, 0.9, 0.9)),
        # Same three dev scores in another order: the means must tie exactly.
        make(0.01, 0, 0.70, scores(0.1, 0.1, 0.1)),
        make(0.01, 1, 0.80, scores(0.1, 0.1, 0.1)),
        make(0.01, 2, 0.60, scores(0.1, 0.1, 0.1)),
        make(1e-3, 0, 0.60, scores(0.80, 0.60, 0.40)),  # seed average 0.6
        make(1e-3, 1, 0.80, scores(0.90, 0.70, 0.50)),  # seed average 0.7
        make(1e-3, 2, 0.70, scores(0.85, 0.65, 0.60)),  # seed average 0.7
    ]


@pytest.mark.timeout(60)
def test_tie_goes_to_smaller_lr_and_diverged_lr_is_ineligible():
    [s] = summarise(tie_sweep())
    assert s.chosen_lr == 1e-3
    assert not s.provisional and not s.partial
    assert s.lr_table[0.1].eligible is False
    assert "seed 1 diverged" in s.lr_table[0.1].reason
    assert s.lr_table[0.1].statuses == {"completed": 2, "diverged": 1}
    assert s.lr_table[0.01].mean_dev == s.lr_table[1e-3].mean_dev == pytest.approx(0.7, abs=1e-15)
    assert s.lr_table[0.01].eligible and s.lr_table[1e-3].eligible
    assert s.statuses == {"completed": 8, "diverged": 1}


@pytest.mark.timeout(60)
def test_mean_and_sample_std_digit_by_digit():
    [s] = summarise(tie_sweep())
    assert s.locales == ["en-US", "de-DE", "ja-JP"]  # training locale first, then sorted
    assert s.per_language["en-US"].mean == pytest.approx(0.85, abs=1e-15)
    assert s.per_language["de-DE"].mean == pytest.approx(0.65, abs=1e-15)
    assert s.per_language["ja-JP"].mean == pytest.approx(0.50, abs=1e-15)
    assert all(score.n == score.of == 3 for score in s.per_language.values())
    assert s.seed_averages == pytest.approx({0: 0.6, 1: 0.7, 2: 0.7}, abs=1e-15)
    # mean 2/3; deviations -1/15, 1/30, 1/30; squares sum to 1/150; / (3 - 1) -> variance 1/300.
    assert s.avg == pytest.approx(2 / 3, abs=1e-15)
    assert s.std == pytest.approx(math.sqrt(1 / 300), abs=1e-15)
    assert f"{100 * s.avg:.1f} ({100 * s.std:.1f})" == "66.7 (5.8)"
    assert s.seeds_used == [0, 1, 2] and s.avg_seeds == [0, 1, 2]
    assert s.missing == [] and s.missing_seeds == []


@pytest.mark.timeout(60)
def test_paper_style_numbers():
    # Seed averages 0.582, 0.598, 0.614: mean 0.598, sample std exactly 0.016 -> "59.8 (1.6)".
    records = [make(1e-2, seed, 0.5, {"en-US": avg + 0.1, "de-DE": avg - 0.1})
               for seed, avg in enumerate((0.582, 0.598, 0.614))]
    [s] = summarise(records)
    assert s.avg == pytest.approx(0.598, abs=1e-12)
    assert s.std == pytest.approx(0.016, abs=1e-12)


@pytest.mark.timeout(60)
def test_missing_language_is_counted_and_the_seed_has_no_average():
    records = tie_sweep()
    del records[7].test_scores["ja-JP"]  # lr 1e-3, seed 1
    [s] = summarise(records)
    assert s.chosen_lr == 1e-3
    assert s.missing == [(1, "ja-JP")]
    ja = s.per_language["ja-JP"]
    assert (ja.n, ja.of, ja.complete) == (2, 3, False)
    assert ja.mean == pytest.approx((0.40 + 0.60) / 2, abs=1e-15)
    assert s.seed_averages[1] is None  # never an average over fewer languages
    assert s.avg_seeds == [0, 2]
    assert s.avg == pytest.approx(0.65, abs=1e-15)  # seeds 0 and 2: 0.6 and 0.7
    assert s.std == pytest.approx(math.sqrt(0.005), abs=1e-15)  # (0.05^2 * 2) / 1
    assert not s.avg_complete


@pytest.mark.timeout(60)
def test_missing_seed_makes_lr_ineligible_and_the_sweep_partial():
    records = [r for r in tie_sweep() if not (r.lr == 1e-3 and r.seed == 2)]
    [s] = summarise(records)
    # Seed 2 exists at other rates, so it is expected at 1e-3 too: 1e-3 loses, 0.01 wins.
    assert s.lr_table[1e-3].eligible is False
    assert "seed 2 missing" in s.lr_table[1e-3].reason
    assert s.missing_seeds == [(1e-3, 2)]
    assert s.chosen_lr == 0.01
    assert s.partial


@pytest.mark.timeout(60)
def test_expected_seeds_absent_everywhere_give_a_provisional_choice():
    records = [r for r in tie_sweep() if r.lr == 1e-3]
    [s] = summarise(records, expected_seeds=[0, 1, 2, 3])
    assert s.lr_table[1e-3].eligible is False
    assert s.missing_seeds == [(1e-3, 3)]
    assert s.chosen_lr == 1e-3 and s.provisional and s.partial
    assert s.expected_seeds == [0, 1, 2, 3]
    assert s.seeds_used == [0, 1, 2]


@pytest.mark.timeout(60)
def test_running_trials_mark_partial_and_stay_out_of_the_average():
    records = tie_sweep()
    records[8] = make(1e-3, 2, 0.99, status="running")  # its current best dev is high
    [s] = summarise(records)
    assert s.partial
    assert s.lr_table[1e-3].eligible is False
    assert s.lr_table[1e-3].statuses == {"running": 1, "completed": 2}
    assert s.chosen_lr == 0.01  # the only rate with every seed completed
    assert s.statuses["running"] == 1


@pytest.mark.timeout(60)
def test_failed_trial_stays_visible_and_single_seed_has_no_std():
    records = [make(1e-2, 0, 0.5, scores(0.5, 0.4, 0.3)), make(1e-1, 0, None, status="failed")]
    [s] = summarise(records)
    assert s.chosen_lr == 1e-2
    assert s.statuses == {"completed": 1, "failed": 1}
    assert s.lr_table[0.1].mean_dev is None and not s.lr_table[0.1].eligible
    assert s.avg == pytest.approx(0.4, abs=1e-15)
    assert s.std is None


@pytest.mark.timeout(60)
def test_requested_locale_nobody_has_is_missing_for_every_seed():
    [s] = summarise(tie_sweep(), locales=["en-US", "ko-KR"])
    assert s.locales == ["en-US", "ko-KR"]
    assert s.per_language["ko-KR"].mean is None
    assert s.missing == [(0, "ko-KR"), (1, "ko-KR"), (2, "ko-KR")]
    assert s.avg is None and s.std is None


@pytest.mark.timeout(60)
def test_groups_are_separate_and_sorted_by_name():
    other = [make(5e-3, seed, 0.5, scores(0.2, 0.2, 0.2), group="g2", name="massive-vanilla/apt/layer16")
             for seed in (0, 1, 2)]
    summaries = summarise(tie_sweep() + other)
    assert [s.group_name for s in summaries] == ["massive-vanilla/apt/layer16", "massive-vanilla/pt/layer16"]
    assert summaries[0].chosen_lr == 5e-3
    assert summaries[0].avg == pytest.approx(0.2, abs=1e-15)
    assert summaries[0].std == pytest.approx(0.0, abs=1e-15)
    assert summaries[1].chosen_lr == 1e-3


@pytest.mark.timeout(60)
def test_two_records_for_one_grid_point_are_an_error():
    records = tie_sweep() + [make(1e-3, 0, 0.1, scores(0.1, 0.1, 0.1))]
    records[-1].trial_id = "stale"
    with pytest.raises(XsweepError, match="stale"):
        summarise(records)


@pytest.mark.timeout(60)
def test_seeds_declared_in_the_config_are_expected():
    records = tie_sweep()
    for record in records:
        record.config["sweep"] = {"seeds": [0, 1, 2, 3]}  # seed 3 never started anywhere
    [s] = summarise(records)
    assert s.expected_seeds == [0, 1, 2, 3]
    assert s.missing_seeds == [(1e-3, 3), (0.01, 3), (0.1, 3)]
    assert s.partial and s.provisional
    assert s.chosen_lr == 1e-3  # tie with 0.01 still goes to the smaller rate
    assert s.per_language["en-US"].std == pytest.approx(0.05, abs=1e-15)  # 0.80, 0.90, 0.85
