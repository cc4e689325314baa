"""Masked-language-model objective with dynamic masking.

Masking is drawn fresh at every call (dynamic, as RoBERTa), so x and y of a parallel pair, masked
by two calls, are masked independently. Special tokens and padding are never masked.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of positions that carry no MLM loss (cross_entropy's ignore_index)


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, special_ids: list[int] | torch.Tensor,
                mask_id: int, vocab_size: int, probability: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: choose `probability` of the maskable tokens; of those 80% become `<mask>`,
    10% a random non-special token, 10% stay.

    input_ids, attention_mask: (B, T). Returns (masked input_ids (B, T), labels (B, T)) where labels
    hold the original id at chosen positions and IGNORE elsewhere. Every row with a maskable token
    gets at least one chosen position, so short utterances still carry loss.
    """
    device = input_ids.device
    special = torch.as_tensor(special_ids, device=device)
    maskable = attention_mask.bool() & ~torch.isin(input_ids, special)
    draw = lambda: torch.rand(input_ids.shape, generator=generator, device="cpu").to(device)  # noqa: E731
    scores = draw()
    chosen = maskable & (scores < probability)
    # Force one choice in rows that drew none: the maskable position with the smallest draw.
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    if empty.any():
        forced = scores.masked_fill(~maskable, 2.0).argmin(dim=1)
        chosen[empty, forced[empty]] = True
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    split = draw()
    to_mask = chosen & (split < 0.8)
    to_random = chosen & (split >= 0.8) & (split < 0.9)
    masked = input_ids.masked_fill(to_mask, mask_id)
    randoms = _random_regular_tokens(int(to_random.sum()), special, vocab_size, generator).to(device)
    masked[to_random] = randoms
    return masked, labels


def _random_regular_tokens(count: int, special: torch.Tensor, vocab_size: int,
                           generator: torch.Generator | None) -> torch.Tensor:
    """`count` ids drawn uniformly from the vocabulary without the special tokens."""
    regular = torch.ones(vocab_size, dtype=torch.bool)
    regular[special.cpu()[special.cpu() < vocab_size]] = False
    pool = regular.nonzero().squeeze(1)
    return pool[torch.randint(len(pool), (count,), generator=generator)]


def mlm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits: (B, T, V), labels: (B, T) with IGNORE at unmasked positions. Mean cross-entropy
    over the masked tokens."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1), ignore_index=IGNORE)
