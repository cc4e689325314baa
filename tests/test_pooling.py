"""How a sentence is read off the encoder (`backbone.pooling`, `backbone.text_prefix`): by the heads,
the alignment objective and retrieval alike, and never from padding or the prompt's positions."""

from __future__ import annotations

import pytest
import torch
from test_objectives_units import SPECIALS
from test_prompts_reference import batch_with_padding, tiny_encoder

from xsweep.config import ExperimentConfig
from xsweep.data.massive import MassiveExample
from xsweep.models.backbone import load_backbone
from xsweep.models.mlm_head import MlmHead
from xsweep.models.pooling import pool, sentence_states, with_prefix
from xsweep.models.prompted import build_intent_model
from xsweep.models.prompts import encode
from xsweep.objectives.alignment import MaskingSpec, alignment_loss
from xsweep.objectives.contrastive import info_nce
from xsweep.objectives.mlm import mask_tokens
from xsweep.train.align import AlignSpec
from xsweep.train.tasks import make_task, task_labels

pytestmark = pytest.mark.timeout(60)


def test_mean_pooling_by_hand_leaves_padding_out():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],
                           [[5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(pool(hidden, mask, "cls"), torch.tensor([[1.0, 2.0], [5.0, 6.0]]))
    assert torch.equal(pool(hidden, mask, "mean"), torch.tensor([[2.0, 3.0], [7.0, 8.0]]))
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(hidden, mask, "max")


@pytest.mark.parametrize("kind", ["layer", "input"])
def test_a_mean_pooled_head_reads_a_padded_row_as_the_row_alone(kind):
    """Padding and the prompt's positions never reach the mean: each row of a padded batch gets the
    logits it gets alone, and mean pooling gives other logits than `<s>` on the same weights."""
    torch.manual_seed(0)
    model = build_intent_model(tiny_encoder("xlm-roberta", "eager"), method="pt", prompt_kind=kind,
                               prompt_length=5, num_labels=7, pooling="mean").eval()
    ids, mask = batch_with_padding()
    with torch.no_grad():
        batched = model(ids, mask)
        for row in range(len(ids)):
            real = int(mask[row].sum())
            alone = model(ids[row:row + 1, :real], mask[row:row + 1, :real])
            torch.testing.assert_close(batched[row:row + 1], alone, atol=1e-5, rtol=1e-5)
        model.head.pooling = "cls"
        assert not torch.allclose(model(ids, mask), batched, atol=1e-3)


def test_the_contrastive_loss_reads_the_configured_pooling():
    encoder = tiny_encoder("xlm-roberta", "eager")
    ids, mask = batch_with_padding()
    masking = MaskingSpec(SPECIALS, 4, 60, probability=0.15)
    head = MlmHead(encoder.get_input_embeddings())
    losses = {}
    for pooling in ("cls", "mean"):
        losses[pooling] = alignment_loss(encoder.eval(), None, head, ids, mask, ids.flip(0), mask.flip(0), masking,
                                         pooling=pooling, generator=torch.Generator().manual_seed(0))
    # The same masks (same generator): the MLM losses agree, the contrastive ones do not.
    torch.testing.assert_close(losses["cls"].mlm, losses["mean"].mlm)
    assert not torch.isclose(losses["cls"].contrastive, losses["mean"].contrastive)
    with torch.no_grad():  # and "mean" is InfoNCE on the masked sequences' mean states, by hand
        generator = torch.Generator().manual_seed(0)
        states = []
        for side_ids, side_mask in ((ids, mask), (ids.flip(0), mask.flip(0))):
            masked, _ = mask_tokens(side_ids, side_mask, special_ids=SPECIALS, mask_id=4, vocab_size=60,
                                    probability=0.15, generator=generator)
            hidden = encode(encoder, None, masked, side_mask)
            states.append((hidden * side_mask[..., None]).sum(1) / side_mask.sum(1, keepdim=True))
        torch.testing.assert_close(losses["mean"].contrastive, info_nce(*states, 0.05))


def test_retrieval_states_follow_pooling_and_prefix():
    encoder = tiny_encoder("xlm-roberta", "eager")
    calls = []

    class Tokenizer:  # the smallest tokenizer that shows what text reached it
        def __call__(self, texts, **kwargs):
            calls.append(list(texts))
            rows = [[0] + [5 + len(word) for word in text.split()] + [2] for text in texts]
            width = max(map(len, rows))
            return {"input_ids": torch.tensor([r + [1] * (width - len(r)) for r in rows]),
                    "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])}

    texts = ["a bb ccc", "dddd e"]
    cls = sentence_states(encoder, None, Tokenizer(), texts)
    mean = sentence_states(encoder, None, Tokenizer(), texts, pooling="mean", text_prefix="query: ")
    assert calls == [texts, with_prefix(texts, "query: ")] and calls[1][0] == "query: a bb ccc"
    assert cls.shape == mean.shape == (2, 32) and not torch.allclose(cls, mean)


def test_text_prefix_reaches_every_sentence_the_tasks_tokenize(tiny_backbone):
    _, tokenizer = load_backbone(str(tiny_backbone))
    rows = [MassiveExample(id=str(i), locale="en-US", partition="dev", scenario="alarm", intent="alarm_set",
                           utt=utt, annot_utt=None) for i, utt in enumerate(["wake me up at seven", "set an alarm"])]
    for head in ("vanilla", "nli"):
        cfg = ExperimentConfig()
        cfg.head.kind = head
        cfg.backbone.text_prefix = "query: "
        split = make_task(cfg, task_labels(cfg, rows), tokenizer).encode(rows)
        if head == "vanilla":
            first = split.encoded.input_ids[0]
            assert first == tokenizer("query: wake me up at seven", truncation=True, max_length=64)["input_ids"]
        else:
            assert split.pairs.premise_lengths()[1] == len(tokenizer("query: set an alarm",
                                                                     add_special_tokens=False)["input_ids"])


def test_an_alignment_run_read_another_way_is_another_run():
    """The aligned prompt of a mean-pooled run is never reused for a `<s>` one; runs made before the
    keys existed (their defaults) keep their digest."""
    base = dict(backbone_path="/tmp/b", output_dir="/tmp/o", sources=[])
    default = AlignSpec(**base)
    assert "pooling" not in default.hyperparameters() and "text_prefix" not in default.hyperparameters()
    mean = AlignSpec(**base, backbone={"pooling": "mean"})
    prefixed = AlignSpec(**base, backbone={"text_prefix": "query: "})
    assert len({default.digest(), mean.digest(), prefixed.digest()}) == 3


def test_a_seed_draws_the_prompt_before_the_head():
    """What a seed means: the prompt's initial values are drawn first, then the head's (the order
    every run so far was made with; building the head first changed the quickstart's table)."""
    from xsweep.models.backbone import backbone_info
    from xsweep.models.prompts import build_prompt

    encoder = tiny_encoder("xlm-roberta", "eager")
    torch.manual_seed(0)
    model = build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=5, num_labels=7,
                               pooling="mean")
    torch.manual_seed(0)
    prompt = build_prompt("layer", backbone_info(encoder), 5, encoder)
    for (name, want), got in zip(prompt.state_dict().items(), model.prompt.state_dict().values()):
        assert torch.equal(got, want), name
