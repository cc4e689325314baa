"""Alignment pretraining with 2 Ray Train workers (DDP over gloo on CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from test_align import xsgd_spec
from xsweep.sweep import align_ray
from xsweep.sweep.align_ray import align_on_ray, ray_run_name
from xsweep.train.align import tensor_digest


@pytest.mark.timeout(240)
def test_two_ddp_workers_train_different_shards_recover_and_hold_the_saved_prompt(tmp_path, ray_session, demo,
                                                                                 bare_backbone):
    """Rank 0 fails once after epoch 1; Ray restarts both workers, which resume from that checkpoint."""
    spec = xsgd_spec(bare_backbone, tmp_path / "aligned", demo, epochs=2, batch_size=16)
    storage = tmp_path / "ray"
    result = align_ray._fit_on_ray(spec, num_workers=2, cpus_per_worker=0.5, storage_path=storage, max_failures=1,
                                   fail_once_after_epoch=1)

    assert result.world_size == 2 and result.resumed_from_epoch == 1 and len(result.epochs) == 2
    for epoch in result.epochs:
        assert epoch["pairs_per_worker"] == [epoch["steps"] * 8] * 2  # each worker half of every batch of 16
        assert epoch["shard_digests"][0] != epoch["shard_digests"][1]
    # The prompt (and fresh MLM head) both workers ended with is the one rank 0 saved.
    saved = load_file(str(Path(result.output_dir) / "prompt.safetensors"))
    assert any(k.startswith("mlm_head.") for k in saved)
    assert result.summary["prompt_digests_per_worker"] == [tensor_digest(saved)] * 2
    assert json.loads((Path(result.output_dir) / "prompt.json").read_text())["prompt"]["length"] == 4
    # Each epoch's checkpoint went to Ray's storage under the run's stable name.
    assert sorted(p.name for p in (storage / ray_run_name(spec)).glob("epoch_*")) == ["epoch_001", "epoch_002"]

    # A finished stage is found again by its spec: nothing is trained the second time.
    again = align_on_ray(spec, num_workers=2, cpus_per_worker=0.5, storage_path=storage)
    assert again.reused and again.prompt_digest == result.prompt_digest
