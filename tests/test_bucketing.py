"""Length-bucketed training batches (`optim.bucket_by_length`): every example once per epoch,
reproducible from the trial's seed, and far less padding than random batches on real MASSIVE."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.models.builtin import train_tokenizer
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.batches import POOL_BATCHES, training_batches
from xsweep.train.downstream import run_downstream

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def massive_lengths(shared_data) -> list[int]:
    """Token counts of the real MASSIVE en-US training utterances, as a trained tokenizer cuts them."""
    lines = (shared_data / "massive" / "1.1" / "data" / "en-US.jsonl").read_text(encoding="utf-8").splitlines()
    utterances = [row["utt"] for row in map(json.loads, lines) if row["partition"] == "train"]
    tokenizer = train_tokenizer(utterances[:3000], 2000)
    return [len(ids) for ids in tokenizer(utterances)["input_ids"]]


def padded_positions(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches)


def test_an_epoch_holds_every_example_once_and_replays_from_its_seed(massive_lengths):
    n = len(massive_lengths)
    first = training_batches(massive_lengths, 32, torch.Generator().manual_seed(7), by_length=True)
    assert Counter(i for batch in first for i in batch) == Counter(range(n))
    assert all(len(batch) <= 32 for batch in first) and len(first) >= n // 32
    again = training_batches(massive_lengths, 32, torch.Generator().manual_seed(7), by_length=True)
    other = training_batches(massive_lengths, 32, torch.Generator().manual_seed(8), by_length=True)
    assert again == first and other != first
    # Batches are shuffled, not served shortest first, and each pool is a random sample of the data.
    maxima = [max(massive_lengths[i] for i in batch) for batch in first]
    assert maxima != sorted(maxima)
    # Each pool of POOL_BATCHES batches is sorted by length: its batches barely overlap in length.
    assert 32 * POOL_BATCHES < n


def test_bucketed_batches_pad_far_less_than_random_ones(massive_lengths):
    order = torch.Generator().manual_seed(0)
    random_batches = training_batches(massive_lengths, 32, order, by_length=False)
    bucketed = training_batches(massive_lengths, 32, torch.Generator().manual_seed(0), by_length=True)
    real = sum(massive_lengths)
    assert padded_positions(random_batches, massive_lengths) / real > 1.3
    assert padded_positions(bucketed, massive_lengths) / real < 1.1


def test_random_batches_are_todays_draw(massive_lengths):
    """`bucket_by_length: false` keeps the batches xsweep drew before bucketing existed."""
    drawn = training_batches(massive_lengths, 16, torch.Generator().manual_seed(3), by_length=False)
    permutation = torch.randperm(len(massive_lengths), generator=torch.Generator().manual_seed(3)).tolist()
    assert drawn == [permutation[i : i + 16] for i in range(0, len(permutation), 16)]


EXPERIMENT = """\
name: buckets
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 48, shots: 5, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 2, batch_size: 16, lr: 0.03, bucket_by_length: {bucketed}}}
storage: {{root: {root}}}
"""


def test_the_trial_records_its_padding_ratio_and_bucketing_lowers_it(tmp_path):
    ratios = {}
    for bucketed in ("true", "false"):
        path = tmp_path / f"{bucketed}.yaml"
        path.write_text(EXPERIMENT.format(root=tmp_path / "runs", bucketed=bucketed))
        cfg = load_config(path)
        [spec] = plan_trials(cfg, tmp_path / bucketed, prepare_inputs(cfg, log=lambda _: None))
        record = run_downstream(spec)
        assert record.status == "completed"
        ratios[bucketed] = record.padding_ratio
        saved = json.loads((Path(spec.trial_dir) / "record.json").read_text())
        assert saved["padding_ratio"] == record.padding_ratio
    assert 1.0 <= ratios["true"] < ratios["false"]
