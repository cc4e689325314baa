"""The masked-LM head for alignment training: the backbone's own when its checkpoint has one, else fresh.

RoBERTa/XLM-R (`lm_head.*`) and BERT (`cls.predictions.*`) heads have the same shape: dense, gelu,
LayerNorm, then a decoder tied to the input embeddings plus a bias. One module covers both. A
pretrained head stays frozen like the backbone (only the prompt learns, as in the authors' code);
a fresh one (all-MiniLM-L6-v2 is a bare encoder) trains with the prompt and is saved with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel

from xsweep.errors import XsweepError
from xsweep.models.backbone import backbone_info

# checkpoint prefix of the head per family; our names below are the RoBERTa ones
_PREFIX = {"roberta": "lm_head.", "bert": "cls.predictions."}
_BERT_NAMES = {"transform.dense.weight": "dense.weight", "transform.dense.bias": "dense.bias",
               "transform.LayerNorm.weight": "layer_norm.weight", "transform.LayerNorm.bias": "layer_norm.bias",
               "bias": "bias"}
_ROBERTA_NAMES = {k: k for k in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias")}


class MlmHead(nn.Module):
    """Masked-LM head with its decoder tied to the (frozen) input embeddings."""

    def __init__(self, word_embeddings: nn.Embedding, eps: float = 1e-5):
        super().__init__()
        vocab, hidden = word_embeddings.weight.shape
        self.dense = nn.Linear(hidden, hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)
        self.bias = nn.Parameter(torch.zeros(vocab))
        # A list, not a submodule: the tied matrix belongs to the backbone, never to this head's
        # parameters or saved state.
        self._tied = [word_embeddings]

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (N, H) states of the masked positions only (a 250k vocabulary times every
        position would not fit). Returns logits (N, V)."""
        x = self.layer_norm(F.gelu(self.dense(hidden)))
        return F.linear(x, self._tied[0].weight, self.bias)


def load_mlm_head(encoder: PreTrainedModel, checkpoint: str | Path | None) -> tuple[MlmHead, bool]:
    """The MLM head for `encoder`: read from `checkpoint` (the backbone's folder) when it holds one
    (returned frozen, with True), else fresh (trainable, with False)."""
    info = backbone_info(encoder)
    head = MlmHead(encoder.get_input_embeddings(), eps=encoder.config.layer_norm_eps)
    state = _head_tensors(_folder(checkpoint), info.position_style) if checkpoint is not None else {}
    if not state:
        return head, False
    head.load_state_dict(state, strict=True)
    head.requires_grad_(False)
    return head, True


def _folder(checkpoint: str | Path) -> Path:
    """A local folder, or the cached snapshot of a hub id (load_backbone has already fetched it)."""
    if Path(checkpoint).expanduser().is_dir():
        return Path(checkpoint).expanduser()
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(checkpoint), local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several types for "not cached"
        raise XsweepError(f"no local copy of backbone {str(checkpoint)!r} to read its MLM head from",
                          where="backbone.name", fix="load the backbone once with network, or pass its folder") from exc


def _head_tensors(folder: Path, style: str) -> dict[str, torch.Tensor]:
    """The head's tensors from a checkpoint folder's safetensors (single or sharded), renamed."""
    prefix = _PREFIX["bert" if style == "absolute" else "roberta"]
    names = _BERT_NAMES if style == "absolute" else _ROBERTA_NAMES
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []
    out = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                if key.startswith(prefix) and key[len(prefix):] in names:
                    out[names[key[len(prefix):]]] = f.get_tensor(key).float()
    return out if len(out) == len(names) else {}
