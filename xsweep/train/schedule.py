"""The learning-rate schedule of alignment and downstream training: linear warm-up, then linear decay.

(The built-in model's MLM pretraining uses a cosine schedule of its own, models/builtin.py.)
"""

from __future__ import annotations

from typing import Callable


def linear_warmup_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor for `torch.optim.lr_scheduler.LambdaLR`: rises linearly to 1 over the first
    `warmup_steps` steps (none when 0), then falls linearly to 0 at `total_steps`.

    Callers round their warm-up fraction to steps themselves: alignment rounds to nearest
    (`round`), downstream training down (`int`), as each has from the start.
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
