"""Run a trial's saved prompt and head on new utterances (`xsweep predict`), for every head.

A trial directory holds everything needed: `record.json` (the resolved config), `labels.json`
(the task and its label maps) and `best/` (prompt and head as safetensors). The backbone comes
from the run's `manifest.json`, which names the exact directory the trial was trained on. A trial
of a bucket run is named by its URI (`s3://.../<run>/trials/<trial id>`): `pulled_trial` copies
those files, and the run's manifest, into a temporary folder laid out as the run.

The model is built by the trial's own task (`train.tasks.make_task`, switched on
`labels.json["task"]`) and run through that task's prediction code, so `predict` computes what
the trial's evaluation computed:
- vanilla: softmax over all intents; the argmax and its probability.
- nli: every intent's hypothesis against the utterance; the intent with the highest entailment
  probability over ALL intents (no threshold, as MASSIVE evaluation).
- sgd: the NLI model against every intent description of the services it was trained on (a bare
  utterance names no service); out of scope (`intent` None) when no entailment passes 0.5.
- slot: the utterance's words (split as in training: whitespace, or characters for ja-JP, zh-CN
  and zh-TW in the trial's training locale) with their BIO tags.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from xsweep.config import ExperimentConfig, from_dict
from xsweep.errors import XsweepError
from xsweep.record import RECORD_FILE, read_record
from xsweep.storage import Mirror, access_error, check_bucket, display, exists, is_uri, join, listing, read_bytes
from xsweep.sweep.workers import TRAIN_RUN_DIR
from xsweep.train.checkpoint import CHECKPOINT_FILE


@dataclass
class Prediction:
    utterance: str
    intent: str | None = None
    """Predicted intent (vanilla, nli, sgd); None for slot trials and for SGD's out of scope."""
    probability: float | None = None
    """Softmax probability (vanilla) or entailment probability (nli, sgd) of the best intent."""
    words: list[str] | None = None
    """Slot trials: the utterance's words."""
    tags: list[str] | None = None
    """Slot trials: one BIO tag per word (`O`, `B-date`, `I-date`, ...)."""


OUT_OF_SCOPE_NAME = "OUT_OF_SCOPE"
"""What `format_prediction` prints for an SGD utterance no intent passes the threshold for."""


def format_prediction(prediction: Prediction) -> str:
    """One tab-separated output line: `intent<TAB>probability<TAB>utterance`, or for slots
    `word/TAG word/TAG ...`."""
    if prediction.tags is not None:
        return " ".join(f"{word}/{tag}" for word, tag in zip(prediction.words or [], prediction.tags))
    return (f"{prediction.intent or OUT_OF_SCOPE_NAME}\t{prediction.probability:.3f}\t"
            f"{prediction.utterance}")


def _trial_files(trial_dir: Path) -> tuple[Path, Path, Path]:
    record, labels, best = trial_dir / RECORD_FILE, trial_dir / "labels.json", trial_dir / "best"
    for path in (record, labels, best):
        if not path.exists():
            raise XsweepError(f"{path.name} is missing from {str(trial_dir)!r}", where=str(trial_dir),
                              fix="pass a completed trial directory, e.g. runs/quickstart/trials/<trial id>")
    return record, labels, best


TRIAL_URI_HELP = "pass a completed trial of a bucket run, <storage.root>/<run name>/trials/<trial id>"


@contextmanager
def pulled_trial(location: str | Path) -> Iterator[Path]:
    """A trial directory named by its path (itself), or by its URI in a bucket run: its record,
    labels and best prompt and head, with the run's manifest.json, are pulled into a temporary
    folder laid out as the run (removed afterwards). Errors about the copy name the URI."""
    if not is_uri(location):
        yield Path(location)
        return
    uri = str(location)
    head, sep, query = uri.partition("?")
    run_head, trials, trial_id = (head.rstrip("/").rsplit("/", 2) + ["", ""])[:3]
    if trials != "trials" or not trial_id:
        raise XsweepError("not a trial's URI", where=uri, fix=TRIAL_URI_HELP)
    check_bucket(uri, where=uri, write=False)
    run_uri = run_head + sep + query
    manifest_uri = join(run_uri, "manifest.json")
    try:
        present = set(listing(uri))
        manifest = read_bytes(manifest_uri) if present and exists(manifest_uri) else b""
    except OSError as exc:
        raise access_error(display(uri), "read", exc, uri) from None
    missing = [name for name in (RECORD_FILE, "labels.json", "best/") if not any(
        rel == name or rel.startswith(name) for rel in present)] + ([] if manifest else ["the run's manifest.json"])
    if missing:
        raise XsweepError(f"no completed trial here: {', '.join(missing)} missing", where=uri, fix=TRIAL_URI_HELP)
    with tempfile.TemporaryDirectory(prefix="xsweep-predict-") as folder:
        run = Path(folder) / run_head.rsplit("/", 1)[-1]
        trial = run / "trials" / trial_id
        Mirror(uri, trial).pull(skip=("predictions", CHECKPOINT_FILE, TRAIN_RUN_DIR))
        (run / "manifest.json").write_bytes(manifest)
        try:
            yield trial
        except XsweepError as exc:
            if exc.where != str(trial):
                raise
            raise XsweepError(exc.what.replace(str(trial), display(uri)), where=display(uri), fix=exc.fix) from None


