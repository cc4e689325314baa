"""Snapshots of every random-number generator a worker loop draws from, for exact resumption.

A checkpoint stores `capture(...)`; a resumed run calls `restore(...)` last, after building its
model and optimiser (which draw numbers too), so it continues with the streams of the moment the
checkpoint was written. Only tensors and plain values go in: `torch.load(weights_only=True)` reads it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The state of torch's (CPU and every CUDA device), Python's and NumPy's global generators,
    and of the loop's own `generators` (e.g. data order, masking), stored under their names."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        **{name: generator.get_state() for name, generator in generators.items()},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": [version, list(internal), gauss],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
    }


def restore(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Set every generator `capture` saved. Alignment checkpoints written before the global
    Python and NumPy streams were saved (and with one device's CUDA state) still restore."""
    for name, generator in generators.items():
        generator.set_state(state[name])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if torch.cuda.is_available() and cuda is not None and len(cuda):
        if isinstance(cuda, torch.Tensor):
            torch.cuda.set_rng_state(cuda)
        else:
            torch.cuda.set_rng_state_all(cuda)
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
