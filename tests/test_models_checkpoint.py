"""Saving what a run trains (never the frozen backbone) and starting APT from an aligned prompt."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from xsweep.errors import XsweepError
from xsweep.models.prompted import build_intent_model, load_prompt_for_apt, load_trainable, save_prompt, save_trainable
from test_prompts_reference import batch_with_padding, tiny_encoder


def intent_model(method="pt", kind="layer", length=4, seed=0, family="xlm-roberta"):
    torch.manual_seed(seed + 100)
    return build_intent_model(tiny_encoder(family, "eager", seed), method=method, prompt_kind=kind,
                              prompt_length=length, num_labels=3).eval()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["layer", "input", "none"])
def test_pt_round_trip_saves_prompt_and_head_only(tmp_path, kind):
    model = intent_model(kind=kind)
    save_trainable(model, tmp_path, meta={"labels": ["a", "b", "c"]})
    tensors = load_file(str(tmp_path / "trainable.safetensors"))
    assert tensors and all(k.startswith(("prompt.", "head.")) for k in tensors)
    described = json.loads((tmp_path / "trainable.json").read_text())
    assert described["model"]["prompt"]["kind"] == kind and described["meta"]["labels"] == ["a", "b", "c"]
    if kind == "layer":
        assert described["model"]["prompt"]["shift_positions"] is True
        assert described["shapes"]["prompt.embedding.weight"] == [4, 2 * 3 * 32]

    fresh = intent_model(kind=kind, seed=0)
    with torch.no_grad():  # make the fresh trainables differ, so loading has something to do
        for name, p in fresh.named_parameters():
            if name.startswith(("prompt.", "head.")):
                p.add_(1.0)
    ids, mask = batch_with_padding()
    assert not torch.allclose(fresh(ids, mask), model(ids, mask))
    assert load_trainable(fresh, tmp_path) == {"labels": ["a", "b", "c"]}
    assert torch.allclose(fresh(ids, mask), model(ids, mask), atol=1e-6)


@pytest.mark.timeout(60)
def test_ft_saves_the_whole_model(tmp_path):
    model = intent_model(method="ft", kind="none")
    save_trainable(model, tmp_path, meta={})
    assert set(load_file(str(tmp_path / "trainable.safetensors"))) == set(model.state_dict())


@pytest.mark.timeout(60)
def test_load_trainable_rejects_another_shape(tmp_path):
    save_trainable(intent_model(length=4), tmp_path, meta={})
    with pytest.raises(XsweepError, match="length"):
        load_trainable(intent_model(length=8), tmp_path)


@pytest.mark.timeout(60)
def test_apt_starts_from_the_aligned_prompt(tmp_path):
    aligned = intent_model(kind="layer", length=4, seed=0)
    with torch.no_grad():
        aligned.prompt.embedding.weight.normal_()
    save_prompt(aligned.prompt, aligned.encoder, tmp_path, meta={"pairs": 10})
    apt = intent_model(method="apt", kind="layer", length=4, seed=0)
    assert not torch.equal(apt.prompt.embedding.weight, aligned.prompt.embedding.weight)
    assert load_prompt_for_apt(apt, tmp_path) == {"pairs": 10}
    assert torch.equal(apt.prompt.embedding.weight, aligned.prompt.embedding.weight)
    assert all(not p.requires_grad for p in apt.encoder.parameters())


@pytest.mark.timeout(60)
def test_apt_mismatches_are_clear_errors(tmp_path):
    aligned = intent_model(kind="layer", length=4, seed=0)
    save_prompt(aligned.prompt, aligned.encoder, tmp_path, meta={})
    with pytest.raises(XsweepError, match="length 4"):
        load_prompt_for_apt(intent_model(method="apt", length=8, seed=0), tmp_path)
    with pytest.raises(XsweepError, match="kind"):
        load_prompt_for_apt(intent_model(method="apt", kind="input", length=4, seed=0), tmp_path)
    with pytest.raises(XsweepError, match="backbone mismatch"):
        load_prompt_for_apt(intent_model(method="apt", length=4, family="bert"), tmp_path)
    with pytest.raises(XsweepError, match="different backbone"):  # same shape, other weights
        load_prompt_for_apt(intent_model(method="apt", length=4, seed=1), tmp_path)
    with pytest.raises(XsweepError, match="not found"):
        load_prompt_for_apt(intent_model(method="apt", length=4), tmp_path / "nothing-here")
