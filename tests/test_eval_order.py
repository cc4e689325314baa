"""Evaluation batches ordered by length: less padding, and the same predictions as file order.

Vanilla intents and slots evaluate rows shortest first (`batches.length_batches`) and put the
results back in file order. Padding is masked out of attention, so each row's prediction must be
the one a file-order evaluation gives; here both run on the same freshly built model (random prompt
and head on the built-in `micro` backbone) over the demo test set of two languages.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xsweep.config import load_config
from xsweep.models.backbone import load_backbone
from xsweep.sweep.prepare import prepare_inputs
from xsweep.train.batches import batch_order, collate, iter_batches, length_batches
from xsweep.train.tasks import eval_mode, make_task, read_examples, task_labels

pytestmark = pytest.mark.timeout(120)

EXPERIMENT = """\
name: order
method: {method}
backbone: {{name: "builtin:micro"}}
data: {{path: demo, max_seq_len: 40}}
prompt: {prompt}
head: {{kind: {kind}}}
storage: {{root: {root}}}
"""


def test_length_batches_cover_every_row_once_shortest_first_with_less_padding():
    lengths = [5, 30, 7, 7, 12, 3, 30, 9, 4, 18]
    batches = list(length_batches(lengths, 3))
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [i for b in batches for i in b]
    assert [lengths[i] for i in flat] == sorted(lengths)
    assert flat.index(2) < flat.index(3)  # equal lengths keep file order

    def padded(order):
        return sum(max(lengths[i] for i in b) * len(b) for b in order)

    assert padded(batches) < padded(batch_order(len(lengths), 3, None))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("order")

    def make(kind: str, method: str, prompt: str):
        path = root / f"{kind}.yaml"
        path.write_text(EXPERIMENT.format(kind=kind, method=method, prompt=prompt, root=root / "runs"))
        cfg = load_config(path)
        inputs = prepare_inputs(cfg, log=lambda _: None)
        train = read_examples(cfg, inputs.data_dir, "en-US", "train")
        encoder, tokenizer = load_backbone(str(inputs.backbone_path))
        torch.manual_seed(0)
        task = make_task(cfg, task_labels(cfg, train), tokenizer)
        model = task.build_model(encoder)
        with torch.no_grad():  # a random prompt and head that tell rows apart (a fresh head may not)
            for name, param in model.named_parameters():
                if param.requires_grad and not name.startswith("encoder."):
                    param.normal_(0.0, 0.5)
        return cfg, Path(inputs.data_dir), task, model

    return make


@pytest.mark.parametrize("locale", ["en-US", "de-DE"])
def test_vanilla_predictions_are_those_of_file_order(build, locale):
    cfg, data_dir, task, model = build("vanilla", "pt", "{kind: layer, length: 4}")
    split = task.encode(read_examples(cfg, data_dir, locale, "test"))
    cpu = torch.device("cpu")
    with torch.no_grad(), eval_mode(model):
        file_order = torch.cat([model(b.input_ids, b.attention_mask)
                                for b in iter_batches(split.encoded, 64, shuffle=None, device=cpu)])
        by_length = torch.empty_like(file_order)
        lengths = [len(ids) for ids in split.encoded.input_ids]
        for indices in length_batches(lengths, 64):
            batch = collate(split.encoded, indices, cpu)
            by_length[indices] = model(batch.input_ids, batch.attention_mask)
    # Rows differ from each other, so a row put back in the wrong place would show.
    assert (file_order - file_order.mean(0)).abs().max() > 1e-3
    torch.testing.assert_close(by_length, file_order, atol=1e-5, rtol=1e-5)
    result = task.evaluate(model, split, 64, cpu)
    assert [row["predicted"] for row in result.rows] == [task.intents[i] for i in file_order.argmax(-1).tolist()]
    assert [row["id"] for row in result.rows] == [row.id for row in split.rows]


def test_slot_predictions_are_those_of_file_order(build):
    cfg, data_dir, task, model = build("slot", "ft", "{kind: none}")
    split = task.encode(read_examples(cfg, data_dir, "en-US", "test"))
    ordered = task.predict(model, split, 64, torch.device("cpu"))
    # File order, one batch at a time, with the task's own collation and word mapping.
    size = len(split)
    one_by_one = [task.predict(model, _subset(split, [i]), 1, torch.device("cpu"))[0] for i in range(0, size, 7)]
    assert [ordered[i] for i in range(0, size, 7)] == one_by_one
    assert len(ordered) == size and all(len(p) == len(w) for p, w in zip(ordered, split.words))
    assert len({label for row in ordered for label in row}) > 1  # one label everywhere would prove nothing


def _subset(split, indices):
    from dataclasses import fields, replace

    return replace(split, **{f.name: [getattr(split, f.name)[i] for i in indices] for f in fields(split)})
