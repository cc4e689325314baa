"""Fused prompt-tuning trials (`train.downstream.run_trials`: K trials of one group, one forward per step)
vs the same K trials one after another (`run_downstream`), in aggregate training examples/s.

    .venv/bin/python -m bench.bench_fused [--members 4] [--backbone builtin:tiny] [--epochs 10]
    .venv/bin/python -m bench.bench_fused --device cuda --shape xlmr-large     (on a GPU machine)

Same data, same trials (K learning rates, one seed, 5 shots, layer prompt of 16, batch 16, the
default dropouts), backbone loaded once before timing (as a reused actor keeps it). No member stops
early (patience = epochs, one dev evaluation at the end), so both modes train the same examples.
Each repeat runs the K trials one after another, then fused; the best repeat of each mode counts.

--shape xlmr-large: a randomly initialised encoder of XLM-R large's shape (24 layers, hidden 1024,
16 heads, FFN 4096; the demo corpus's 4k vocabulary instead of 250k, which a frozen embedding
lookup does not feel), so the GPU measurement needs no download. Expected: ratio ~1.0 on a CPU
(compute-bound: one forward of K x 16 rows costs about K forwards of 16; only per-call overhead is
saved), above 1 on a GPU, where a batch of 16 short utterances leaves most of the device idle.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TITLE_CPU = "Fused prompt-tuning trials (CPU)"
TITLE_GPU = "Fused prompt-tuning trials (GPU)"
COMMAND = ".venv/bin/python -m bench.bench_fused"
GPU_COMMAND = ".venv/bin/python -m bench.bench_fused --device cuda --shape xlmr-large"
EXPERIMENT = """\
name: bench-fused
method: pt
backbone: {{name: "{backbone}"}}
data: {{path: demo, max_seq_len: 48, shots: 5, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 16}}
optim: {{epochs: {epochs}, batch_size: 16, patience: {epochs}, eval_every_epochs: {epochs}}}
sweep: {{grid: {{optim.lr: [{lrs}]}}, seeds: [0]}}
resources: {{cpus_per_trial: 1, gpus_per_trial: {gpus}}}
storage: {{root: {root}}}
"""
XLMR_LARGE = dict(num_hidden_layers=24, hidden_size=1024, num_attention_heads=16, intermediate_size=4096)


def random_xlmr_large(folder: Path) -> Path:
    """Write a random-init encoder of XLM-R large's shape with a tokenizer trained on the demo corpus."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from xsweep.data.massive import read_massive
    from xsweep.models.builtin import MAX_POSITIONS, train_tokenizer
    from xsweep.sweep.prepare import demo_data_dir

    data = demo_data_dir(log=lambda line: print(line, file=sys.stderr)) / "massive" / "1.1" / "data"
    texts = [row.utt for path in sorted(data.glob("*.jsonl")) for row in read_massive(data, path.stem, ["train"])]
    tokenizer = train_tokenizer(texts, vocab_size=4000)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=MAX_POSITIONS, type_vocab_size=1,
                              pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2,
                              layer_norm_eps=1e-5, **XLMR_LARGE)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def examples_trained(specs: list, epochs: int) -> int:
    """Training examples seen by the trials: their few-shot samples, every epoch (none stops early)."""
    return sum(len(json.loads((Path(s.trial_dir) / "few_shot_sample.json").read_text())["ids"]) * epochs
               for s in specs)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4, help="K: trials fused together (K learning rates)")
    parser.add_argument("--backbone", default="builtin:tiny", help="backbone.name (with --shape builtin)")
    parser.add_argument("--shape", choices=["builtin", "xlmr-large"], default="builtin",
                        help="xlmr-large: random weights of XLM-R large's shape instead of --backbone")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU), as cpus_per_trial 1")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)

    import torch

    from xsweep.config import load_config
    from xsweep.models.backbone import load_backbone
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.runner import plan_trials
    from xsweep.train.downstream import run_downstream, run_trials

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    torch.set_num_threads(args.threads)
    lrs = ", ".join(f"{0.01 * (i + 1):.2f}" for i in range(args.members))
    with tempfile.TemporaryDirectory(prefix="xsweep-bench-fused-") as tmp:
        root = Path(tmp)
        backbone = str(random_xlmr_large(root / "xlmr-large")) if args.shape == "xlmr-large" else args.backbone
        config = root / "bench.yaml"
        config.write_text(EXPERIMENT.format(backbone=backbone, epochs=args.epochs, lrs=lrs, root=root / "runs",
                                            gpus=1 if args.device == "cuda" else 0))
        cfg = load_config(config)
        inputs = prepare_inputs(cfg, log=lambda line: print(line, file=sys.stderr))
        encoder, tokenizer = load_backbone(inputs.backbone_path, attn_implementation=cfg.backbone.attn_implementation)

        def kept(*_: Any, **__: Any) -> tuple:
            return encoder, tokenizer

        def one_after_another(specs: list) -> None:
            for spec in specs:
                run_downstream(spec, load_backbone=kept)

        def fused(specs: list) -> None:
            run_trials(specs, load_backbone=kept)

        fused(plan_trials(cfg, root / "warm-up", inputs))  # first-call costs (allocator, kernels) out of timing
        seconds: dict[str, list[float]] = {"one after another": [], "fused": []}
        examples = 0
        for repeat in range(args.repeats):
            for mode, run in (("one after another", one_after_another), ("fused", fused)):
                specs = plan_trials(cfg, root / f"{mode.replace(' ', '-')}-{repeat}", inputs)
                start = time.perf_counter()
                run(specs)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                seconds[mode].append(time.perf_counter() - start)
                examples = examples_trained(specs, args.epochs)
                print(f"repeat {repeat}: {mode:17} {seconds[mode][-1]:7.2f} s, "
                      f"{examples / seconds[mode][-1]:8.1f} training examples/s", flush=True)
    best = {mode: min(s) for mode, s in seconds.items()}
    result = {
        "members": args.members, "backbone": args.backbone if args.shape == "builtin" else "random XLM-R large shape",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} thread(s)",
        "epochs": args.epochs, "examples": examples, "seconds": seconds,
        "examples_per_s": {mode: round(examples / s, 1) for mode, s in best.items()},
        "ratio": round(best["one after another"] / best["fused"], 2), "gpu": args.device == "cuda",
        # Paired by repeat (run back to back), so a load change between repeats cancels out.
        "median_paired_ratio": round(statistics.median(a / f for a, f in zip(seconds["one after another"],
                                                                            seconds["fused"])), 2),
    }
    print(f"fused / one after another: {result['ratio']:.2f}x training examples/s (best of each), "
          f"{result['median_paired_ratio']:.2f}x (median of the repeats' ratios) "
          f"({args.members} trials, {examples} training examples, {result['device']})")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


