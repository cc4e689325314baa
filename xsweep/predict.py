"""Run a trial's saved prompt and head on new utterances (`xsweep predict`).

A trial directory holds everything needed: `record.json` (the resolved config), `labels.json`
(the intent order of the head) and `best/` (prompt and head as safetensors). The backbone comes
from the run's `manifest.json`, which names the exact directory the trial was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from xsweep.config import from_dict
from xsweep.errors import XsweepError
from xsweep.record import RECORD_FILE, read_record


@dataclass
class Prediction:
    utterance: str
    intent: str
    probability: float
    """Softmax probability of the predicted intent."""


def _trial_files(trial_dir: Path) -> tuple[Path, Path, Path]:
    record, labels, best = trial_dir / RECORD_FILE, trial_dir / "labels.json", trial_dir / "best"
    for path in (record, labels, best):
        if not path.exists():
            raise XsweepError(f"{path.name} is missing from {str(trial_dir)!r}", where=str(trial_dir),
                              fix="pass a completed trial directory, e.g. runs/quickstart/trials/<trial id>")
    return record, labels, best


def backbone_of_run(trial_dir: Path) -> str:
    """The backbone directory (or hub id) the trial's run was trained on, from its manifest."""
    manifest = trial_dir.parent.parent / "manifest.json"
    if not manifest.is_file():
        raise XsweepError(f"no manifest.json in the run directory {str(manifest.parent)!r}",
                          where=str(trial_dir), fix="pass a trial directory inside a run written by `xsweep run`")
    return json.loads(manifest.read_text(encoding="utf-8"))["backbone"]["path"]


def load_predictor(trial_dir: Path, device: str = "cpu"):
    """(model in eval mode, tokenizer, intent labels, max_seq_len) of a completed trial."""
    from xsweep.models.backbone import load_backbone
    from xsweep.models.prompted import build_intent_model, load_trainable

    trial_dir = Path(trial_dir)
    record_path, labels_path, best = _trial_files(trial_dir)
    record = read_record(record_path)
    if record.status != "completed":
        raise XsweepError(f"trial {record.trial_id} ended as {record.status!r}, it has no model to run",
                          where=str(trial_dir), fix="pick a completed trial (see the run's results.md)")
    cfg = from_dict(record.config, source=str(record_path))
    labels = json.loads(labels_path.read_text(encoding="utf-8"))["intents"]
    encoder, tokenizer = load_backbone(backbone_of_run(trial_dir),
                                       attn_implementation=cfg.backbone.attn_implementation)
    model = build_intent_model(
        encoder, method=cfg.method, prompt_kind=cfg.prompt.kind, prompt_length=cfg.prompt.length,
        num_labels=len(labels), prompt_dropout=cfg.prompt.dropout, head_dropout=cfg.head.dropout,
        backbone_dropout=cfg.backbone.dropout, shift_positions=cfg.prompt.shift_positions,
        reparam_hidden=cfg.prompt.reparam_hidden)
    load_trainable(model, best)
    return model.to(device).eval(), tokenizer, labels, cfg.data.max_seq_len


@torch.no_grad()
def predict_intents(trial_dir: Path, utterances: list[str], device: str = "cpu") -> list[Prediction]:
    if not utterances:
        raise XsweepError("no utterances to classify", fix="pass utterances as arguments or one per line on stdin")
    model, tokenizer, labels, max_seq_len = load_predictor(trial_dir, device)
    batch = tokenizer(utterances, truncation=True, max_length=max_seq_len, padding=True, return_tensors="pt")
    probs = model(batch["input_ids"].to(device), batch["attention_mask"].to(device)).softmax(-1).cpu()
    best = probs.argmax(-1)
    return [Prediction(utt, labels[i], probs[row, i].item()) for row, (utt, i) in enumerate(zip(utterances, best.tolist()))]
