"""Test evaluation of a trained model on many locales, in a trial and after it.

`evaluate_locales` is what a trial runs at its end with its best prompt and head in memory;
`evaluate_saved_trial` runs the same code later on the saved best checkpoint (`trials/<id>/best/`),
e.g. in a multilingual evaluation stage that scores only the selected learning rate's trials on
every language. Both write one predictions file per locale, `predictions/<locale>.jsonl`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from xsweep.atomic import write_text
from xsweep.config import ExperimentConfig, from_dict
from xsweep.errors import XsweepError
from xsweep.models.backbone import load_backbone
from xsweep.models.precision import autocast, backbone_dtype, resolve_precision
from xsweep.record import RECORD_FILE, read_record, write_record
from xsweep.train.spec import TrialSpec
from xsweep.trial_log import TrialWriter
from xsweep.train.tasks import Task, make_task, read_examples

if TYPE_CHECKING:
    from xsweep.models.prompted import PromptedModel


def trial_device(cfg: ExperimentConfig) -> torch.device:
    return torch.device("cuda" if cfg.resources.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu")


def evaluate_locales(task: Task, model: PromptedModel, data_dir: Path, locales: Sequence[str], trial_dir: Path,
                     batch_size: int, device: torch.device, precision: str = "fp32") -> dict[str, float]:
    """Score `model` on the test partition of each locale; write `trial_dir/predictions/<locale>.jsonl`
    (per-example predictions, for error analysis: which utterances fail, in which language)."""
    scores = {}
    for locale in locales:
        rows = read_examples(task.cfg, Path(data_dir), locale, "test")
        with autocast(precision, device):  # the trial's precision (models/precision.py)
            result = task.evaluate(model, task.encode(rows), batch_size, device)
        write_text(Path(trial_dir) / "predictions" / f"{locale}.jsonl",
                   "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows))
        scores[locale] = result.score
    return scores


def evaluate_saved_trial(spec: TrialSpec, locales: Sequence[str], *, update_record: bool = True,
                         load_backbone: Callable[..., tuple] = load_backbone) -> dict[str, float]:
    """Test scores (locale -> the task's metric) of a finished trial's saved best checkpoint.

    Rebuilds the model from the trial's config and `labels.json` (the encoder through
    `load_backbone`: a process hosting many trials passes its cache), loads `best/`, and writes the
    predictions files. With `update_record` the scores are merged into the trial's `record.json`
    (`test_scores`) and written to its TensorBoard folder as `test/<locale>/<metric>`, as the trial
    itself would have.
    """
    from xsweep.models.prompted import load_trainable

    started = time.perf_counter()
    cfg = from_dict(spec.config, source=f"trial {spec.trial_id}")
    trial_dir = Path(spec.trial_dir)
    best, labels_file = trial_dir / "best", trial_dir / "labels.json"
    if not (best / "trainable.json").is_file() or not labels_file.is_file():
        raise XsweepError(f"trial {spec.trial_id} has no saved best checkpoint to evaluate", where=str(trial_dir),
                          fix="evaluate a trial that completed (its best/ and labels.json exist)")
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    device = trial_device(cfg)
    precision = resolve_precision(cfg.optim.precision, device)
    encoder, tokenizer = load_backbone(spec.backbone_path, attn_implementation=cfg.backbone.attn_implementation,
                                       dtype=backbone_dtype(precision, cfg.method))
    task = make_task(cfg, labels, tokenizer)
    model = task.build_model(encoder)
    load_trainable(model, best)
    model.to(device)
    scores = evaluate_locales(task, model, Path(spec.data_dir), locales, trial_dir, cfg.optim.eval_batch_size,
                              device, precision)
    if update_record:
        record = read_record(trial_dir / RECORD_FILE)
        record.test_scores.update(scores)
        record.metric = task.metric
        record.eval_seconds += time.perf_counter() - started
        write_record(record, trial_dir)
        with TrialWriter(Path(spec.tensorboard_dir)) as writer:
            for locale, score in scores.items():
                writer.scalar(f"test/{locale}/{task.metric}", score, record.best_step or 0)
    return scores


__all__ = ["evaluate_locales", "evaluate_saved_trial", "trial_device"]
