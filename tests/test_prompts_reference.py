"""Layer and input prompts against a hand-written reference computed directly from the weights.

The reference is a from-scratch forward of the three architectures (post-LayerNorm XLM-R and BERT,
pre-LayerNorm XLM-R XL) in which each layer's attention concatenates the prompt's key and value
prefixes before its own keys and values, with the padding mask extended by P. It shares no code
with transformers' attention or with xsweep's cache injection.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import (BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel, XLMRobertaXLConfig,
                          XLMRobertaXLModel)

from xsweep.models.backbone import backbone_info
from xsweep.models.prompts import InputPrompt, LayerPrompt, encode_plain

PAD = 1
FAMILIES = {"xlm-roberta": (XLMRobertaConfig, XLMRobertaModel), "xlm-roberta-xl": (XLMRobertaXLConfig, XLMRobertaXLModel),
            "bert": (BertConfig, BertModel)}


def tiny_encoder(family: str, attn: str, seed: int = 0):
    config_cls, model_cls = FAMILIES[family]
    torch.manual_seed(seed)
    config = config_cls(vocab_size=60, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=80, pad_token_id=PAD,
                        type_vocab_size=2, hidden_act="gelu")
    config._attn_implementation = attn
    model = model_cls(config, add_pooling_layer=False).eval()
    # Random init gives near-zero biases and unit LayerNorms; perturb everything so that a wrong
    # bias, LayerNorm or position lookup cannot hide.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def batch_with_padding():
    """Three rows of different lengths, right-padded: (B, T) ids and mask."""
    rows = [[0, 7, 8, 9, 10, 11, 2], [0, 12, 13, 2], [0, 14, 2]]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), PAD)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != PAD).long()


def linear(x, layer):
    return F.linear(x, layer.weight, layer.bias)


def layer_norm(x, ln):
    return F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps)


def reference_forward(model, family, ids, mask, prefixes, shift):
    """Hand-written encoder forward. prefixes: per layer (keys, values), each (B, heads, P, head_dim)."""
    cfg = model.config
    heads, hd = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
    batch, length = ids.shape
    p = prefixes[0][0].shape[2] if prefixes else 0
    emb = model.embeddings
    if family == "bert":
        positions = (torch.arange(length) + shift).expand(batch, -1)
    else:  # fairseq numbering: real tokens from pad + 1 (+ shift), padding keeps the pad index
        positions = (torch.cumsum(mask, 1) + shift) * mask + PAD
    x = emb.word_embeddings.weight[ids] + emb.position_embeddings.weight[positions] + emb.token_type_embeddings.weight[0]
    if family != "xlm-roberta-xl":
        x = layer_norm(x, emb.LayerNorm)
    key_ok = torch.cat([torch.ones(batch, p, dtype=torch.bool), mask.bool()], 1)[:, None, None, :]

    def split(t):
        return t.view(batch, length, heads, hd).transpose(1, 2)

    for i, layer in enumerate(model.encoder.layer):
        att = layer.attention
        h = layer_norm(x, att.self_attn_layer_norm) if family == "xlm-roberta-xl" else x
        q, k, v = split(linear(h, att.self.query)), split(linear(h, att.self.key)), split(linear(h, att.self.value))
        if prefixes:
            k, v = torch.cat([prefixes[i][0], k], 2), torch.cat([prefixes[i][1], v], 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        probs = scores.masked_fill(~key_ok, float("-inf")).softmax(-1)
        ctx = (probs @ v).transpose(1, 2).reshape(batch, length, -1)
        if family == "xlm-roberta-xl":  # pre-LN: residuals without a norm, a final norm after the stack
            a = linear(ctx, att.output.dense) + x
            x = linear(F.gelu(linear(layer_norm(a, layer.LayerNorm), layer.intermediate.dense)), layer.output.dense) + a
        else:
            a = layer_norm(linear(ctx, att.output.dense) + x, att.output.LayerNorm)
            x = layer_norm(linear(F.gelu(linear(a, layer.intermediate.dense)), layer.output.dense) + a,
                           layer.output.LayerNorm)
    if family == "xlm-roberta-xl":
        x = layer_norm(x, model.encoder.LayerNorm)
    return x


CASES = [(f, a) for f in FAMILIES for a in ("eager", "sdpa")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family,attn", CASES)
@pytest.mark.parametrize("shift", [True, False])
def test_layer_prompt_matches_reference(family, attn, shift):
    model = tiny_encoder(family, attn)
    info = backbone_info(model)
    prompt = LayerPrompt(info, 5, dropout=0.1, shift_positions=shift).eval()
    ids, mask = batch_with_padding()
    with torch.no_grad():
        got = prompt.encode(model, ids, mask)
        prefixes = prompt.key_values(ids.shape[0], torch.float32)
        want = reference_forward(model, family, ids, mask, prefixes, 5 if shift else 0)
    assert got.shape == (3, ids.shape[1], 32)
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-5), (got[real] - want[real]).abs().max()
    # The prefix matters: the same input without a prompt gives something else.
    assert not torch.allclose(encode_plain(model, ids, mask)[real], got[real], atol=1e-3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_layer_prompt_layout_is_the_authors(family):
    """Row 2l of the P x (2 x layers) x heads x head_dim view holds layer l's keys, 2l+1 its values."""
    model = tiny_encoder(family, "eager")
    info = backbone_info(model)
    prompt = LayerPrompt(info, 4, dropout=0.0).eval()
    kv = prompt.key_values(2, torch.float32)
    table = prompt.embedding.weight.view(4, 2 * info.num_layers, info.num_heads, info.head_dim)
    for layer, (keys, values) in enumerate(kv):
        assert keys.shape == (2, info.num_heads, 4, info.head_dim)
        assert torch.equal(keys[1], table[:, 2 * layer].transpose(0, 1))
        assert torch.equal(values[0], table[:, 2 * layer + 1].transpose(0, 1))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family,attn", CASES)
def test_reference_without_prompt_is_the_model(family, attn):
    """Guards the reference itself: with no prefix it must reproduce transformers' own forward."""
    model = tiny_encoder(family, attn)
    ids, mask = batch_with_padding()
    with torch.no_grad():
        got = encode_plain(model, ids, mask)
        want = reference_forward(model, family, ids, mask, [], 0)
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-5)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family,attn", CASES)
def test_input_prompt_equals_tokens_spliced_after_bos(family, attn):
    """Soft tokens set to the embeddings of real tokens give exactly the encoding of the sequence with
    those tokens inserted after `<s>`; the output keeps only the input's own positions."""
    model = tiny_encoder(family, attn)
    info = backbone_info(model)
    inserted = torch.tensor([20, 21, 22])
    prompt = InputPrompt(info, 3, model.get_input_embeddings().weight).eval()
    with torch.no_grad():
        prompt.embedding.weight.copy_(model.get_input_embeddings().weight[inserted])
    ids, mask = batch_with_padding()
    spliced = torch.cat([ids[:, :1], inserted.expand(3, -1), ids[:, 1:]], 1)
    spliced_mask = (spliced != PAD).long()
    with torch.no_grad():
        got = prompt.encode(model, ids, mask)
        full = reference_forward(model, family, spliced, spliced_mask, [], 0)
    want = torch.cat([full[:, :1], full[:, 4:]], 1)
    real = mask.bool()
    assert got.shape == ids.shape + (32,)
    assert torch.allclose(got[real], want[real], atol=1e-5)
