"""How a sentence is read off an encoder: which vector stands for it, and what text it is given.

Two conventions, both set under `backbone:` because each is a property of how the backbone was
trained, and every reader of a sentence uses the same one (the classification heads, the
alignment objective's contrastive loss, Tatoeba retrieval):

- `pooling`: `cls` reads the first token's state (`<s>` / `[CLS]`), as XLM-R's and the paper's
  heads do; `mean` averages the states of the real tokens (padding and the prompt's positions
  left out), as multilingual-e5 was trained to be read.
- `text_prefix`: a string put before every input text (e5 was trained on `"query: "` + text).
"""

from __future__ import annotations

from typing import Sequence

import torch

POOLINGS = ("cls", "mean")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """hidden: (B, T, H) states of the input tokens; attention_mask: (B, T), 1 on real tokens.
    Returns (B, H): the first token's state (`cls`) or the mean over the real tokens (`mean`)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")


def with_prefix(texts: Sequence[str], text_prefix: str) -> list[str]:
    """`texts` as the backbone reads them: each after `text_prefix` (unchanged for "")."""
    return [text_prefix + text for text in texts] if text_prefix else list(texts)


@torch.no_grad()
def sentence_states(encoder, prompt, tokenizer, texts: Sequence[str], *, pooling: str = "cls",
                    text_prefix: str = "", max_seq_len: int = 128, batch_size: int = 64,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """One vector (N, H) per text through the encoder with `prompt` (None: no prompt), in eval
    mode, read by `pooling` from `text_prefix` + text: what retrieval compares."""
    from xsweep.models.prompts import encode

    modules = [m for m in (encoder, prompt) if m is not None]
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        out = []
        texts = with_prefix(texts, text_prefix)
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_seq_len,
                            padding=True, return_tensors="pt")
            ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
            out.append(pool(encode(encoder, prompt, ids, mask), mask, pooling).float().cpu())
        return torch.cat(out)
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
