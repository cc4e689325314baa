"""Tatoeba retrieval of aligned prompts: the paper's table of retrieval accuracy against prompt length.

Each finished alignment stage is scored on Tatoeba (as in XTREME): the `<s>` state of every
non-English sentence looks for its nearest English sentence by cosine, with the aligned prompt and
with no prompt, and the accuracy is the fraction that find their own translation. Scores are
kept beside the stage (`retrieval.json`), so a reused stage is not scored again, and the run's
`results/retrieval.md` puts every language in a row and every prompt in a column.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Callable

import torch

from xsweep.atomic import write_json, write_text
from xsweep.config import ExperimentConfig
from xsweep.sweep.stages import AlignStage

RESULT_FILE = "retrieval.json"
BATCH = 128
Log = Callable[[str], None]


def retrieval_folder(cfg: ExperimentConfig, demo_dir: Path | None) -> Path:
    if cfg.align.retrieval == "demo":
        return Path(demo_dir) / "tatoeba"
    return Path(cfg.align.retrieval)


def score_stage(stage: AlignStage, folder: Path, languages: list[str], max_len: int) -> dict[str, dict]:
    """{iso3: {"aligned": accuracy, "no_prompt": accuracy, "pairs": n}} for one aligned prompt."""
    from xsweep.data.tatoeba import read_tatoeba
    from xsweep.metrics import retrieval_accuracy
    from xsweep.models.prompted import build_intent_model, load_prompt_for_apt
    from xsweep.models.prompts import encode
    from xsweep.sweep.hosting import cached_backbone

    spec = stage.spec
    # Every stage of a sweep shares its frozen backbone: loaded once, not once per prompt length.
    encoder, tokenizer = cached_backbone(spec.backbone_path, attn_implementation=spec.backbone.attn_implementation)
    model = build_intent_model(encoder, method="apt", prompt_kind=spec.prompt.kind, prompt_length=spec.prompt.length,
                               num_labels=1, shift_positions=spec.prompt.shift_positions,
                               reparam_hidden=spec.prompt.reparam_hidden)
    load_prompt_for_apt(model, stage.output_dir)
    model.eval()

    @torch.no_grad()
    def first_states(prompt, texts: list[str]) -> torch.Tensor:
        states = []
        for start in range(0, len(texts), BATCH):
            enc = tokenizer(texts[start:start + BATCH], padding=True, truncation=True, max_length=max_len,
                            return_tensors="pt")
            states.append(encode(encoder, prompt, enc["input_ids"], enc["attention_mask"])[:, 0])
        return torch.cat(states)

    scores = {}
    for iso3 in languages:
        pairs = read_tatoeba(folder, iso3)
        scores[iso3] = {
            "aligned": retrieval_accuracy(first_states(model.prompt, pairs.sentences),
                                          first_states(model.prompt, pairs.english)),
            "no_prompt": retrieval_accuracy(first_states(None, pairs.sentences), first_states(None, pairs.english)),
            "pairs": len(pairs.sentences),
        }
    return scores


def run_retrieval(stages: list[AlignStage], cfg: ExperimentConfig, run_dir: Path, *, demo_dir: Path | None,
                  log: Log = print) -> Path:
    """Score every stage not yet scored, then write `results/retrieval.md`; returns its path."""
    from xsweep.data.tatoeba import available_tatoeba

    folder = retrieval_folder(cfg, demo_dir)
    found = available_tatoeba(folder)
    wanted = found if cfg.align.retrieval_languages == "all" else list(cfg.align.retrieval_languages)
    results = {}
    for stage in stages:
        path = stage.output_dir / RESULT_FILE
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        missing = [iso3 for iso3 in wanted if iso3 not in known]
        if missing:
            log(f"retrieval: {stage.describe()} on Tatoeba, {len(missing)} language(s)")
            known.update(score_stage(stage, folder, missing, stage.align.max_seq_len))
            write_json(path, known)
        results[stage.describe()] = {iso3: known[iso3] for iso3 in wanted}
    table = run_dir / "results" / "retrieval.md"
    write_text(table, retrieval_table(results, wanted))
    log(f"retrieval table: {table}")
    return table


def retrieval_table(results: dict[str, dict[str, dict]], languages: list[str]) -> str:
    """Markdown: a row per language, a column per aligned prompt, and no prompt; AVG last."""
    columns = list(results)
    lines = ["Tatoeba retrieval accuracy (%), `<s>` nearest neighbour by cosine, non-English -> English", "",
             "| language | no prompt | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    base = next(iter(results.values()))  # the same backbone for every column: one no-prompt score

    def cell(value: float) -> str:
        return f"{100 * value:.1f}"

    for iso3 in languages:
        lines.append(f"| {iso3} | {cell(base[iso3]['no_prompt'])} | "
                     + " | ".join(cell(results[c][iso3]["aligned"]) for c in columns) + " |")
    mean = lambda values: statistics.fmean(values)  # noqa: E731
    lines.append(f"| AVG | {cell(mean([base[i]['no_prompt'] for i in languages]))} | "
                 + " | ".join(cell(mean([results[c][i]["aligned"] for i in languages])) for c in columns) + " |")
    return "\n".join(lines) + "\n"
