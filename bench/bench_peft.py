"""Against the peer: PEFT's prompt tuning vs xsweep's input and layer prompts, training examples/s.

    .venv/bin/python -m bench.bench_peft [--threads 2] [--steps 20] [--repeats 2] [--quick]
                                         [--out results.json]

All on the real multilingual encoder intfloat/multilingual-e5-small (BERT architecture, 12 layers,
XLM-R's 250k vocabulary, frozen; built into the Hugging Face cache by
../shared/tools/multilingual_e5.py), MASSIVE en-US training rows, the same batches (same rows, same
order, batch 32), prompts of 16, AdamW, dropout on, same threads:

- baseline, PEFT input prompt tuning: `get_peft_model(BertForSequenceClassification,
  PromptTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=16))`; the batches are padded once before
  timing and handed to the PEFT model as tensors (PEFT prepends the virtual tokens and extends the mask);
- PEFT prefix tuning (`PrefixTuningConfig`, key/value prefixes per layer like xsweep's layer
  prompt): run if PEFT supports it on this transformers version, and the failure recorded if not;
- xsweep input prompt (`prompt.kind: input`) and layer prompt (`prompt.kind: layer`): the real
  downstream path (`IntentTask` batches padded per step, `PromptedModel`, the loop's schedule), as
  bench/bench_step.py times it.

The heads differ slightly (PEFT: BERT's frozen pooler on the first position, then a trainable
linear layer; e5 has no pooler weights, so PEFT's is freshly initialised; xsweep: a trainable
dense-tanh-linear head on `[CLS]`), which costs next to nothing
beside the encoder. What differs in meaning: PEFT's prompt tokens come first, so BERT's pooler
reads a virtual token, not `[CLS]`; xsweep's input prompt goes after `[CLS]` (models/prompts.py).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

TITLE = "Prompt tuning: xsweep vs PEFT"
BACKBONE = "intfloat/multilingual-e5-small"
COMMAND = ".venv/bin/python -m bench.bench_peft"
LENGTH = 16


def peft_loop(model, batches, steps: int, warmup: int):
    from bench.bench_step import timed_steps

    return timed_steps(model, batches, steps, warmup,
                       lambda ids, mask, labels: model(input_ids=ids, attention_mask=mask, labels=labels).loss)


def peft_model(path: str, num_labels: int, kind: str):
    import peft
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the load report lists the new classifier: expected
    base = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    if kind == "input":
        config = peft.PromptTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=LENGTH,
                                         prompt_tuning_init=peft.PromptTuningInit.RANDOM)
    else:
        config = peft.PrefixTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=LENGTH)
    return peft.get_peft_model(base, config)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per implementation; best kept")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="8 steps, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 8, 1

    import transformers

    try:
        import peft
    except ImportError:  # `make bench` without the bench extra: time xsweep's prompts, say what is missing
        peft = None
    from bench.bench_step import backbone_path, experiment, intents, machine, massive_rows, xsweep_loop
    from xsweep.models.backbone import load_backbone
    from xsweep.train.batches import batch_order, pad
    from xsweep.train.tasks import IntentTask

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # built into the cache, never downloaded
    torch.set_num_threads(args.threads)
    path = backbone_path(BACKBONE)
    encoder, tokenizer = load_backbone(path)
    labels = intents()
    rows = massive_rows("train")
    runs, failures = {}, {}
    for kind in ("input", "layer"):
        task = IntentTask(experiment(prompt_kind=kind, batch_size=args.batch_size), labels, tokenizer)
        split = task.encode(rows)
        torch.manual_seed(0)
        runs[f"xsweep_{kind}"] = xsweep_loop(task, task.build_model(encoder), split, args.batch_size, args.steps,
                                             args.warmup)
    order = torch.Generator().manual_seed(0)  # the batches the xsweep loops draw, padded up front
    batches = []
    for _, ix in zip(range(args.warmup + args.steps), batch_order(len(split), args.batch_size, order)):
        ids, mask = pad([split.encoded.input_ids[i] for i in ix], split.encoded.pad_id)
        batches.append((ids, mask, split.encoded.labels[ix]))
    for kind in ("input", "layer"):
        name = f"peft_{kind}"
        if peft is None:
            failures[name] = "peft is not installed: pip install -e '.[bench]'"
            continue
        try:
            torch.manual_seed(0)
            run = peft_loop(peft_model(path, len(labels), kind), batches, 1, 0)
            run()  # one step: does PEFT's method work on this transformers version at all?
            runs[name] = peft_loop(peft_model(path, len(labels), kind), batches, args.steps, args.warmup)
        except Exception as exc:  # noqa: BLE001 - a peer's failure is a result to record
            failures[name] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
            print(f"{name}: failed: {failures[name]}")

    rates = {name: 0.0 for name in runs}
    for _ in range(args.repeats):  # alternating, so load changes hit every implementation alike
        for name, run in runs.items():
            rates[name] = max(rates[name], run())
    base = rates.get("peft_input")
    result = {"backbone": BACKBONE, "prompt_length": LENGTH, "batch_size": args.batch_size,
              "threads": args.threads, "steps": args.steps, "repeats": args.repeats,
              "examples_per_s": {k: round(v, 1) for k, v in rates.items()}, "failures": failures,
              "peft": peft.__version__ if peft else "not installed", "transformers": transformers.__version__,
              "torch": torch.__version__,
              "machine": machine()}
    if base:
        result["ratio_vs_peft_input"] = {k: round(v / base, 3) for k, v in rates.items()}
    for name, rate in rates.items():
        ratio = f"  {rate / base:.2f}x PEFT input" if base else ""
        print(f"{name:14s} {rate:8.1f} examples/s{ratio}")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    labels = {"peft_input": "baseline: PEFT `PromptTuningConfig` (input, virtual tokens first)",
              "peft_layer": "PEFT `PrefixTuningConfig` (per-layer key/value prefixes)",
              "xsweep_input": "xsweep `prompt.kind: input` (after `[CLS]`)",
              "xsweep_layer": "xsweep `prompt.kind: layer`"}
    ratios = result.get("ratio_vs_peft_input", {})
    lines = [
        written_by(command), "",
        f"Training examples/s, `{result['backbone']}` frozen, prompts of {result['prompt_length']}, MASSIVE en-US, batch "
        f"{result['batch_size']}, {result['threads']} threads, the same batches for all; best of {result['repeats']} "
        f"alternating runs of {result['steps']} steps. peft {result['peft']}, transformers {result['transformers']}, "
        f"torch {result['torch']}.", "",
        "| implementation | examples/s | ratio to PEFT input prompt tuning |", "|---|---|---|",
    ]
    for name, label in labels.items():
        if name in result["examples_per_s"]:
            ratio = f"{ratios[name]:.2f}" if name in ratios else "-"
            lines.append(f"| {label} | {result['examples_per_s'][name]:.1f} | {ratio} |")
        elif name in result["failures"]:
            lines.append(f"| {label} | failed: `{result['failures'][name]}` | - |")
    lines += ["", "Other jobs shared the two cores; compare the ratios.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:])))
    print(f"wrote {RESULTS}")
