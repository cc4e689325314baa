"""Numeric precision of a trial: the dtype its frozen backbone is kept in and computes under.

`optim.precision`:
- `fp32`: everything in float32 (on CUDA, matmuls may use TF32; the record says so).
- `bf16` / `fp16`: the forward and backward run under `torch.autocast` in that dtype. PT and APT
  keep the frozen backbone's weights in that dtype too (half the memory: XLM-R large ~1.1 GB
  instead of ~2.2 GB per actor); FT keeps float32 master weights and autocasts. Prompts, heads and
  optimiser state stay float32, and so does everything saved. fp16 trains with a gradient scaler.
- `auto`: bf16 on a CUDA GPU that supports it, fp32 everywhere else (CPU included).
Dev and test evaluation, NLI scoring included, run in the trial's precision.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device) -> str:
    """`fp32`, `bf16` or `fp16` for the configured name on `device` (`auto` decided here)."""
    if name != "auto":
        return name
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def backbone_dtype(precision: str, method: str) -> torch.dtype | None:
    """The dtype the backbone's weights are loaded in: the compute dtype for a frozen backbone
    (PT, APT); None (as stored, float32) for FT, whose weights train in float32 under autocast."""
    return None if precision == "fp32" or method == "ft" else DTYPES[precision]


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Where the model's forward runs: autocast to the trial's dtype, or nothing for fp32."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def allow_tf32(precision: str, device: torch.device) -> bool:
    """On CUDA at fp32, let matmuls use TF32 tensor cores (10-bit mantissa inputs, fp32 sums);
    returns whether they may, for the record."""
    if precision != "fp32" or device.type != "cuda":
        return False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True
