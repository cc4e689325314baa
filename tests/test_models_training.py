"""PT keeps the backbone frozen and trains the prompt; FT trains everything; parameter counts by hand."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaConfig, XLMRobertaModel

from xsweep.errors import XsweepError
from xsweep.models.prompted import build_intent_model
from test_prompts_reference import FAMILIES, batch_with_padding, tiny_encoder

# XLM-R large's shape (from its published config.json, which cannot be downloaded here).
XLMR_LARGE = dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                  intermediate_size=4096, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1)


def pt_steps(model, steps=3):
    ids, mask = batch_with_padding()
    labels = torch.tensor([0, 1, 2])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.01)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(ids, mask), labels)
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        optimizer.step()
    return grads


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("kind", ["layer", "input"])
def test_pt_backbone_frozen_prompt_learns(family, kind):
    encoder = tiny_encoder(family, "sdpa")
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    model = build_intent_model(encoder, method="pt", prompt_kind=kind, prompt_length=4, num_labels=3)
    prompt_before = model.prompt.embedding.weight.detach().clone()
    grads = pt_steps(model)
    assert all(not p.requires_grad and p.grad is None for p in encoder.parameters())
    after = encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen backbone changed"
    assert set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert grads["prompt.embedding.weight"].abs().sum() > 0
    assert grads["head.out_proj.weight"].abs().sum() > 0
    assert not torch.equal(prompt_before, model.prompt.embedding.weight)
    assert set(model.trainable_state_dict()) == {n for n, _ in model.named_parameters() if n.startswith(("prompt.", "head."))}


@pytest.mark.timeout(60)
def test_backbone_dropout_switch():
    encoder = tiny_encoder("xlm-roberta", "eager")
    model = build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=2, num_labels=3,
                               backbone_dropout=False)
    model.train()
    assert not model.encoder.training and model.prompt.training and model.head.training
    model.backbone_dropout = True
    model.train()
    assert model.encoder.training


@pytest.mark.timeout(60)
def test_ft_trains_everything():
    encoder = tiny_encoder("xlm-roberta", "eager")
    word_before = encoder.get_input_embeddings().weight.detach().clone()
    model = build_intent_model(encoder, method="ft", prompt_kind="none", prompt_length=0, num_labels=3)
    grads = pt_steps(model, steps=1)
    assert "encoder.encoder.layer.0.attention.self.query.weight" in grads
    assert not torch.equal(word_before, encoder.get_input_embeddings().weight)
    assert set(model.trainable_state_dict()) == set(model.state_dict())


@pytest.mark.timeout(60)
def test_bad_method_and_prompt_combinations():
    encoder = tiny_encoder("bert", "eager")
    for kwargs in (dict(method="apt", prompt_kind="none"), dict(method="xx", prompt_kind="layer"),
                   dict(method="pt", prompt_kind="prefix")):
        with pytest.raises(XsweepError):
            build_intent_model(encoder, prompt_length=4, num_labels=3, **kwargs)
    with pytest.raises(XsweepError, match="at least 1"):
        build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=0, num_labels=3)


@pytest.mark.timeout(60)
def test_too_long_for_position_table_is_a_clear_error():
    encoder = tiny_encoder("xlm-roberta", "eager")  # 80 positions
    model = build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=73, num_labels=3).eval()
    ids, mask = batch_with_padding()
    with pytest.raises(XsweepError, match="position"):
        model(ids, mask)  # 7 tokens + 73 prompt positions + the pad offset > 80
    model.prompt.shift_positions = False  # the other convention needs no room for the prompt
    assert model(ids, mask).shape == (3, 3)


@pytest.mark.timeout(60)
def test_xlmr_large_trainable_count_by_hand():
    config = XLMRobertaConfig(**XLMR_LARGE)
    with torch.device("meta"):  # the shape without 2 GB of weights
        encoder = XLMRobertaModel(config, add_pooling_layer=False)
    layers, hidden, inter, vocab, labels, p = 24, 1024, 4096, 250002, 60, 16
    model = build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=p, num_labels=labels)
    trainable = sum(x.numel() for x in model.parameters() if x.requires_grad)
    prompt = p * 2 * layers * hidden  # one key and one value vector per layer and prompt position
    head = (hidden * hidden + hidden) + (hidden * labels + labels)  # dense + out_proj
    assert prompt == 786_432
    assert trainable == prompt + head == 1_897_532
    frozen = sum(x.numel() for x in model.encoder.parameters())
    embeddings = (vocab + 514 + 1) * hidden + 2 * hidden
    per_layer = 4 * (hidden * hidden + hidden) + (hidden * inter + inter) + (inter * hidden + hidden) + 2 * 2 * hidden
    assert frozen == embeddings + layers * per_layer == 559_890_432 - (hidden * hidden + hidden)  # no pooler
    assert all(not x.requires_grad for x in model.encoder.parameters())
