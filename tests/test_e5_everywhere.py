"""multilingual-e5-small goes everywhere a backbone goes (issue 17): every method x head x prompt kind
trains a step and evaluates through the tasks' own code, APT's objective (MLM with a fresh head tied
to e5's embeddings, since e5 has none, plus the contrastive loss) trains a step, retrieval reads it,
and the real Tatoeba/MASSIVE rows go through e5's tokenizer. A quick check of the plumbing on the
real model (which the learning test, tests/test_learning_e5.py, does not cover), one step each."""

from __future__ import annotations

import pytest
import torch

from xsweep.config import ExperimentConfig
from xsweep.data.massive import read_massive
from xsweep.data.parallel import AlignmentPair
from xsweep.data.tatoeba import read_tatoeba
from xsweep.metrics import retrieval_accuracy
from xsweep.models.backbone import backbone_info, load_backbone
from xsweep.models.mlm_head import load_mlm_head
from xsweep.models.pooling import sentence_states
from xsweep.models.prompts import build_prompt
from xsweep.objectives.alignment import MaskingSpec, alignment_loss
from xsweep.train.align_data import encode_pairs
from xsweep.train.tasks import make_task, task_labels

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def e5(e5_small):
    torch.manual_seed(0)
    return load_backbone(e5_small)


@pytest.fixture(scope="module")
def rows(shared_data):
    folder = shared_data / "massive" / "1.1" / "data"
    train = read_massive(folder, "en-US", ["train"])
    return train, [row for row in train if row.annot_utt][:12]


@pytest.mark.parametrize("method, head, prompt", [
    ("ft", "vanilla", "none"), ("pt", "vanilla", "layer"), ("apt", "vanilla", "input"),
    ("pt", "nli", "layer"), ("ft", "nli", "none"), ("pt", "slot", "layer"), ("ft", "slot", "input"),
])
def test_every_method_head_and_prompt_trains_and_evaluates_on_e5(e5, rows, one_thread, method, head, prompt):
    encoder, tokenizer = e5
    train, few = rows
    cfg = ExperimentConfig()
    cfg.method, cfg.head.kind, cfg.prompt.kind, cfg.prompt.length = method, head, prompt, 4
    cfg.backbone.pooling = "mean"
    task = make_task(cfg, task_labels(cfg, train), tokenizer)
    model = task.build_model(encoder)
    model.train()
    split = task.encode(few)
    batch = next(iter(task.train_batches(split, 4, torch.Generator().manual_seed(0), torch.device("cpu"))))
    loss = task.loss(model, batch)
    loss.backward()
    trained = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert torch.isfinite(loss) and trained
    if method == "ft":
        assert any(name.startswith("encoder.") for name in trained)
    else:  # the frozen e5 gets no gradient; the prompt and the head do
        assert all(name.startswith(("prompt.", "head.")) for name in trained)
        assert any(name.startswith("prompt.") for name in trained)
    model.zero_grad(set_to_none=True)
    evaluation = task.evaluate(model, split, 8, torch.device("cpu"))
    assert len(evaluation.rows) == len(few) and 0 <= evaluation.score <= 1


def test_apt_alignment_trains_a_fresh_tied_mlm_head_and_retrieval_reads_the_prompt(e5, shared_data, one_thread):
    """e5 ships no MLM head: alignment builds one tied to e5's input embeddings and trains it with
    the prompt (the paper's MLM + contrastive objective, not the contrastive-only ablation)."""
    encoder, tokenizer = e5
    encoder.requires_grad_(False)  # frozen, as the alignment module holds it
    head, pretrained = load_mlm_head(encoder, "intfloat/multilingual-e5-small")
    assert not pretrained and head._tied[0] is encoder.get_input_embeddings()
    torch.manual_seed(0)
    prompt = build_prompt("layer", backbone_info(encoder), 4, encoder, shift_positions=False)
    pairs = read_tatoeba(shared_data / "tatoeba" / "v1", "deu")
    batch = [AlignmentPair(doc_id=str(i), lang="deu", source=en, target=de, first_segment=0, num_segments=1)
             for i, (en, de) in enumerate(zip(pairs.english[:8], pairs.sentences[:8]))]
    masking = MaskingSpec.from_tokenizer(tokenizer)
    losses = alignment_loss(encoder, prompt, head, *encode_pairs(tokenizer, batch, 32), masking, pooling="mean",
                            generator=torch.Generator().manual_seed(0))
    losses.total.backward()
    assert torch.isfinite(losses.mlm) and torch.isfinite(losses.contrastive)
    assert head.dense.weight.grad is not None and encoder.get_input_embeddings().weight.grad is None
    assert any(p.grad is not None for p in prompt.parameters())
    # Retrieval, no prompt: e5 already aligns German to English on Tatoeba, read by the mean.
    german, english = pairs.sentences[:100], pairs.english[:100]
    accuracy = retrieval_accuracy(sentence_states(encoder, None, tokenizer, german, pooling="mean"),
                                  sentence_states(encoder, None, tokenizer, english, pooling="mean"))
    assert accuracy > 0.8, accuracy
