"""Objectives and metrics on small hand-checked inputs."""

from __future__ import annotations

import math
import random

import pytest
import torch
from transformers import (BertConfig, BertForMaskedLM, PreTrainedTokenizerFast, XLMRobertaConfig,
                          XLMRobertaForMaskedLM)

from xsweep.errors import XsweepError
from xsweep.metrics import intent_accuracy, retrieval_accuracy, slot_f1, to_bio
from xsweep.models.backbone import backbone_info, load_backbone
from xsweep.models.builtin import train_tokenizer
from xsweep.models.mlm_head import load_mlm_head
from xsweep.models.prompted import build_slot_model
from xsweep.models.prompts import LayerPrompt
from xsweep.objectives.alignment import MaskingSpec, alignment_loss
from xsweep.objectives.contrastive import info_nce
from xsweep.objectives.mlm import IGNORE, mask_tokens
from xsweep.objectives.nli import ENTAILMENT, OUT_OF_SCOPE, intent_hypothesis, nli_pairs, nli_predict
from xsweep.data.encode import first_subtoken_labels
from xsweep.objectives.slots import word_predictions
from test_prompts_reference import batch_with_padding, tiny_encoder

SPECIALS = [0, 1, 2, 3, 4]  # <s> <pad> </s> <unk> <mask>


@pytest.mark.timeout(30)
def test_mask_tokens_never_touches_specials_or_padding():
    ids = torch.randint(5, 100, (64, 40))
    ids[:, 0], ids[:, -1] = 0, 2
    ids[::2, 30:] = 1  # padding in half the rows
    mask = (ids != 1).long()
    masked, labels = mask_tokens(ids, mask, special_ids=SPECIALS, mask_id=4, vocab_size=100,
                                 generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    assert not chosen[torch.isin(ids, torch.tensor(SPECIALS))].any()
    assert torch.equal(masked[~chosen], ids[~chosen])
    assert torch.equal(labels[chosen], ids[chosen])
    rate = chosen.sum() / (mask.bool() & ~torch.isin(ids, torch.tensor(SPECIALS))).sum()
    assert 0.12 < rate < 0.18
    share_mask = (masked[chosen] == 4).float().mean()
    assert 0.7 < share_mask < 0.9
    assert not torch.isin(masked[chosen & (masked != 4)], torch.tensor(SPECIALS)).any()


@pytest.mark.timeout(30)
def test_masking_is_dynamic_and_covers_short_rows():
    ids = torch.tensor([[0, 7, 2, 1, 1]] * 50 + [[0, 7, 8, 9, 2]] * 50)
    mask = (ids != 1).long()
    gen = torch.Generator().manual_seed(0)
    _, first = mask_tokens(ids, mask, special_ids=SPECIALS, mask_id=4, vocab_size=20, generator=gen)
    _, second = mask_tokens(ids, mask, special_ids=SPECIALS, mask_id=4, vocab_size=20, generator=gen)
    assert not torch.equal(first, second)  # x and y masked by two calls get independent masks
    assert ((first != IGNORE).sum(1) >= 1).all()  # a one-word utterance still carries loss


@pytest.mark.timeout(30)
def test_info_nce_by_hand():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    cos = torch.tensor([[1.0, 1 / math.sqrt(2)], [0.0, 1 / math.sqrt(2)]]) / 0.05
    want = -(cos[0].log_softmax(0)[0] + cos[1].log_softmax(0)[1]) / 2
    assert torch.allclose(info_nce(x, y), want)
    aligned = torch.eye(8)
    assert info_nce(aligned, aligned * 3) < 1e-6 < info_nce(aligned, aligned.roll(1, 0))


@pytest.mark.timeout(30)
def test_nli_negatives_never_gold_and_balanced():
    rng = random.Random(0)
    for _ in range(300):
        gold = [rng.randrange(rng.choice([1, 3, 60])) for _ in range(rng.randint(1, 16))]
        pairs = nli_pairs(gold, 60, rng)
        n = len(gold)
        assert pairs.target.tolist() == [ENTAILMENT] * n + [1 - ENTAILMENT] * n
        assert pairs.label[:n] == gold
        assert all(neg != gold[i] for i, neg in zip(pairs.example[n:], pairs.label[n:]))
    # In-batch first: with two intents in the batch, each negative is the other one.
    assert nli_pairs([5, 9, 5], 60, rng).label[3:] == [9, 5, 9]
    # Candidates (SGD: the service's intents) are preferred over in-batch labels.
    pairs = nli_pairs([1, 2], 60, rng, candidates=[[1, 7], [2, 8]])
    assert pairs.label[2:] == [7, 8]
    with pytest.raises(XsweepError):
        nli_pairs([0], 1, rng)


@pytest.mark.timeout(30)
def test_nli_prediction_rule():
    probs = torch.tensor([[0.2, 0.9, 0.1], [0.3, 0.4, 0.45]])
    assert nli_predict(probs).tolist() == [1, 2]
    assert nli_predict(probs, threshold=0.5).tolist() == [1, OUT_OF_SCOPE]
    only = torch.tensor([[True, False, True], [True, True, True]])
    assert nli_predict(probs, candidate_mask=only).tolist() == [0, 2]
    assert intent_hypothesis("alarm_set") == "alarm set"


@pytest.mark.timeout(30)
def test_first_subtoken_labels_and_back():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    assert first_subtoken_labels(word_ids, [5, 6, 7]) == [IGNORE, 5, IGNORE, 6, 7, IGNORE, IGNORE, IGNORE]
    logits = torch.zeros(8, 9)
    logits[1, 5] = logits[2, 8] = logits[3, 6] = logits[4, 7] = 1.0
    assert word_predictions(logits, word_ids, 4, outside=0) == [5, 6, 7, 0]  # word 3 was truncated


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["layer", "input"])
def test_slot_logits_cover_input_tokens_only(kind):
    model = build_slot_model(tiny_encoder("xlm-roberta", "eager"), method="pt", prompt_kind=kind,
                             prompt_length=6, num_labels=5).eval()
    ids, mask = batch_with_padding()
    assert model(ids, mask).shape == (*ids.shape, 5)


