"""The alignment objective of APT: MLM on masked x and masked y, plus InfoNCE between their `<s>`.

x is the English sequence and y the same turns in the target language. Each is masked by its own
call to `mask_tokens`, so their masks are independent. The MLM loss is the mean over all masked
tokens of x and y together; the contrastive loss asks masked x's `<s>` to be closest (cosine,
temperature 0.05) to its own masked y's `<s>` among the batch's y. The total is their sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel

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
                   masking: MaskingSpec, *, temperature: float = TEMPERATURE,
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
    contrastive = info_nce(hidden[0][:, 0], hidden[1][:, 0], temperature)
    return AlignmentLoss(total=mlm + contrastive, mlm=mlm, contrastive=contrastive)
