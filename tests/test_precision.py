"""Mixed precision (`optim.precision`, models/precision.py): a bf16 trial selects within a stated
tolerance of the same trial in fp32, and the frozen backbone's dtype is part of what a process
caches (checked on the real multilingual-e5-small).

Tolerance: the selected English dev accuracy (and the test accuracy of the kept best) of bf16 is
within 0.05 of fp32's on this CI-sized run (all-MiniLM-L6-v2, a real encoder, 8 shots of the demo
data, 3 epochs): bf16 keeps 8 bits of mantissa, so the two trials' paths part after the first
steps, and a prompt's score moves by that much between seeds already. (On this machine's CPU,
which torch drives with AVX2 kernels, bf16 matmuls are about 8x slower than fp32 ones: `auto`
stays fp32 on CPU.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xsweep.config import load_config
from xsweep.models.precision import backbone_dtype, resolve_precision
from xsweep.sweep import hosting
from xsweep.sweep.prepare import prepare_inputs
from xsweep.sweep.runner import plan_trials
from xsweep.train.downstream import run_downstream

TOLERANCE = 0.05


def test_auto_is_fp32_on_cpu_and_ft_keeps_fp32_weights():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    assert backbone_dtype("bf16", "pt") is torch.bfloat16 and backbone_dtype("bf16", "apt") is torch.bfloat16
    assert backbone_dtype("bf16", "ft") is None and backbone_dtype("fp32", "pt") is None


@pytest.mark.timeout(120)
def test_a_process_never_hands_a_bf16_backbone_to_an_fp32_trial(e5_small):
    hosting.forget_backbones()
    try:
        half, _ = hosting.cached_backbone(e5_small, dtype=torch.bfloat16)
        full, _ = hosting.cached_backbone(e5_small)
        assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
        assert {p.dtype for p in full.parameters()} == {torch.float32}
    finally:
        hosting.forget_backbones()


EXPERIMENT = """\
name: precision
method: pt
backbone: {{name: {backbone}}}
data: {{path: demo, shots: 8, max_seq_len: 24, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 16}}
optim: {{epochs: 3, batch_size: 16, precision: {precision}}}
sweep: {{evaluate: all, grid: {{optim.lr: [5.0e-2]}}}}
seed: 0
storage: {{root: {root}}}
"""


@pytest.mark.timeout(300)
def test_bf16_and_fp32_trials_select_within_the_tolerance(tmp_path, minilm_path):
    records = {}
    for precision in ("fp32", "bf16"):
        path = tmp_path / f"{precision}.yaml"
        path.write_text(EXPERIMENT.format(root=tmp_path / "runs", precision=precision, backbone=minilm_path))
        cfg = load_config(path)
        [spec] = plan_trials(cfg, tmp_path / precision, prepare_inputs(cfg, log=lambda _: None))
        records[precision] = record = run_downstream(spec)
        assert record.status == "completed" and record.precision == precision
        # Prompts and heads train and are saved in fp32 whatever the compute dtype.
        saved = load_file(str(Path(spec.trial_dir) / "best" / "trainable.safetensors"))
        assert {t.dtype for t in saved.values()} == {torch.float32}
    fp32, bf16 = records["fp32"], records["bf16"]
    assert fp32.best_dev > 0.2  # far above chance: the comparison is between trials that learned
    assert abs(bf16.best_dev - fp32.best_dev) <= TOLERANCE
    assert abs(bf16.test_scores["en-US"] - fp32.test_scores["en-US"]) <= TOLERANCE