@pytest.mark.timeout(30)
def test_metrics_by_hand():
    assert to_bio(["Other", "date", "date", "time", "Other", "time"]) == ["O", "B-date", "I-date", "B-time", "O", "B-time"]
    gold = [["Other", "date", "date", "time"], ["place", "Other"]]
    pred = [["Other", "date", "Other", "time"], ["place", "Other"]]
    # gold spans: date(1-2), time(3), place(0); predicted: date(1), time(3), place(0) -> 2 of 3 right
    assert slot_f1(pred, gold) == pytest.approx(2 / 3)
    assert slot_f1(gold, gold) == 1.0
    with pytest.raises(XsweepError):
        slot_f1([["Other"]], [["Other", "date"]])
    assert intent_accuracy([1, 2, -1], [1, 3, -1]) == pytest.approx(2 / 3)
    q = torch.tensor([[1.0, 0.1], [0.0, 1.0], [1.0, 1.0]])
    c = torch.tensor([[2.0, 0.0], [0.1, 3.0], [0.9, 1.0]])
    assert retrieval_accuracy(q, c) == 1.0
    assert retrieval_accuracy(q, c[[1, 0, 2]]) == pytest.approx(1 / 3)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["xlm-roberta", "bert"])
def test_pretrained_mlm_head_reproduces_the_checkpoint(tmp_path, family):
    torch.manual_seed(0)
    config_cls, model_cls = ((XLMRobertaConfig, XLMRobertaForMaskedLM) if family == "xlm-roberta"
                             else (BertConfig, BertForMaskedLM))
    full = model_cls(config_cls(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                intermediate_size=64, max_position_embeddings=40, pad_token_id=1)).eval()
    with torch.no_grad():
        for p in full.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    full.save_pretrained(tmp_path)
    train_tokenizer([f"word{i} other{i}" for i in range(30)], 60).save_pretrained(tmp_path)
    encoder, tokenizer = load_backbone(str(tmp_path))
    head, pretrained = load_mlm_head(encoder, tmp_path)
    assert pretrained and not any(p.requires_grad for p in head.parameters())
    ids, mask = batch_with_padding()
    with torch.no_grad():
        want = full(input_ids=ids, attention_mask=mask).logits
        got = head(encoder(input_ids=ids, attention_mask=mask).last_hidden_state)
    assert torch.allclose(got[mask.bool()], want[mask.bool()], atol=1e-5)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)


@pytest.mark.timeout(60)
def test_alignment_loss_trains_prompt_and_fresh_head_only():
    encoder = tiny_encoder("bert", "sdpa")
    head, pretrained = load_mlm_head(encoder, None)
    assert not pretrained
    prompt = LayerPrompt(backbone_info(encoder), 4)
    encoder.requires_grad_(False)
    ids, mask = batch_with_padding()
    spec = MaskingSpec(special_ids=SPECIALS, mask_id=4, vocab_size=60)
    loss = alignment_loss(encoder, prompt, head, ids, mask, ids.flip(0), mask.flip(0), spec,
                          generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss.total) and loss.total.item() == pytest.approx(loss.mlm.item() + loss.contrastive.item())
    loss.total.backward()
    assert prompt.embedding.weight.grad.abs().sum() > 0 and head.dense.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in encoder.parameters())
    assert "decoder" not in " ".join(head.state_dict())  # the tied matrix is the backbone's, never saved
