"""A backbone, an optional prompt and a head, composed for FT, PT and APT.

- ft:  everything trains (the encoder, the head, and a prompt if one is given).
- pt:  the encoder is frozen; a fresh prompt and the head train. With prompt kind "none" this is a
       linear probe (the head alone on the frozen encoder), the baseline prompts must beat.
- apt: as pt, but the prompt starts from an alignment run's saved prompt (`load_prompt_for_apt`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from xsweep.errors import XsweepError
from xsweep.models.backbone import backbone_info
from xsweep.models.checkpoint import load_prompt_for_apt, load_trainable, save_prompt, save_trainable
from xsweep.models.heads import ClassificationHead, TokenTagger
from xsweep.models.prompts import PROMPT_KINDS, build_prompt, encode, fused_features

METHODS = ("ft", "pt", "apt")


class PromptedModel(nn.Module):
    """An encoder with an optional prompt and one head; the base of every task model.

    `backbone_dropout` False keeps the encoder in eval mode (no dropout in it) even in training;
    True (the authors' code) lets its own dropout act while the prompt trains.
    """

    def __init__(self, encoder: PreTrainedModel, prompt: nn.Module | None, head: nn.Module, *,
                 method: str, backbone_dropout: bool = True):
        super().__init__()
        if method not in METHODS:
            raise XsweepError(f"unknown method {method!r}", where="method", fix=f"use one of: {', '.join(METHODS)}")
        self.encoder, self.prompt, self.head = encoder, prompt, head
        self.method, self.backbone_dropout = method, backbone_dropout
        self.info = backbone_info(encoder)
        # Frozen means no gradient at all: the backbone's weights stay bit-identical under PT/APT.
        encoder.requires_grad_(method == "ft")

    def train(self, mode: bool = True) -> "PromptedModel":
        super().train(mode)
        if mode and not self.backbone_dropout:
            self.encoder.eval()
        return self

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, T). Returns hidden states (B, T, H) of the input tokens."""
        return encode(self.encoder, self.prompt, input_ids, attention_mask)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, T). Returns the head's logits (see each subclass)."""
        return self.head(self.features(input_ids, attention_mask), attention_mask)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors this method trains, under their `state_dict` names: the prompt and the head
        for pt/apt (never the frozen backbone), everything for ft."""
        state = self.state_dict()
        if self.method == "ft":
            return state
        return {k: v for k, v in state.items() if k.startswith(("prompt.", "head."))}

    def describe(self) -> dict:
        return {"method": self.method, "backbone_dropout": self.backbone_dropout,
                "prompt": self.prompt.describe() if self.prompt is not None else {"kind": "none"},
                "head": type(self.head).__name__, "pooling": getattr(self.head, "pooling", None),
                "task": type(self).__name__}


def shared_features(models: Sequence[PromptedModel], input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    rows: Sequence[int]) -> list[torch.Tensor]:
    """Each model's `features` of its own rows, in ONE forward of the frozen encoder they share
    (fused trials of one group): the first rows[0] rows of input_ids through models[0]'s prompt,
    the next rows[1] through models[1]'s, and so on (`prompts.fused_features`).

    input_ids, attention_mask: (N, T) with N = sum(rows). Returns K tensors (rows[k], T, H).
    """
    encoder = models[0].encoder
    if any(m.encoder is not encoder or m.method == "ft" for m in models):
        raise XsweepError("only models on one shared frozen encoder (pt, apt) can share a forward",
                          where="method", fix="fuse pt or apt trials of one group only")
    member_of_row = torch.repeat_interleave(torch.arange(len(models)), torch.tensor(list(rows)))
    hidden = fused_features(encoder, [m.prompt for m in models], member_of_row.to(input_ids.device), input_ids,
                            attention_mask)
    return list(hidden.split(list(rows)))


class IntentModel(PromptedModel):
    """Vanilla intent classifier: a ClassificationHead on the pooled sentence over all intents.
    forward(input_ids (B, T), attention_mask (B, T)) -> logits (B, num_labels)."""


class NliModel(PromptedModel):
    """NLI scorer: a two-way (not / entails) ClassificationHead on the pooled (premise, hypothesis)
    pair encoded as one sequence. Token type ids are not passed, as XLM-R has none.
    forward(input_ids (N, T), attention_mask (N, T)) -> logits (N, 2)."""


class SlotModel(PromptedModel):
    """Slot tagger: per-token logits over the input tokens only (prompt positions never reach it).
    forward(input_ids (B, T), attention_mask (B, T)) -> logits (B, T, num_slot_labels)."""


def check_method_prompt(method: str, prompt_kind: str) -> None:
    if method not in METHODS:
        raise XsweepError(f"unknown method {method!r}", where="method", fix=f"use one of: {', '.join(METHODS)}")
    if prompt_kind not in PROMPT_KINDS:
        raise XsweepError(f"unknown prompt kind {prompt_kind!r}", where="prompt.kind",
                          fix=f"use one of: {', '.join(PROMPT_KINDS)}")
    if method == "apt" and prompt_kind == "none":
        raise XsweepError("method apt needs a prompt to initialise from an alignment run", where="prompt.kind",
                          fix="use prompt.kind layer or input with method apt")


def _build(model_cls, make_head: Callable[[int], nn.Module], encoder: PreTrainedModel, method: str,
           prompt_kind: str, prompt_length: int, prompt_dropout: float, backbone_dropout: bool,
           shift_positions: bool, reparam_hidden: int | None):
    """The prompt first, then the head (`make_head(hidden)`): both draw their initial values from
    torch's generator, so this order is part of what a seed means."""
    check_method_prompt(method, prompt_kind)
    info = backbone_info(encoder)
    prompt = build_prompt(prompt_kind, info, prompt_length, encoder, dropout=prompt_dropout,
                          reparam_hidden=reparam_hidden, shift_positions=shift_positions)
    return model_cls(encoder, prompt, make_head(info.hidden), method=method, backbone_dropout=backbone_dropout)


