"""Acceptance: alignment training (MLM + contrastive) of a layer prompt on real parallel sentences.

Backbone: the real all-MiniLM-L6-v2 (a bare encoder, so it gets a fresh MLM head tied to its input
embeddings, trained and saved with the prompt). Data: Tatoeba spa-eng from ../shared/data; the first
600 pairs train, the last 400 are held apart for retrieval and for the before/after losses.
The backbone's dropout and the prompt's are off, so the few steps the test can afford go to the
alignment itself. MiniLM's vocabulary is English-only, so its Spanish `<s>` states start far from
the English ones. Numbers reached here (2-core CPU, `pytest tests/test_learning_alignment.py -s`):
spa->eng retrieval on the 400 held-apart pairs 0.11 without a prompt -> 0.24 with the aligned
prompt after 4 epochs (lr 3e-2, about 50 s); training contrastive loss 3.0 -> 1.7.
"""

from __future__ import annotations

import json
import random
import time

import pytest
import torch

from xsweep.data.tatoeba import read_tatoeba
from xsweep.metrics import retrieval_accuracy
from xsweep.models.backbone import backbone_info, load_backbone
from xsweep.models.mlm_head import load_mlm_head
from xsweep.models.prompted import build_intent_model, load_prompt_for_apt, save_prompt
from xsweep.models.prompts import LayerPrompt, encode
from xsweep.objectives.alignment import MaskingSpec, alignment_loss

SEED = 0
TRAIN, HELD = slice(0, 600), slice(600, 1000)


def tokenize(tokenizer, texts):
    enc = tokenizer(texts, padding=True, truncation=True, max_length=48, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@torch.no_grad()
def first_token_states(encoder, prompt, tokenizer, texts):
    return torch.cat([encode(encoder, prompt, *tokenize(tokenizer, texts[s:s + 200]))[:, 0]
                      for s in range(0, len(texts), 200)])


@torch.no_grad()
def held_losses(encoder, prompt, head, tokenizer, spanish, english, masking):
    losses = alignment_loss(encoder, prompt, head, *tokenize(tokenizer, english[:128]),
                            *tokenize(tokenizer, spanish[:128]), masking,
                            generator=torch.Generator().manual_seed(SEED))
    return losses.mlm.item(), losses.contrastive.item()


@pytest.mark.timeout(900)
def test_alignment_lowers_both_losses_and_improves_retrieval(shared_data, tmp_path, minilm_path):
    pairs = read_tatoeba(shared_data / "tatoeba", "spa")
    spanish, english = pairs.sentences, pairs.english
    torch.manual_seed(SEED)
    backbone = minilm_path
    encoder, tokenizer = load_backbone(backbone)
    encoder.requires_grad_(False)
    head, pretrained = load_mlm_head(encoder, backbone)
    assert not pretrained  # all-MiniLM-L6-v2 ships without an MLM head
    prompt = LayerPrompt(backbone_info(encoder), 16, dropout=0.0)
    masking = MaskingSpec.from_tokenizer(tokenizer)

    encoder.eval(), prompt.eval(), head.eval()
    before = held_losses(encoder, prompt, head, tokenizer, spanish[HELD], english[HELD], masking)
    no_prompt = retrieval_accuracy(first_token_states(encoder, None, tokenizer, spanish[HELD]),
                                   first_token_states(encoder, None, tokenizer, english[HELD]))

    started = time.perf_counter()
    params = list(prompt.parameters()) + [p for p in head.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=3e-2)
    generator, order = torch.Generator().manual_seed(SEED), random.Random(SEED)
    train_rows = list(range(TRAIN.stop))
    for _ in range(4):
        prompt.train(), head.train()  # the encoder stays in eval: no backbone dropout
        order.shuffle(train_rows)
        for s in range(0, len(train_rows), 32):
            rows = train_rows[s:s + 32]
            loss = alignment_loss(encoder, prompt, head, *tokenize(tokenizer, [english[i] for i in rows]),
                                  *tokenize(tokenizer, [spanish[i] for i in rows]), masking, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            optimizer.step()
    seconds = time.perf_counter() - started

    encoder.eval(), prompt.eval(), head.eval()
    after = held_losses(encoder, prompt, head, tokenizer, spanish[HELD], english[HELD], masking)
    aligned = retrieval_accuracy(first_token_states(encoder, prompt, tokenizer, spanish[HELD]),
                                 first_token_states(encoder, prompt, tokenizer, english[HELD]))
    print(f"held-apart MLM {before[0]:.2f} -> {after[0]:.2f}, contrastive {before[1]:.2f} -> {after[1]:.2f}; "
          f"retrieval {no_prompt:.3f} (no prompt) -> {aligned:.3f} (aligned); train {seconds:.0f} s")
    assert after[0] < before[0] and after[1] < before[1]
    assert aligned > no_prompt + 0.05

    # The aligned prompt (and its fresh MLM head) is saved, and APT starts from it.
    save_prompt(prompt, encoder, tmp_path, meta={"pairs": "tatoeba spa-eng 0:600"}, mlm_head=head)
    assert json.loads((tmp_path / "prompt.json").read_text())["has_mlm_head"] is True
    apt = build_intent_model(encoder, method="apt", prompt_kind="layer", prompt_length=16, num_labels=3)
    load_prompt_for_apt(apt, tmp_path)
    assert torch.equal(apt.prompt.embedding.weight, prompt.embedding.weight)
