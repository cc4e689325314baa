"""Saving and loading what a run trains: safetensors plus a small JSON of shapes and conventions.

Two kinds of folder:
- a *trainable* folder (`save_trainable`): a downstream model's trained tensors (prompt + head for
  pt/apt, never the frozen backbone; the whole model for ft): `trainable.safetensors`, `trainable.json`.
- a *prompt* folder (`save_prompt`): an alignment run's prompt, and the fresh MLM head it trained
  when the backbone had none: `prompt.safetensors`, `prompt.json`. APT starts from it.

The JSON is written last, so a folder whose JSON exists is complete.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xsweep.atomic import atomic_path, write_json
from xsweep.errors import XsweepError
from xsweep.models.backbone import backbone_fingerprint, backbone_info

FORMAT_VERSION = 1


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each with its own storage (safetensors refuses shared storage)."""
    out, seen = {}, set()
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu").contiguous()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def _save_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(_plain_tensors(state), str(tmp))


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise XsweepError(f"{what} not found: {path} does not exist", where=str(path.parent),
                          fix="point at a folder written by xsweep (it holds this JSON and a .safetensors file)")
    return json.loads(path.read_text(encoding="utf-8"))


def save_trainable(model: nn.Module, directory: Path, meta: dict) -> Path:
    """Write `model.trainable_state_dict()` and its description into `directory`; returns it."""
    directory = Path(directory)
    state = model.trainable_state_dict()
    _save_tensors(state, directory / "trainable.safetensors")
    write_json(directory / "trainable.json", {
        "format": FORMAT_VERSION, "model": model.describe(), "backbone": model.info.to_dict(),
        "backbone_fingerprint": backbone_fingerprint(model.encoder),
        "shapes": {k: list(v.shape) for k, v in state.items()}, "meta": meta,
    })
    return directory


def load_trainable(model: nn.Module, directory: Path) -> dict:
    """Load a `save_trainable` folder into `model` (built the same way); returns its `meta`."""
    directory = Path(directory)
    saved = _read_json(directory / "trainable.json", "trained model description")
    _check_same("backbone", saved["backbone"], model.info.to_dict(), directory)
    _check_same("prompt", saved["model"]["prompt"], model.describe()["prompt"], directory)
    tensors = load_file(str(directory / "trainable.safetensors"))
    _load_into(model, tensors, directory)
    return saved["meta"]


def save_prompt(prompt: nn.Module, encoder: nn.Module, directory: Path, meta: dict,
                mlm_head: nn.Module | None = None) -> Path:
    """Write an alignment run's prompt (and the MLM head it trained, if any) into `directory`."""
    directory = Path(directory)
    state = {f"prompt.{k}": v for k, v in prompt.state_dict().items()}
    if mlm_head is not None:
        state.update({f"mlm_head.{k}": v for k, v in mlm_head.state_dict().items()
                      if not k.startswith("decoder.weight")})  # tied to the frozen input embeddings
    _save_tensors(state, directory / "prompt.safetensors")
    write_json(directory / "prompt.json", {
        "format": FORMAT_VERSION, "prompt": prompt.describe(), "backbone": backbone_info(encoder).to_dict(),
        "backbone_fingerprint": backbone_fingerprint(encoder), "has_mlm_head": mlm_head is not None,
        "shapes": {k: list(v.shape) for k, v in state.items()}, "meta": meta,
    })
    return directory


def load_prompt_for_apt(model: nn.Module, directory: Path) -> dict:
    """Initialise `model.prompt` from an alignment run's saved prompt; returns the saved `meta`.

    A different prompt kind, length, position convention or backbone is an XsweepError, since the
    prompt would be meaningless (or not even the right shape) on the model being trained.
    """
    directory = Path(directory)
    saved = _read_json(directory / "prompt.json", "aligned prompt description")
    if model.prompt is None:
        raise XsweepError("this model has no prompt to initialise", where="prompt.kind",
                          fix="use prompt.kind layer or input with method apt")
    mine = model.prompt.describe()
    for key in ("kind", "length", "shift_positions", "reparam_hidden"):
        if saved["prompt"].get(key) != mine.get(key):
            raise XsweepError(
                f"aligned prompt has {key} {saved['prompt'].get(key)!r} but this run's prompt has {mine.get(key)!r}",
                where=str(directory), fix=f"set prompt.{key} to {saved['prompt'].get(key)!r}, or align a matching prompt")
    _check_same("backbone", saved["backbone"], model.info.to_dict(), directory)
    if saved["backbone_fingerprint"] != backbone_fingerprint(model.encoder):
        raise XsweepError("the aligned prompt was trained on a different backbone (same shape, other weights)",
                          where=str(directory), fix="use the backbone the alignment run used, or align on this one")
    tensors = load_file(str(directory / "prompt.safetensors"))
    prompt_state = {k[len("prompt."):]: v for k, v in tensors.items() if k.startswith("prompt.")}
    model.prompt.load_state_dict(prompt_state, strict=True)
    return saved["meta"]


def load_mlm_head_state(directory: Path) -> dict[str, torch.Tensor]:
    """The MLM-head tensors saved with a prompt (empty if the backbone brought its own head)."""
    tensors = load_file(str(Path(directory) / "prompt.safetensors"))
    return {k[len("mlm_head."):]: v for k, v in tensors.items() if k.startswith("mlm_head.")}


def _check_same(what: str, saved: dict, mine: dict, directory: Path) -> None:
    diff = {k: (saved.get(k), mine.get(k)) for k in set(saved) | set(mine) if saved.get(k) != mine.get(k)}
    if diff:
        listed = ", ".join(f"{k}: saved {a!r} vs this run {b!r}" for k, (a, b) in sorted(diff.items()))
        raise XsweepError(f"{what} mismatch with the saved folder ({listed})", where=str(directory),
                          fix=f"build the model with the same {what} as the run that saved it")


def _load_into(model: nn.Module, tensors: dict[str, torch.Tensor], directory: Path) -> None:
    own = model.state_dict()
    expected = set(model.trainable_state_dict())
    unknown = sorted(set(tensors) - set(own))
    missing = sorted(expected - set(tensors))
    if unknown or missing:
        raise XsweepError(f"saved tensors do not fit this model (unknown: {unknown[:5]}, missing: {missing[:5]})",
                          where=str(directory), fix="build the model with the method, prompt and head that saved it")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(own[name].shape):
            raise XsweepError(f"tensor {name} has shape {tuple(tensor.shape)}, this model expects "
                              f"{tuple(own[name].shape)}", where=str(directory),
                              fix="build the model with the same number of labels and prompt length")
    model.load_state_dict(tensors, strict=False)
