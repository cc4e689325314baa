"""Evaluation, NLI scoring and FT training on a real multilingual encoder, fp32 against bf16.

    .venv/bin/python -m bench.bench_precision_eval [--eval-utterances 300] [--nli-utterances 40] [--threads 2]

Everything runs through the shipped code on intfloat/multilingual-e5-small and real MASSIVE en-US:

- evaluation: a vanilla PT trial (layer prompt 16, 15 shots, 3 epochs, fp32) is trained by
  `run_downstream`; its saved best checkpoint is then tested by `evaluate_saved_trial` (what the
  evaluation stage runs) once with `optim.precision: fp32` and once with `bf16`, on a stratified
  subset of the en-US test (`data.max_test_examples_per_locale`). Utterances/s is the subset over
  the time inside `IntentTask.evaluate`; the predictions files of the two runs are compared row by row.
- NLI scoring: the same with the NLI head (each utterance against all 60 intents' hypotheses):
  pairs/s over the time inside `NliTask.evaluate`, and differing predictions.
- FT: one epoch of full fine-tuning (2 shots: 120 utterances, batch 16) per precision through
  `run_downstream`; examples/s from the first training batch to the trial's return, minus the time
  in `evaluate` (as bench/bench_precision.py times PT).

bf16 is the ratio's numerator; fp32 (today's default on CPU) is the baseline, measured in the same
run. No target: the issue asks for these figures to be reported.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.bench_precision import BACKBONE, instrumented, massive_folder, timed

TITLE = "Evaluation, NLI scoring and FT on multilingual-e5-small: bf16 vs fp32"
COMMAND = ".venv/bin/python -m bench.bench_precision_eval"
PRECISIONS = ("fp32", "bf16")
PT_EPOCHS = 3
"""Epochs of the (fp32) PT trials whose checkpoints are tested: enough to predict far above chance."""


def experiment(head: str, method: str, args, precision: str = "fp32") -> dict:
    ft = method == "ft"
    return {"name": f"bench_{method}_{head}", "method": method,
            "backbone": {"name": BACKBONE, "pooling": "mean", "dropout": False},
            "data": {"path": massive_folder(), "shots": 2 if ft else 15, "eval_locales": ["en-US"],
                     "max_dev_examples": 60 if ft else 120,
                     "max_test_examples_per_locale": 60 if ft else args.nli_utterances if head == "nli"
                     else args.eval_utterances},
            "prompt": {"kind": "none"} if ft else {"kind": "layer", "length": 16, "shift_positions": False},
            "head": {"kind": head},
            "optim": {"epochs": 1 if ft else PT_EPOCHS, "batch_size": 16 if ft else 32, "precision": precision, "patience": 1,
                      "lr": 2e-5 if ft else 1e-2},
            "sweep": {"grid": {"optim.lr": [2e-5 if ft else 1e-2]}, "seeds": [0]}}


def plan(config: dict, root: Path):
    from xsweep.config import from_dict
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.runner import plan_trials

    cfg = from_dict(config, source=config["name"])
    spec, = plan_trials(cfg, root / config["name"], prepare_inputs(cfg, log=lambda _: None))
    return spec


def evaluation(head: str, args, root: Path) -> dict:
    """Train one PT trial (fp32), then test its checkpoint at each precision through the stage's code."""
    import dataclasses

    from xsweep.train.downstream import run_downstream
    from xsweep.train.evaluate import evaluate_saved_trial
    from xsweep.train.tasks.intent import IntentTask
    from xsweep.train.tasks.nli import NliTask

    spec = plan(experiment(head, "pt", args), root)
    record = run_downstream(spec)
    if record.status != "completed":
        raise RuntimeError(f"{head} PT trial ended {record.status}: {record.error}")
    predictions = Path(spec.trial_dir) / "predictions" / "en-US.jsonl"
    task_class = NliTask if head == "nli" else IntentTask
    out = {}
    for precision in PRECISIONS:
        config = json.loads(json.dumps(spec.config))
        config["optim"]["precision"] = precision
        with timed(task_class, "evaluate") as clock:
            scores = evaluate_saved_trial(dataclasses.replace(spec, config=config), ["en-US"], update_record=False)
        rows = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
        out[precision] = {"seconds": round(clock["s"], 3), "score": scores["en-US"],
                          "predicted": [row["predicted"] for row in rows], "utterances": len(rows)}
        print(f"{head} eval {precision}: {len(rows)} utterances in {clock['s']:.1f} s, "
              f"accuracy {scores['en-US']:.4f}", flush=True)
    differ = sum(a != b for a, b in zip(out["fp32"]["predicted"], out["bf16"]["predicted"]))
    for precision in PRECISIONS:
        del out[precision]["predicted"]
    candidates = 60 if head == "nli" else 1
    return {"per_precision": out, "differ": differ, "utterances": out["fp32"]["utterances"],
            "pairs": out["fp32"]["utterances"] * candidates}


