"""Slot filling on CoNLL intent/slot data (data.dataset conll): the slot task with the data set's
own slot names, read from the file's BIO tags, and scored on those BIO spans.

Training is the slot task's (tasks/slot.py): one label per word, `Other` for `O`, the label at each
word's first sub-token. Only the data differ: words and tags come from the token lines, not from
MASSIVE's `[slot : words]` markup, and the gold spans of the score are the file's own BIO tags (two
adjacent spans of one slot stay two spans), with seqeval's micro F1. Intent classification on CoNLL
data needs nothing of its own: the vanilla and NLI tasks read the rows' `utt` and `intent`.
"""

from __future__ import annotations

from typing import Any, Sequence

from seqeval.metrics import f1_score

from xsweep.config import ExperimentConfig
from xsweep.data.conll import ConllExample, slot_names
from xsweep.data.encode import IGNORE, first_subtoken_labels, tokenize_cached
from xsweep.data.massive import OTHER, intent_labels
from xsweep.metrics import to_bio
from xsweep.models.prompted import PromptedModel
from xsweep.train.tasks.protocol import Evaluation
from xsweep.train.tasks.slot import SlotSplit, SlotTask


class ConllSlotTask(SlotTask):
    """SlotTask over CoNLL rows; the label map is `{"task": "conll_slot", ...}`."""

    @staticmethod
    def label_map(cfg: ExperimentConfig, train: Sequence[ConllExample]) -> dict[str, Any]:
        return {"task": "conll_slot", "intents": intent_labels(train), "slots": [OTHER] + slot_names(list(train))}

    def encode(self, rows: Sequence[ConllExample]) -> SlotSplit:
        rows = list(rows)
        words = [list(row.words) for row in rows]
        gold = [[OTHER if label == "O" else label for label in row.slot_labels] for row in rows]
        encoded = tokenize_cached(words, self.tokenizer, "words", self.cfg.data.max_seq_len)
        token_labels = [first_subtoken_labels(ids, [self.index.get(label, IGNORE) for label in labels])
                        for ids, labels in zip(encoded.word_ids, gold)]
        return SlotSplit(rows, words, gold, encoded.input_ids, encoded.word_ids, token_labels)

    def evaluate(self, model: PromptedModel, split: SlotSplit, batch_size: int, device: Any) -> Evaluation:
        predicted = [to_bio(labels) for labels in self.predict(model, split, batch_size, device)]
        gold = [list(row.tags) for row in split.rows]
        score = float(f1_score(gold, predicted))
        rows = [{"id": row.id, "utt": row.utt, "words": words, "gold": list(row.tags), "predicted": pred}
                for row, words, pred in zip(split.rows, split.words, predicted)]
        return Evaluation(score, rows)