def backbone_of_run(trial_dir: Path) -> str:
    """The backbone directory (or hub id) the trial's run was trained on, from its manifest."""
    manifest = trial_dir.parent.parent / "manifest.json"
    if not manifest.is_file():
        raise XsweepError(f"no manifest.json in the run directory {str(manifest.parent)!r}",
                          where=str(trial_dir), fix="pass a trial directory inside a run written by `xsweep run`")
    return json.loads(manifest.read_text(encoding="utf-8"))["backbone"]["path"]


@dataclass
class Predictor:
    """A completed trial's task and model, ready to run."""

    cfg: ExperimentConfig
    labels: dict[str, Any]
    task: Any
    """The trial's task (train.tasks.Task), built from `labels.json`."""
    model: torch.nn.Module
    """In eval mode, on `device`."""
    tokenizer: Any
    device: torch.device


def load_predictor(trial_dir: Path, device: str = "cpu") -> Predictor:
    """The task and trained model of a completed trial (model in eval mode)."""
    from xsweep.models.backbone import load_backbone
    from xsweep.models.prompted import load_trainable
    from xsweep.train.tasks import make_task

    trial_dir = Path(trial_dir)
    record_path, labels_path, best = _trial_files(trial_dir)
    record = read_record(record_path)
    if record.status != "completed":
        raise XsweepError(f"trial {record.trial_id} ended as {record.status!r}, it has no model to run",
                          where=str(trial_dir), fix="pick a completed trial (see the run's results.md)")
    cfg = from_dict(record.config, source=str(record_path))
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    labels.setdefault("task", cfg.head.kind)  # trials written before labels.json named its task
    encoder, tokenizer = load_backbone(backbone_of_run(trial_dir),
                                       attn_implementation=cfg.backbone.attn_implementation)
    task = make_task(cfg, labels, tokenizer)
    model = task.build_model(encoder)
    load_trainable(model, best)
    torch_device = torch.device(device)
    return Predictor(cfg, labels, task, model.to(torch_device).eval(), tokenizer, torch_device)


def _rows(utterances: list[str], locale: str, *, markup: bool = False) -> list[Any]:
    """Utterances as the MASSIVE rows a task encodes (gold intent unknown: "")."""
    from xsweep.data.massive import MassiveExample

    return [MassiveExample(id=str(i), locale=locale, partition="predict", scenario="", intent="", utt=utt,
                           annot_utt=utt if markup else None) for i, utt in enumerate(utterances)]


@torch.no_grad()
def predict(trial_dir: Path, utterances: list[str], device: str = "cpu") -> list[Prediction]:
    """Predictions of a completed trial for `utterances`, whatever its head (see the module docstring)."""
    if not utterances:
        raise XsweepError("no utterances to classify", fix="pass utterances as arguments or one per line on stdin")
    p = load_predictor(trial_dir, device)
    kind, batch_size = p.labels["task"], p.cfg.optim.eval_batch_size
    locale = p.cfg.data.train_locale
    if kind == "vanilla":
        from xsweep.models.pooling import with_prefix

        batch = p.tokenizer(with_prefix(utterances, p.cfg.backbone.text_prefix), truncation=True,
                            max_length=p.cfg.data.max_seq_len, padding=True, return_tensors="pt")
        probs = p.model(batch["input_ids"].to(p.device), batch["attention_mask"].to(p.device)).softmax(-1).cpu()
        best = probs.argmax(-1).tolist()
        intents = p.labels["intents"]
        return [Prediction(utt, intents[i], probs[row, i].item()) for row, (utt, i) in enumerate(zip(utterances, best))]
    if kind == "nli":
        from xsweep.objectives.nli import nli_predict

        probs = p.task.entailment(p.model, p.task.encode(_rows(utterances, locale)), batch_size, p.device)
        best = nli_predict(probs).tolist()  # argmax over all intents, no threshold: as the trial scored
        intents = p.labels["intents"]
        return [Prediction(utt, intents[i], probs[row, i].item()) for row, (utt, i) in enumerate(zip(utterances, best))]
    if kind == "sgd":
        return [Prediction(utt, intent, prob) for utt, (intent, prob) in
                zip(utterances, p.task.predict_utterances(p.model, utterances, batch_size, p.device))]
    if kind == "slot":
        from xsweep.metrics import to_bio

        bracketed = next((utt for utt in utterances if "[" in utt or "]" in utt), None)
        if bracketed is not None:  # brackets are MASSIVE's slot markup, which the words are read from
            raise XsweepError(f"utterance {bracketed!r} holds a bracket, which slot prediction cannot split",
                              fix="pass plain text without [ or ]")
        split = p.task.encode(_rows(utterances, locale, markup=True))
        labels = p.task.predict(p.model, split, batch_size, p.device)
        return [Prediction(utt, words=words, tags=to_bio(word_labels))
                for utt, words, word_labels in zip(utterances, split.words, labels)]
    raise XsweepError(f"labels.json names the task {kind!r}, which predict does not know",
                      where=str(trial_dir), fix="use vanilla, nli, sgd or slot trials")


predict_intents = predict
"""The name `xsweep predict` and older callers use."""

__all__ = ["Prediction", "Predictor", "backbone_of_run", "format_prediction", "load_predictor", "predict",
           "predict_intents", "pulled_trial"]