def build_intent_model(encoder: PreTrainedModel, *, method: str, prompt_kind: str, prompt_length: int,
                       num_labels: int, prompt_dropout: float = 0.1, head_dropout: float = 0.1,
                       backbone_dropout: bool = True, shift_positions: bool = True,
                       reparam_hidden: int | None = None, pooling: str = "cls") -> IntentModel:
    """Compose `encoder` (frozen for pt/apt) with a fresh prompt and a fresh vanilla head."""
    head = lambda hidden: ClassificationHead(hidden, num_labels, head_dropout, pooling)  # noqa: E731
    return _build(IntentModel, head, encoder, method, prompt_kind, prompt_length, prompt_dropout, backbone_dropout,
                  shift_positions, reparam_hidden)


def build_nli_model(encoder: PreTrainedModel, *, method: str, prompt_kind: str, prompt_length: int,
                    prompt_dropout: float = 0.1, head_dropout: float = 0.1, backbone_dropout: bool = True,
                    shift_positions: bool = True, reparam_hidden: int | None = None,
                    pooling: str = "cls") -> NliModel:
    """Compose `encoder` with a fresh prompt and a fresh two-way entailment head."""
    head = lambda hidden: ClassificationHead(hidden, 2, head_dropout, pooling)  # noqa: E731
    return _build(NliModel, head, encoder, method, prompt_kind, prompt_length, prompt_dropout, backbone_dropout,
                  shift_positions, reparam_hidden)


def build_slot_model(encoder: PreTrainedModel, *, method: str, prompt_kind: str, prompt_length: int,
                     num_labels: int, prompt_dropout: float = 0.1, head_dropout: float = 0.1,
                     backbone_dropout: bool = True, shift_positions: bool = True,
                     reparam_hidden: int | None = None, pooling: str = "cls") -> SlotModel:
    """Compose `encoder` with a fresh prompt and a fresh token tagger over `num_labels` word labels
    (`pooling` is accepted with every builder's options and unused: a tagger reads every token)."""
    head = lambda hidden: TokenTagger(hidden, num_labels, head_dropout)  # noqa: E731
    return _build(SlotModel, head, encoder, method, prompt_kind, prompt_length, prompt_dropout, backbone_dropout,
                  shift_positions, reparam_hidden)


__all__ = ["IntentModel", "NliModel", "PromptedModel", "SlotModel", "build_intent_model", "build_nli_model",
           "build_slot_model", "check_method_prompt", "load_prompt_for_apt", "load_trainable", "save_prompt",
           "save_trainable", "shared_features", "METHODS"]
