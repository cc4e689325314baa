"""The alignment objective of APT: MLM on masked x and masked y, plus InfoNCE between their sentence vectors.

x is the English sequence and y the same turns in the target language. Each is masked by its own
call to `mask_tokens`, so their masks are independent. The MLM loss is the mean over all masked
tokens of x and y together; the contrastive loss asks masked x's sentence vector (`<s>`, or the
mean of its tokens: `backbone.pooling`, models/pooling.py) to be closest (cosine, temperature 0.05)
to its own masked y's among the batch's y. The total is their sum.

A backbone whose checkpoint has no MLM head (all-MiniLM, multilingual-e5) gets a fresh one tied to
its input embeddings, trained with the prompt (models/mlm_head.py): the objective stays the paper's
sum, not its contrastive-only ablation (Appendix D), so that APT means the same thing on every
backbone and the head's cost is one dense layer and a bias.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

from xsweep.models.pooling import pool
from xsweep.models.prompts import encode
from xsweep.objectives.contrastive import TEMPERATURE, info_nce
from xsweep.objectives.mlm import IGNORE, mask_tokens, mlm_loss


@dataclass
class AlignmentLoss:
    total: torch.Tensor
    """mlm + contrastive: the tensor to differentiate."""
    mlm: torch.Tensor
    contrastive: torch.Tensor


@dataclass
class MaskingSpec:
    """What `mask_tokens` needs from the tokenizer."""

    special_ids: list[int]
    mask_id: int
    vocab_size: int
    probability: float = 0.15

    @classmethod
    def from_tokenizer(cls, tokenizer, probability: float = 0.15) -> "MaskingSpec":
        return cls(sorted(tokenizer.all_special_ids), tokenizer.mask_token_id, len(tokenizer), probability)


def alignment_loss(encoder: PreTrainedModel, prompt: nn.Module | None, mlm_head: nn.Module,
                   x_ids: torch.Tensor, x_mask: torch.Tensor, y_ids: torch.Tensor, y_mask: torch.Tensor,
                   masking: MaskingSpec, *, temperature: float = TEMPERATURE, pooling: str = "cls",
                   generator: torch.Generator | None = None) -> AlignmentLoss:
    """x_ids, x_mask: (B, Tx) English; y_ids, y_mask: (B, Ty) target language, row i parallel to x row i."""
    hidden, labels = [], []
    for ids, mask in ((x_ids, x_mask), (y_ids, y_mask)):
        masked, target = mask_tokens(ids, mask, special_ids=masking.special_ids, mask_id=masking.mask_id,
                                     vocab_size=masking.vocab_size, probability=masking.probability,
                                     generator=generator)
        hidden.append(encode(encoder, prompt, masked, mask))
        labels.append(target)
    chosen = [lab != IGNORE for lab in labels]
    states = torch.cat([h[c] for h, c in zip(hidden, chosen)])  # (N masked tokens of x and y, H)
    mlm = mlm_loss(mlm_head(states), torch.cat([lab[c] for lab, c in zip(labels, chosen)]))
    contrastive = info_nce(pool(hidden[0], x_mask, pooling), pool(hidden[1], y_mask, pooling), temperature)
    return AlignmentLoss(total=mlm + contrastive, mlm=mlm, contrastive=contrastive)
