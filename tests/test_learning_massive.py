"""Acceptance: the NLI head learns on real MASSIVE en-US with the real pretrained all-MiniLM-L6-v2, on CPU.

(The vanilla head's PT learning test runs on a real multilingual encoder: tests/test_learning_e5.py.)

Fixed: the 15-shot sample (sample_few_shot seed 0: 888 utterances; cooking_query has only 4 in
train and music_dislikeness 14, so both give all they have), the seeds of prompt/head
initialisation and of data order. Measured here (2-core CPU, `pytest tests/test_learning_massive.py -s`):
NLI head with a layer prompt of 16, 3 epochs: 0.457 on a fixed stratified test subset of the
intents' utterances (175 utterances x 60 intents), chance 1/60. Earlier, with this file's vanilla
PT test: PT with a layer prompt of 16, 8 epochs, lr 1e-2, reached 0.661 on the full en-US test set,
and a linear probe on `[CLS]` 0.563.
"""

from __future__ import annotations

import random
import time

import pytest
import torch

from xsweep.data.fewshot import sample_few_shot
from xsweep.data.massive import intent_labels, read_massive
from xsweep.models.backbone import load_backbone
from xsweep.models.prompted import build_nli_model
from xsweep.objectives.nli import entailment_probability, intent_hypothesis, nli_loss, nli_pairs, nli_predict
from xsweep.metrics import intent_accuracy

SEED = 0
MAX_LEN = 48
# Measured on this data (full test set, same seeds), PT layer-16 after 4 / 6 / 8 epochs:
#   authors' conventions (positions shift by P, backbone dropout on):  -    / -    / 0.606
#   positions kept, backbone dropout on:                                0.610 / 0.638 / 0.646
#   positions shift, backbone dropout off:                              0.638 / 0.654 / 0.666
#   positions kept, backbone dropout off:                               0.643 / 0.661 / 0.683
# BERT's absolute positions make a shift move `[CLS]` off position 0 of every layer, which the
# prompt must first undo; and the frozen model's dropout is noise to a 900-example run. The test
# uses the last recipe, which keeps the margin over 60% wide at 6 epochs (CPU time matters here).
RECIPE = dict(shift_positions=False, backbone_dropout=False)


@pytest.fixture(scope="module")
def massive(shared_data):
    folder = shared_data / "massive" / "1.1" / "data"
    train = read_massive(folder, "en-US", ["train"])
    test = read_massive(folder, "en-US", ["test"])
    labels = intent_labels(train)
    sample = sample_few_shot(train, 15, SEED).examples
    return {"train": sample, "test": test, "labels": labels, "index": {name: i for i, name in enumerate(labels)}}


def tokenize(tokenizer, texts, pairs=None):
    enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=MAX_LEN, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def gold(rows, index):
    return torch.tensor([index[r.intent] for r in rows])


def stratified_subset(rows, per_intent):
    """The first `per_intent` test utterances of each intent, in file order: fixed, no randomness."""
    taken, out = {}, []
    for row in rows:
        if taken.get(row.intent, 0) < per_intent:
            taken[row.intent] = taken.get(row.intent, 0) + 1
            out.append(row)
    return out


@pytest.mark.timeout(900)
def test_nli_head_beats_chance_widely(massive, minilm_path):
    train, labels, index = massive["train"], massive["labels"], massive["index"]
    hypotheses = [intent_hypothesis(name) for name in labels]
    torch.manual_seed(SEED)
    encoder, tokenizer = load_backbone(minilm_path)
    model = build_nli_model(encoder, method="pt", prompt_kind="layer", prompt_length=16, **RECIPE)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    order = random.Random(SEED)
    started = time.perf_counter()
    for _ in range(3):
        model.train()
        rows = list(train)
        order.shuffle(rows)
        for start in range(0, len(rows), 32):
            batch = rows[start:start + 32]
            pairs = nli_pairs([index[r.intent] for r in batch], len(labels), order)
            ids, mask = tokenize(tokenizer, [batch[i].utt for i in pairs.example], [hypotheses[k] for k in pairs.label])
            loss = nli_loss(model(ids, mask), pairs.target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    train_seconds = time.perf_counter() - started

    subset = stratified_subset(massive["test"], 3)
    assert len(subset) >= 170 and {r.intent for r in subset} == {r.intent for r in massive["test"]}
    model.eval()
    probs = []
    with torch.no_grad():
        for row in subset:  # one utterance against all 60 hypotheses per forward
            ids, mask = tokenize(tokenizer, [row.utt] * len(labels), hypotheses)
            probs.append(entailment_probability(model(ids, mask)))
    predicted = nli_predict(torch.stack(probs))
    accuracy = intent_accuracy(predicted, gold(subset, index))
    print(f"NLI layer-16: {accuracy:.3f} on {len(subset)} utterances (train {train_seconds:.0f} s, "
          f"total {time.perf_counter() - started:.0f} s)")
    assert accuracy >= 10 / len(labels)  # ten times chance
    assert len(set(predicted.tolist())) >= 20  # not a few intents that always win