def fine_tuning(args, root: Path) -> dict:
    from xsweep.train.downstream import run_downstream
    from xsweep.train.tasks.intent import IntentTask

    out = {}
    for precision in PRECISIONS:
        spec = plan(experiment("vanilla", "ft", args, precision), root / precision)
        with instrumented(IntentTask) as clock:
            record = run_downstream(spec)
            end = time.perf_counter()
        if record.status != "completed" or record.precision != precision:
            raise RuntimeError(f"FT {precision} ended {record.status}: {record.error}")
        train_s = end - clock["first_batch"] - clock["evaluate"]["s"]
        out[precision] = {"examples": clock["rows"], "train_s": round(train_s, 2),
                          "examples_per_s": round(clock["rows"] / train_s, 2)}
        print(f"FT {precision}: {clock['rows']} rows in {train_s:.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-utterances", type=int, default=300, help="en-US test subset, vanilla head")
    parser.add_argument("--nli-utterances", type=int, default=40, help="en-US test subset, NLI head (x 60 pairs)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_precision_eval_") as tmp:
        result = {"vanilla": evaluation("vanilla", args, Path(tmp)), "nli": evaluation("nli", args, Path(tmp)),
                  "ft": fine_tuning(args, Path(tmp))}
    from bench.run import machine

    result.update(capability=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__,
                  threads=args.threads, machine=machine(), wall_s=round(time.perf_counter() - started, 1))
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    lines = [
        written_by(command), "",
        f"`{BACKBONE}` read as the pilots chose (docs/pilots/e5_reading.md: mean pooling, no prefix, "
        "unshifted positions, no backbone dropout), real MASSIVE en-US; "
        f"torch {result['torch']}, {result['threads']} threads, CPU capability `{result['capability']}`. "
        f"Evaluation and NLI scoring: one PT trial (layer prompt 16, 15 shots, {PT_EPOCHS} epochs, fp32) tested from its "
        "saved checkpoint by `evaluate_saved_trial` at each precision, timed inside the task's `evaluate`; "
        "FT: one epoch of 2 shots (120 utterances, batch 16) through `run_downstream`, timed from the first "
        f"training batch minus dev evaluation. Whole benchmark: {result['wall_s']:.0f} s.", "",
        "| what | fp32 | bf16 | bf16 / fp32 | predictions that differ |",
        "|---|---|---|---|---|",
    ]
    for head, unit, count in (("vanilla", "utterances/s", "utterances"), ("nli", "pairs/s", "pairs")):
        r = result[head]
        rates = {p: r[count] / r["per_precision"][p]["seconds"] for p in PRECISIONS}
        name = "evaluation, vanilla head" if head == "vanilla" else "NLI scoring (60 hypotheses an utterance)"
        lines.append(f"| {name} ({r['utterances']} utterances) | {rates['fp32']:.1f} {unit} | "
                     f"{rates['bf16']:.1f} {unit} | {rates['bf16'] / rates['fp32']:.2f}x | "
                     f"{r['differ']} of {r['utterances']} (accuracy {100 * r['per_precision']['fp32']['score']:.1f} vs "
                     f"{100 * r['per_precision']['bf16']['score']:.1f}) |")
    ft = result["ft"]
    lines.append(f"| FT training ({ft['fp32']['examples']} examples) | {ft['fp32']['examples_per_s']:.1f} examples/s | "
                 f"{ft['bf16']['examples_per_s']:.1f} examples/s | "
                 f"{ft['bf16']['examples_per_s'] / ft['fp32']['examples_per_s']:.2f}x | - |")
    lines += ["", f"On this CPU torch dispatches to `{result['capability']}` kernels: without AVX512-BF16 or AMX "
              "units bf16 computes slower than fp32 (bench_precision's profile), so these ratios say what bf16 "
              "costs here, not what it gains on a GPU (`python -m bench.gpu_check`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:]), f"{COMMAND} {' '.join(sys.argv[1:])}".rstrip()))
    print(f"wrote {RESULTS}")
