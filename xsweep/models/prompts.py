"""Our own prompts: layer prompts (per-layer key/value prefixes) and input prompts (soft tokens).

Both expose `encode(encoder, input_ids, attention_mask) -> (B, T, H)`: hidden states aligned with the
*input* tokens, so no prompt position ever reaches a head. `encode_plain` is the same contract with
no prompt. There is one prompted forward, `fused_features`: N rows in one encoder forward, row r
through prompt `member_of_row[r]` of K prompts. A trial's own forward is K = 1; fused trials of one
group (train/downstream.py) are K > 1, sharing the frozen encoder. PEFT is not used: its prefix tuning fails on XLM-R heads with transformers 5.x and its
input prompt tuning reads a virtual token instead of `<s>`.

Layer prompts follow the authors' code (P-tuning v2): one embedding table of P x (2 x layers x
hidden), reshaped into a key and a value prefix per layer, dropout on the prefix, the attention mask
extended by P. They enter through transformers 5.x's `cache=`: a fresh DynamicCache pre-filled with
the prefixes, so each layer's attention concatenates [prefix; keys] and [prefix; values] itself.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from xsweep.errors import XsweepError
from xsweep.models.backbone import SUPPORTED_ATTENTION, BackboneInfo

PROMPT_KINDS = ("layer", "input", "none")


def position_ids(info: BackboneInfo, attention_mask: torch.Tensor, shift: int) -> torch.Tensor:
    """Position ids of the real tokens, the same the model makes itself, moved on by `shift`.

    attention_mask: (B, T) 1 for tokens, 0 for padding. Returns (B, T) long. RoBERTa-style models
    number tokens from pad_id + 1 and give padding the pad id; BERT-style number 0..T-1.
    """
    batch, length = attention_mask.shape
    # The largest id any row can get, known from the shape alone (no device sync per forward).
    largest = length + shift + (info.pad_id if info.position_style == "roberta" else -1)
    if largest >= info.max_positions:
        raise XsweepError(
            f"a sequence of {length} tokens with {shift} prompt positions needs position id {largest}, "
            f"but the backbone has {info.max_positions} position embeddings",
            where="prompt", fix="lower data.max_seq_len or the prompt length, or use prompt positions that do not shift")
    if info.position_style == "roberta":
        mask = attention_mask.long()
        positions = (torch.cumsum(mask, dim=1) + shift) * mask + info.pad_id
    else:
        positions = torch.arange(length, device=attention_mask.device) + shift
        positions = positions.unsqueeze(0).expand(batch, -1)
    return positions


def prefix_attention_mask(attention_mask: torch.Tensor, prefix_len: int, dtype: torch.dtype,
                          attn_implementation: str) -> torch.Tensor:
    """The 4D mask for queries over [prefix; tokens]: every query sees all P prefix slots.

    attention_mask: (B, T). Returns (B, 1, T, P + T): boolean (True = attend) for sdpa, additive
    (0 or the dtype's minimum) for eager, which is what transformers itself hands each backend.
    Built here because transformers sizes its own mask from the input length, not input + prefix.
    """
    if attn_implementation not in SUPPORTED_ATTENTION:
        raise XsweepError(f"layer prompts do not support attention implementation {attn_implementation!r}",
                          where="backbone.attn_implementation", fix=f"use one of: {', '.join(SUPPORTED_ATTENTION)}")
    batch, length = attention_mask.shape
    keep = torch.cat([attention_mask.new_ones(batch, prefix_len), attention_mask], dim=1).bool()
    keep = keep[:, None, None, :].expand(batch, 1, length, prefix_len + length)
    if attn_implementation == "sdpa":
        return keep
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)


class LayerPrompt(nn.Module):
    """Per-layer key/value prefixes of length P (prefix-tuning / P-tuning v2, as in the authors' code).

    shift_positions: True shifts the real tokens' position ids by P, as the authors' code did (there
    the model counted the prefix as past tokens); False keeps the positions the model would give
    without a prompt. Recorded in `describe()` and so in every saved prompt.
    reparam_hidden: None trains the P x (2 x layers x hidden) table directly; an int trains a
    P x hidden table mapped through Linear-tanh-Linear of that width (P-tuning v2's projection).
    """

    kind = "layer"

    def __init__(self, info: BackboneInfo, length: int, *, dropout: float = 0.1,
                 reparam_hidden: int | None = None, shift_positions: bool = True):
        super().__init__()
        if length < 1:
            raise XsweepError(f"prompt length must be at least 1, got {length}", where="prompt.length")
        self.info, self.length = info, length
        self.shift_positions, self.reparam_hidden = shift_positions, reparam_hidden
        width = 2 * info.num_layers * info.hidden
        if reparam_hidden is None:
            self.embedding = nn.Embedding(length, width)
            self.reparam = None
        else:
            self.embedding = nn.Embedding(length, info.hidden)
            self.reparam = nn.Sequential(nn.Linear(info.hidden, reparam_hidden), nn.Tanh(),
                                         nn.Linear(reparam_hidden, width))
        self.dropout = nn.Dropout(dropout)

    def table(self) -> torch.Tensor:
        """The trained (P, 2 x layers x hidden) table, through the reparametrisation if there is one."""
        return self.embedding.weight if self.reparam is None else self.reparam(self.embedding.weight)

    def key_values(self, batch_size: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each (B, heads, P, head_dim), laid out as the authors' code:
        the 2 x layers axis holds layer l's keys at 2l and values at 2l + 1."""
        prefix = _layer_prefixes([self], None, batch_size, dtype)
        return [(prefix[2 * layer], prefix[2 * layer + 1]) for layer in range(self.info.num_layers)]

    def encode(self, encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, T). Returns the last hidden states (B, T, H)."""
        return fused_features(encoder, [self], None, input_ids, attention_mask)

    def describe(self) -> dict:
        return {"kind": self.kind, "length": self.length, "shift_positions": self.shift_positions,
                "reparam_hidden": self.reparam_hidden, "dropout": self.dropout.p,
                "layout": "embedding (P, 2*layers*hidden) viewed (P, 2*layers, heads, head_dim); "
                          "row 2l = keys of layer l, 2l+1 = values"}


class InputPrompt(nn.Module):
    """P soft tokens spliced into the input embeddings right after `<s>`: `<s> p1..pP w1..wT </s>`.

    After `<s>`, not before, so that position 0 stays the real `<s>` every head reads (PEFT's input
    prompts put virtual tokens first and its heads then read a virtual token). The soft tokens take
    positions 1..P and the real tokens follow them. They start as copies of the embeddings of P
    vocabulary tokens drawn at random (Lester et al., 2021), so they begin on the embedding scale.
    """

    kind = "input"

    def __init__(self, info: BackboneInfo, length: int, word_embeddings: torch.Tensor, *, dropout: float = 0.1):
        super().__init__()
        if length < 1:
            raise XsweepError(f"prompt length must be at least 1, got {length}", where="prompt.length")
        self.info, self.length = info, length
        rows = torch.randint(0, word_embeddings.shape[0], (length,))
        self.embedding = nn.Embedding(length, info.hidden)
        with torch.no_grad():
            self.embedding.weight.copy_(word_embeddings[rows].detach().float())
        self.dropout = nn.Dropout(dropout)

    def encode(self, encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask: (B, T). Returns the last hidden states (B, T, H) of the real
        tokens only: the P prompt positions are cut out before anything reads them."""
        return fused_features(encoder, [self], None, input_ids, attention_mask)

    def describe(self) -> dict:
        return {"kind": self.kind, "length": self.length, "dropout": self.dropout.p,
                "placement": "after <s>; prompt tokens take positions 1..P, real tokens shift by P"}


def encode_plain(encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """No prompt. input_ids, attention_mask: (B, T). Returns (B, T, H)."""
    return encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def build_prompt(kind: str, info: BackboneInfo, length: int, encoder: PreTrainedModel, *, dropout: float = 0.1,
                 reparam_hidden: int | None = None, shift_positions: bool = True) -> nn.Module | None:
    """A fresh prompt of `kind` ("layer", "input" or "none" -> None)."""
    if kind == "layer":
        return LayerPrompt(info, length, dropout=dropout, reparam_hidden=reparam_hidden,
                           shift_positions=shift_positions)
    if kind == "input":
        return InputPrompt(info, length, encoder.get_input_embeddings().weight, dropout=dropout)
    if kind == "none":
        return None
    raise XsweepError(f"unknown prompt kind {kind!r}", where="prompt.kind", fix=f"use one of: {', '.join(PROMPT_KINDS)}")


def encode(encoder: PreTrainedModel, prompt: nn.Module | None, input_ids: torch.Tensor,
           attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) of the input tokens, through `prompt` if there is one."""
    return fused_features(encoder, [prompt], None, input_ids, attention_mask)


def fused_features(encoder: PreTrainedModel, prompts: Sequence[nn.Module | None], member_of_row: torch.Tensor | None,
                input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden states (N, T, H) of the input tokens, row r through `prompts[member_of_row[r]]`: the one
    prompted forward (every prompt's `encode` and `encode` above are this with K = 1).

    prompts: K prompts of one kind and shape (all LayerPrompt, all InputPrompt, or all None).
    member_of_row: (N,) long in [0, K); None when K = 1 (every row through the one prompt).
    input_ids, attention_mask: (N, T).
    Dropout: layer prompts draw a mask per row (each row's own copy of its prefix); input prompts
    one mask per prompt, shared by its rows. With K = 1 the rows are views of one table, as before.
    """
    first = prompts[0]
    if any(type(p) is not type(first) for p in prompts):
        raise XsweepError(f"one forward needs prompts of one kind, got {sorted({type(p).__name__ for p in prompts})}",
                          where="prompt.kind", fix="fuse only trials of one group")
    if len(prompts) > 1 and member_of_row is None:
        raise XsweepError(f"{len(prompts)} prompts need the prompt of each row", where="fused_features")
    if first is None:
        return encode_plain(encoder, input_ids, attention_mask)
    dtype = encoder.get_input_embeddings().weight.dtype
    if isinstance(first, LayerPrompt):
        prefix = _layer_prefixes(prompts, member_of_row, input_ids.shape[0], dtype)
        cache = DynamicCache()  # fresh per call: the encoder appends this call's keys to it
        for layer in range(first.info.num_layers):
            cache.update(prefix[2 * layer], prefix[2 * layer + 1], layer)
        positions = position_ids(first.info, attention_mask, first.length if first.shift_positions else 0)
        mask = prefix_attention_mask(attention_mask, first.length, dtype, encoder.config._attn_implementation)
        return encoder(input_ids=input_ids, attention_mask=mask, position_ids=positions, cache=cache).last_hidden_state
    if isinstance(first, InputPrompt):
        batch, p = input_ids.shape[0], first.length
        words = encoder.get_input_embeddings()(input_ids)
        tables = [q.dropout(q.embedding.weight.to(words.dtype)) for q in prompts]  # (P, H) each
        soft = tables[0].unsqueeze(0).expand(batch, -1, -1) if len(prompts) == 1 else torch.stack(tables)[member_of_row]
        embeds = torch.cat([words[:, :1], soft, words[:, 1:]], dim=1)
        mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(batch, p), attention_mask[:, 1:]], dim=1)
        hidden = encoder(inputs_embeds=embeds, attention_mask=mask,
                         position_ids=position_ids(first.info, mask, 0)).last_hidden_state
        return torch.cat([hidden[:, :1], hidden[:, 1 + p:]], dim=1)
    raise XsweepError(f"no forward for prompts of type {type(first).__name__}", where="prompt.kind")


def _layer_prefixes(prompts: Sequence[LayerPrompt], member_of_row: torch.Tensor | None, rows: int,
                    dtype: torch.dtype) -> torch.Tensor:
    """Every row's key/value prefixes, (2 x layers, N, heads, P, head_dim), after dropout."""
    first = prompts[0]
    info, length = first.info, first.length
    tables = torch.stack([p.table() for p in prompts]).to(dtype)  # (K, P, 2 x layers x hidden)
    tables = tables.view(len(prompts), length, 2 * info.num_layers, info.num_heads, info.head_dim)
    # One prompt: a view of its table per row (no copy); several: each row's copy of its own.
    per_row = tables.expand(rows, -1, -1, -1, -1) if len(prompts) == 1 else tables[member_of_row]
    return first.dropout(per_row).permute(2, 0, 3, 1, 4)  # one group, one prompt.dropout
