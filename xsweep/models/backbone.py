"""Backbone loading: any Hugging Face encoder of the XLM-R / XLM-R XL / BERT family, by hub id or folder.

`load_backbone` returns the bare encoder (for a masked-LM checkpoint, its base model) and its
tokenizer. `backbone_info` reads the architecture facts the prompts need from the encoder's
config, and `backbone_fingerprint` identifies the backbone's weights so that a prompt aligned on
one backbone is never silently loaded onto another.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from xsweep.errors import XsweepError

# Families whose layers read `cache=` and whose embeddings take explicit `position_ids`;
# value: how position ids are made ("roberta": padding-aware, offset by pad id + 1; "absolute": 0..T-1).
SUPPORTED_FAMILIES = {"xlm-roberta": "roberta", "roberta": "roberta", "xlm-roberta-xl": "roberta",
                      "bert": "absolute"}
# Attention implementations our prompt masks are built for (a 4D mask passed as-is).
SUPPORTED_ATTENTION = ("eager", "sdpa")


@dataclass(frozen=True)
class BackboneInfo:
    """Architecture facts of an encoder, read from its config."""

    family: str
    """config.model_type: xlm-roberta, xlm-roberta-xl, roberta or bert."""
    num_layers: int
    num_heads: int
    hidden: int
    head_dim: int
    """hidden / num_heads: the width of one head's keys and values."""
    vocab_size: int
    max_positions: int
    """Size of the position-embedding table (XLM-R: 514, of which 2 are the padding offset)."""
    pad_id: int
    position_style: str
    """"roberta" (positions start after the pad id, padding keeps the pad id) or "absolute" (0..T-1)."""

    def to_dict(self) -> dict:
        return asdict(self)


def backbone_info(encoder: PreTrainedModel) -> BackboneInfo:
    """Read the architecture facts of `encoder`; an unsupported family is an XsweepError."""
    cfg = encoder.config
    family = cfg.model_type
    if family not in SUPPORTED_FAMILIES:
        raise XsweepError(f"backbone family {family!r} is not supported by xsweep's prompts",
                          where=getattr(cfg, "_name_or_path", None) or "backbone",
                          fix=f"use an encoder of one of: {', '.join(sorted(SUPPORTED_FAMILIES))}")
    return BackboneInfo(
        family=family, num_layers=cfg.num_hidden_layers, num_heads=cfg.num_attention_heads,
        hidden=cfg.hidden_size, head_dim=cfg.hidden_size // cfg.num_attention_heads,
        vocab_size=cfg.vocab_size, max_positions=cfg.max_position_embeddings,
        pad_id=cfg.pad_token_id if cfg.pad_token_id is not None else 0,
        position_style=SUPPORTED_FAMILIES[family],
    )


def backbone_fingerprint(encoder: PreTrainedModel) -> str:
    """A short hash of the backbone's shape and of a slice of its word embeddings.

    Hashing the whole model would take seconds for XLM-R large; the first rows of the embedding
    table already differ between any two pretrained (or differently seeded) models.
    """
    rows = encoder.get_input_embeddings().weight[:32].detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.sha256(repr(sorted(backbone_info(encoder).to_dict().items())).encode())
    digest.update(rows.numpy().tobytes())
    return digest.hexdigest()[:16]


def _looks_like_path(name: str) -> bool:
    # A hub id is "name" or "org/name"; anything rooted, relative-dotted or deeper is a folder.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).expanduser().exists()


def load_backbone(name_or_path: str, *, attn_implementation: str | None = None, dtype: torch.dtype | None = None
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder and its tokenizer from a local folder or a Hugging Face hub id; `dtype`
    casts its weights (a frozen backbone computing in bf16 or fp16, models/precision.py).

    A masked-LM checkpoint loads as its base encoder (the LM head is dropped); the pooler is never
    built, since every head of ours reads `<s>` itself. Hub ids go through the normal Hugging Face
    cache, so a model downloaded earlier (or under HF_HOME) loads offline.
    """
    if attn_implementation is not None and attn_implementation not in SUPPORTED_ATTENTION:
        raise XsweepError(f"attention implementation {attn_implementation!r} is not supported",
                          where="backbone.attn_implementation",
                          fix=f"use one of: {', '.join(SUPPORTED_ATTENTION)} (or leave it unset)")
    path = Path(name_or_path).expanduser()
    if _looks_like_path(name_or_path) and not path.is_dir():
        raise XsweepError(f"backbone folder {name_or_path!r} does not exist", where="backbone.name",
                          fix="pass a folder holding config.json and the weights, or a hub id")
    if path.is_dir():
        encoder, tokenizer = _load(str(path), attn_implementation, local_only=True, hub_id=None)
    else:
        try:  # the local Hugging Face cache first: no network wait when the model is already there
            encoder, tokenizer = _load(name_or_path, attn_implementation, local_only=True, hub_id=name_or_path)
        except XsweepError:
            if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or not _hub_reachable():
                raise
            encoder, tokenizer = _load(name_or_path, attn_implementation, local_only=False, hub_id=name_or_path)
    return (encoder if dtype is None else encoder.to(dtype)), tokenizer


def _hub_reachable(timeout_s: float = 5.0) -> bool:
    """Can the hub endpoint be reached? Asked once, so that an offline machine fails in seconds
    instead of after huggingface_hub's retry series (about 25 s per file)."""
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def _load(source: str, attn_implementation: str | None, *, local_only: bool, hub_id: str | None
          ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    try:
        # The load report would list a masked-LM checkpoint's head (and a pooler) as unexpected
        # keys on every load; those are expected. Missing keys are not: they are checked below.
        previous = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            encoder, loading = AutoModel.from_pretrained(source, add_pooling_layer=False, local_files_only=local_only,
                                                         output_loading_info=True, **kwargs)
        finally:
            hf_logging.set_verbosity(previous)
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        if hub_id is None:
            raise XsweepError(f"could not load the backbone from folder {source!r}: {exc}",
                              where="backbone.name",
                              fix="the folder must hold a Hugging Face encoder (config.json, weights, tokenizer)"
                              ) from exc
        raise XsweepError(
            f"backbone {hub_id!r} could not be found locally and could not be downloaded "
            f"(offline, or no such model): {type(exc).__name__}",
            where="backbone.name",
            fix=(f"download it first on a machine with network (`hf download {hub_id}`), "
                 "or point HF_HOME at a cache that holds it, or pass a local folder"),
        ) from exc
    if loading.get("missing_keys"):
        missing = sorted(loading["missing_keys"])
        raise XsweepError(f"the checkpoint lacks {len(missing)} encoder weights (e.g. {missing[:3]}); they would be "
                          "random, and a frozen backbone would never learn them", where=f"backbone {source!r}",
                          fix="point at a complete encoder checkpoint")
    backbone_info(encoder)  # reject unsupported families now, not at the first forward
    return encoder, tokenizer