def section(result: dict, command: str = COMMAND) -> str:
    """This benchmark's section of bench/RESULTS.md (the CPU or the GPU one, as measured)."""
    from bench.run import written_by

    k, rate = result["members"], result["examples_per_s"]
    return "\n".join([
        written_by(command),
        "",
        f"{k} prompt-tuning trials of one group (backbone {result['backbone']}, {result['device']}; layer prompt "
        f"of 16, 5 shots, batch 16, {result['epochs']} epochs, no early stop), {result['examples']:,} training "
        "examples in all; wall time of the trials with the backbone already loaded, best of "
        f"{len(result['seconds']['fused'])} repeats.",
        "",
        "| mode | wall (s) | training examples/s |",
        "|---|---|---|",
        f"| one after another (`run_downstream` x {k}) | {min(result['seconds']['one after another']):.2f} "
        f"| {rate['one after another']:.1f} |",
        f"| fused (`run_trials`, one forward of {k} x 16 rows per step) | {min(result['seconds']['fused']):.2f} "
        f"| {rate['fused']:.1f} |",
        "",
        f"Ratio: fused runs at {result['ratio']:.2f}x the examples/s of one after another (best of each mode; "
        f"median of the {len(result['seconds']['fused'])} back-to-back pairs' ratios: "
        f"{result['median_paired_ratio']:.2f}x)."
        + ("" if result["gpu"] else " On a CPU (compute-bound) fusion does the same arithmetic (plus ~7% padding: "
           "rows are padded to the longest of K x 16, not of 16), so it can gain only what one call instead of K "
           "saves in per-call overhead, a visible share with a model this small; its real gain is for GPUs. "
           "Measured while other jobs shared the two cores."),
        "",
    ])


GPU_NOT_MEASURED = "\n".join([
    "Not measured yet: no GPU was available in the session that wrote the fused trials (2026-11-24).",
    f"On a GPU machine: `{GPU_COMMAND}` (random weights of XLM-R large's shape, 4 trials fused vs one "
    "after another) rewrites this section.",
    "",
])


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    argv = sys.argv[1:]
    outcome = main(argv)
    command = " ".join([COMMAND, *argv])
    update_section(TITLE_GPU if outcome["gpu"] else TITLE_CPU, section(outcome, command))
    print(f"wrote {RESULTS}")
