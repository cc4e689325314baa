"""A ready GPU check: prompt-tuning throughput and memory of an XLM-R-large-shaped encoder, in one command.

    python -m bench.gpu_check [--out DIR] [--device cuda|cpu] [--budget-s 270]
    python -m bench.gpu_check --smoke            (tiny shapes on CPU, seconds; what the tests run)

What it measures, on an encoder of XLM-R large's shape (24 layers, hidden 1024, 16 heads, FFN 4096,
vocabulary 250002, 514 positions) built from its config with random weights (nothing downloaded),
each figure through xsweep's own code (models.prompted, models.precision, objectives.nli and the
fused forward `fused_features`):
- training steps of one PT trial (layer prompt of 16, vanilla head over 60 intents, frozen backbone
  kept in the precision's dtype, AdamW on prompt + head): examples/s in fp32, TF32 (fp32 with
  TF32 matmuls; CUDA only) and bf16, at batch 32 and 128;
- fused trials (K = 1, 4, 8 PT trials of 32 rows each in one forward, `sweep.fuse`): examples/s
  and peak memory;
- NLI scoring (forward only: 32 utterances x 60 intent hypotheses, 128 pairs a forward): pairs/s;
- model FLOP utilisation (MFU) of each figure against the device's dense peak, from a table of
  known GPUs ("unknown" for any other device, MIG slices included);
- memory per trial: peak memory of one PT trial's training at batch 32 in bf16.
Every sequence is 32 real tokens (`<s>`, 30 random ids, `</s>`) and every batch is made once, so
data loading is not timed. A step ends with the loss read on the host, as xsweep's loops do
(`loss.item()`), so each timed step is synchronised; warm-up steps are not timed. MFU counts
4 x non-embedding parameters x tokens FLOPs per training example (forward 2, backward 2: with a
frozen backbone no weight gradient is computed) and 2 x non-embedding parameters x tokens per
scored pair; attention scores, the prompt and the head are left out (under 1% at 32 + 16 positions).
A figure that is not a number says why: "n/a" (TF32 and peak memory on a CPU), "unknown" (MFU
without a known peak), "skipped (time budget)", "out of memory"; the exit status is 1 when a
throughput is missing for any reason but "n/a".

It imports torch, transformers and xsweep's ray-free modules only, so it runs on a bare GPU image
(torch and transformers, no ray, datasets, optuna, seqeval, pyarrow, no network). A full run stays
under `--budget-s` (default 270 s): each measurement gets its share of what is left and stops after
the step that uses it up. It prints a table and writes `gpu_check.json` (every figure, the device,
torch/transformers versions, the date) into `--out` (default bench/out/gpu_check, git-ignored).

On a GPU machine: have the CUDA build of torch and transformers (a bare image has them; else
scripts/setup.sh's TORCH_SPEC pattern: `pip install torch==2.13.0 --index-url
https://download.pytorch.org/whl/cu128`, then `pip install transformers`), and from the repository
root (xsweep need not be installed) run `python -m bench.gpu_check --out /tmp/gpu_check`: by its
step counts about a minute on an H100-class GPU (not yet measured), never much over the budget.
`--smoke --device cuda` is a seconds-long check that the GPU path runs at all.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import transformers
from transformers import XLMRobertaConfig, XLMRobertaModel

import xsweep
from xsweep.models.precision import allow_tf32, autocast, backbone_dtype, resolve_precision
from xsweep.models.prompted import build_intent_model, build_nli_model
from xsweep.models.prompts import fused_features
from xsweep.objectives.nli import entailment_probability, nli_predict

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "gpu_check"
MIB = 2**20
NA = "n/a"  # the measurement does not apply to this device (TF32 and peak memory on a CPU)
UNKNOWN = "unknown"  # MFU on a device whose peak is not in PEAK_TFLOPS
SKIPPED = "skipped (time budget)"  # the budget ran out before one timed step
OOM = "out of memory"


@dataclass(frozen=True)
class Shape:
    """The encoder and workload one run measures."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    seq_len: int
    """Real tokens per sequence (utterance or NLI pair), `<s>` and `</s>` included."""
    batches: tuple[int, ...]
    """Training batch sizes measured at every precision."""
    fuse_ks: tuple[int, ...]
    fuse_batch: int
    """Rows of each fused member per step (a PT trial's batch)."""
    intents: int
    nli_utterances: int
    eval_batch: int
    """Pairs per NLI scoring forward (optim.eval_batch_size's default)."""
    warmup_steps: int
    max_steps: int
    max_seconds: float
    """Timed steps of one measurement stop at max_steps or once this much time is spent."""


FULL = Shape(layers=24, hidden=1024, heads=16, intermediate=4096, vocab=250002, max_positions=514, seq_len=32,
             batches=(32, 128), fuse_ks=(1, 4, 8), fuse_batch=32, intents=60, nli_utterances=32, eval_batch=128,
             warmup_steps=3, max_steps=50, max_seconds=20.0)
SMOKE = Shape(layers=2, hidden=64, heads=4, intermediate=128, vocab=1000, max_positions=64, seq_len=8,
              batches=(4, 8), fuse_ks=(1, 4, 8), fuse_batch=4, intents=6, nli_utterances=4, eval_batch=8,
              warmup_steps=1, max_steps=2, max_seconds=2.0)
PROMPT_LENGTH = 16

# Dense (no sparsity) peak TFLOP/s per GPU from NVIDIA's data sheets; first match of the name wins.
PEAK_TFLOPS = [
    (r"H100.*PCIe", {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2}),
    (r"H[12]00.*NVL", {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (r"\bH[12]00\b", {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM
    (r"\bA100\b", {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
    (r"\bL40S\b", {"bf16": 362.1, "tf32": 183.0, "fp32": 91.6}),
    (r"\bL4\b", {"bf16": 121.0, "tf32": 60.0, "fp32": 30.3}),
    (r"\bA10\b", {"bf16": 125.0, "tf32": 62.5, "fp32": 31.2}),
]


def peak_tflops(device: torch.device) -> dict[str, float] | str:
    """The device's dense peak by precision, or UNKNOWN (CPUs, unlisted GPUs, MIG slices)."""
    return peak_for_name(torch.cuda.get_device_name(device)) if device.type == "cuda" else UNKNOWN


def peak_for_name(name: str) -> dict[str, float] | str:
    """Peak TFLOP/s by precision for a CUDA device name ("NVIDIA H100 80GB HBM3"), or UNKNOWN.
    A MIG slice has a fraction of the peak, which its name does not give."""
    if "MIG" in name:
        return UNKNOWN
    return next((peaks for pattern, peaks in PEAK_TFLOPS if re.search(pattern, name, re.IGNORECASE)), UNKNOWN)


class Budget:
    """Wall-clock budget of the whole run; each measurement takes its share of what is left."""

    def __init__(self, seconds: float, measurements: int):
        self.deadline, self.left = time.perf_counter() + seconds, measurements

    def share(self, cap: float) -> float:
        remaining = self.deadline - time.perf_counter()
        self.left = max(self.left - 1, 0)
        return min(cap, remaining / (self.left + 1))

    def over(self) -> bool:
        return time.perf_counter() >= self.deadline


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], float], shape: Shape, budget: Budget, device: torch.device) -> dict | str:
    """Warm-up steps, then timed steps until max_steps or this measurement's share of the budget.
    Returns steps, seconds and peak memory (CUDA), or SKIPPED when not one timed step fits, or OOM."""
    seconds_allowed = budget.share(shape.max_seconds)
    if seconds_allowed <= 0:
        return SKIPPED
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(shape.warmup_steps):
            step()
            if budget.over():  # checked between steps: a step once started runs to its end
                return SKIPPED
        synchronize(device)
        steps, started = 0, time.perf_counter()
        while steps < shape.max_steps:
            step()  # ends by reading the loss (or scores) on the host: a sync point, as in xsweep's loops
            steps += 1
            if time.perf_counter() - started >= seconds_allowed or budget.over():
                break
        synchronize(device)
        seconds = time.perf_counter() - started
    except torch.cuda.OutOfMemoryError:
        return OOM
    peak = torch.cuda.max_memory_allocated(device) / MIB if device.type == "cuda" else NA
    return {"steps": steps, "seconds": round(seconds, 6), "peak_mib": _round(peak)}


def _round(value, digits: int = 1):
    return round(value, digits) if isinstance(value, float) else value


def random_batch(rows: int, shape: Shape, device: torch.device, generator: torch.Generator):
    """(rows, seq_len) ids `<s> w1..w30 </s>` with random words, its all-ones mask, random labels."""
    ids = torch.randint(3, shape.vocab, (rows, shape.seq_len), generator=generator)
    ids[:, 0], ids[:, -1] = 0, 2  # XLM-R's <s> and </s>; 1 is its padding id
    labels = torch.randint(0, shape.intents, (rows,), generator=generator)
    ids = ids.to(device)
    return ids, torch.ones_like(ids), labels.to(device)


def set_backbone_precision(encoder: torch.nn.Module, precision: str) -> None:
    """Keep the frozen backbone in the precision's dtype, as xsweep does for PT; TF32 only for "tf32"."""
    compute = "fp32" if precision == "tf32" else precision
    encoder.to(backbone_dtype(compute, "pt") or torch.float32)
    if encoder.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        if precision == "tf32" and not allow_tf32("fp32", encoder.device):
            raise RuntimeError("xsweep.models.precision.allow_tf32 did not turn TF32 on for fp32 on CUDA")


def train_throughput(encoder, precision: str, batch: int, shape: Shape, budget: Budget, device) -> dict | str:
    """One PT trial's training steps: forward through a layer prompt of 16, cross-entropy, backward,
    AdamW on prompt + head."""
    compute = "fp32" if precision == "tf32" else precision
    model = build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=PROMPT_LENGTH,
                               num_labels=shape.intents).to(device)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids, mask, labels = random_batch(batch, shape, device, torch.Generator().manual_seed(batch))

    def step() -> float:
        with autocast(compute, device):
            loss = F.cross_entropy(model(ids, mask), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    return measure(step, shape, budget, device)


def fused_throughput(encoder, precision: str, k: int, shape: Shape, budget: Budget, device):
    """K PT trials in one forward (`fused_features`), each with its own prompt, head and AdamW."""
    models = [build_intent_model(encoder, method="pt", prompt_kind="layer", prompt_length=PROMPT_LENGTH,
                                 num_labels=shape.intents).to(device).train() for _ in range(k)]
    optimizers = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2) for m in models]
    ids, mask, labels = random_batch(k * shape.fuse_batch, shape, device, torch.Generator().manual_seed(k))
    member_of_row = torch.arange(k, device=device).repeat_interleave(shape.fuse_batch)
    prompts = [m.prompt for m in models]

    def step() -> float:
        with autocast(precision, device):
            hidden = fused_features(encoder, prompts, member_of_row, ids, mask)
            losses = [F.cross_entropy(m.head(part, part_mask), target) for m, part, part_mask, target
                      in zip(models, hidden.split(shape.fuse_batch), mask.split(shape.fuse_batch),
                             labels.split(shape.fuse_batch))]
        values = torch.stack(losses).detach().tolist()  # one host read per step, as the fused loop
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        torch.stack(losses).sum().backward()
        for optimizer in optimizers:
            optimizer.step()
        return sum(values)

    return measure(step, shape, budget, device)


def nli_scoring(encoder, precision: str, shape: Shape, budget: Budget, device) -> dict | str:
    """Scoring as the NLI task's evaluation: every utterance against every intent's hypothesis,
    `eval_batch` pairs a forward, P(entails) gathered on the host, the best intent predicted."""
    model = build_nli_model(encoder, method="pt", prompt_kind="layer", prompt_length=PROMPT_LENGTH).to(device).eval()
    pairs = shape.nli_utterances * shape.intents
    ids, mask, _ = random_batch(pairs, shape, device, torch.Generator().manual_seed(pairs))

    @torch.no_grad()
    def step() -> float:
        probs = torch.empty(pairs)
        with autocast(precision, device):
            for start in range(0, pairs, shape.eval_batch):
                part = slice(start, start + shape.eval_batch)
                probs[part] = entailment_probability(model(ids[part], mask[part])).float().cpu()
        return float(nli_predict(probs.view(shape.nli_utterances, shape.intents)).sum())

    return measure(step, shape, budget, device)


def figures(result: dict | str, items_per_step: int, flops_per_item: float, peaks, precision: str) -> dict:
    """A measurement as figures: items/s, ms a step, achieved TFLOP/s, MFU against the peak at
    `precision` (a fraction), peak MiB; a measurement that did not run gives its reason for each."""
    if isinstance(result, str):
        return dict.fromkeys(("per_s", "step_ms", "tflops", "mfu", "peak_mib", "timed_steps"), result)
    per_s = items_per_step * result["steps"] / result["seconds"]
    tflops = per_s * flops_per_item / 1e12
    return {"per_s": round(per_s, 1), "step_ms": round(1e3 * result["seconds"] / result["steps"], 2),
            "tflops": _significant(tflops),
            "mfu": UNKNOWN if isinstance(peaks, str) else _significant(tflops / peaks[precision]),
            "peak_mib": result["peak_mib"], "timed_steps": result["steps"]}


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def run(shape: Shape, device: torch.device, budget_s: float) -> dict:
    started = time.perf_counter()
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                              num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
                              max_position_embeddings=shape.max_positions)
    with device:  # random weights made on the device: no download, no host-side initialisation of 560M
        encoder = XLMRobertaModel(config, add_pooling_layer=False)
    params = sum(p.numel() for p in encoder.parameters())
    body = sum(p.numel() for name, p in encoder.named_parameters() if not name.startswith("embeddings."))
    train_flops, score_flops = 4 * body * shape.seq_len, 2 * body * shape.seq_len
    peaks = peak_tflops(device)
    best = resolve_precision("auto", device)  # what a trial here computes in: bf16 on a recent GPU, fp32 on CPU
    precisions = ["fp32", "tf32", "bf16"]
    budget = Budget(budget_s - (time.perf_counter() - started),
                    len(precisions) * len(shape.batches) + len(shape.fuse_ks) + 1)

    train = []
    for precision in precisions:
        set_backbone_precision(encoder, precision)
        for batch in shape.batches:
            if precision == "tf32" and device.type != "cuda":
                budget.share(0)  # nothing to measure: its share goes to the others
                result = NA
            else:
                result = train_throughput(encoder, precision, batch, shape, budget, device)
            row = figures(result, batch, train_flops, peaks, precision)
            train.append({"precision": precision, "batch": batch, "examples_per_s": row.pop("per_s"), **row})

    set_backbone_precision(encoder, best)
    fused = []
    for k in shape.fuse_ks:
        result = fused_throughput(encoder, best, k, shape, budget, device)
        row = figures(result, k * shape.fuse_batch, train_flops, peaks, best)
        per_member = row["peak_mib"] / k if isinstance(row["peak_mib"], float) else row["peak_mib"]
        fused.append({"k": k, "rows_per_member": shape.fuse_batch, "examples_per_s": row.pop("per_s"), **row,
                      "peak_mib_per_member": _round(per_member)})
    for row in fused:
        both = all(isinstance(r["examples_per_s"], float) for r in (row, fused[0]))
        row["speedup_over_k1"] = round(row["examples_per_s"] / fused[0]["examples_per_s"], 3) if both else NA

    pairs = shape.nli_utterances * shape.intents
    row = figures(nli_scoring(encoder, best, shape, budget, device), pairs, score_flops, peaks, best)
    nli = {"precision": best, "utterances": shape.nli_utterances, "intents": shape.intents,
           "pairs_per_forward": shape.eval_batch, "pairs_per_s": row.pop("per_s"), **row}
    memory = next(r for r in train if r["precision"] == "bf16" and r["batch"] == shape.batches[0])
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": {"type": device.type, "name": torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine(), "peak_tflops": peaks,
                   "memory_mib": torch.cuda.get_device_properties(device).total_memory / 2**20
                   if device.type == "cuda" else "n/a",
                   "threads": torch.get_num_threads()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "cuda": torch.version.cuda,
                     "xsweep": xsweep.__version__},
        "shape": {"layers": shape.layers, "hidden": shape.hidden, "heads": shape.heads,
                  "intermediate": shape.intermediate, "vocab": shape.vocab, "max_positions": shape.max_positions,
                  "parameters": params, "non_embedding_parameters": body, "weights": "random (config only)"},
        "setup": {"prompt": f"layer, length {PROMPT_LENGTH}", "head": f"vanilla, {shape.intents} intents",
                  "method": "pt (frozen backbone in the precision's dtype)", "seq_len": shape.seq_len,
                  "warmup_steps": shape.warmup_steps, "max_timed_steps": shape.max_steps,
                  "max_seconds_per_measurement": shape.max_seconds, "budget_s": budget_s,
                  "fused_forward": "xsweep/models/prompts.py:fused_features", "auto_precision": best,
                  "fp32": "strict fp32 (TF32 matmuls off); xsweep's fp32 trials on CUDA use TF32, the tf32 rows",
                  "flops": "training: 4 x non-embedding parameters x tokens per example; "
                           "scoring: 2 x non-embedding parameters x tokens per pair"},
        "train": train,
        "fused": fused,
        "nli": nli,
        "memory_per_trial": {"precision": "bf16", "batch": shape.batches[0], "peak_mib": memory["peak_mib"],
                             "backbone_weights_mib": round(2 * params / MIB, 1)},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def table(report: dict) -> str:
    """The figures as aligned text."""
    def cell(value, width: int, percent: bool = False) -> str:
        text = f"{value:.1%}" if percent and isinstance(value, float) else str(value)
        return {SKIPPED: "skipped", OOM: "OOM"}.get(text, text).rjust(width)

    dev, setup = report["device"], report["setup"]
    lines = [f"gpu_check on {dev['name']} ({dev['type']}), torch {report['versions']['torch']}, "
             f"transformers {report['versions']['transformers']}, {report['date']}",
             f"encoder: {report['shape']['layers']} layers, hidden {report['shape']['hidden']}, random weights; "
             f"{setup['prompt']}; {setup['seq_len']} tokens a sequence",
             "", "training steps (one PT trial)",
             f"{'precision':>9} {'batch':>6} {'examples/s':>11} {'step ms':>9} {'TFLOP/s':>9} {'MFU':>7} "
             f"{'peak MiB':>10}"]
    for r in report["train"]:
        lines.append(f"{r['precision']:>9} {r['batch']:>6} {cell(r['examples_per_s'], 11)} {cell(r['step_ms'], 9)} "
                     f"{cell(r['tflops'], 9)} {cell(r['mfu'], 7, True)} {cell(r['peak_mib'], 10)}")
    lines += ["", f"fused trials ({setup['auto_precision']}, {report['fused'][0]['rows_per_member']} rows a member)",
              f"{'K':>9} {'examples/s':>11} {'x K=1':>7} {'TFLOP/s':>9} {'MFU':>7} {'peak MiB':>10} {'MiB/member':>11}"]
    for r in report["fused"]:
        lines.append(f"{r['k']:>9} {cell(r['examples_per_s'], 11)} {cell(r['speedup_over_k1'], 7)} "
                     f"{cell(r['tflops'], 9)} {cell(r['mfu'], 7, True)} {cell(r['peak_mib'], 10)} "
                     f"{cell(r['peak_mib_per_member'], 11)}")
    nli, mem = report["nli"], report["memory_per_trial"]
    lines += ["", f"NLI scoring ({nli['precision']}, {nli['utterances']} x {nli['intents']} pairs, "
                  f"{nli['pairs_per_forward']} a forward): {cell(nli['pairs_per_s'], 0)} pairs/s, "
                  f"{cell(nli['tflops'], 0)} TFLOP/s, MFU {cell(nli['mfu'], 0, True)}",
              f"memory per trial (bf16, batch {mem['batch']}): peak {cell(mem['peak_mib'], 0)} MiB "
              f"(backbone weights {mem['backbone_weights_mib']} MiB of it)",
              f"MFU counts {setup['flops']}", f"elapsed {report['elapsed_s']} s"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for gpu_check.json")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, few steps, one CPU thread (tests)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="default: cuda when available (cpu with --smoke)")
    parser.add_argument("--budget-s", type=float, default=None, help="wall-clock budget (default 270, smoke 60)")
    args = parser.parse_args(argv)
    device_name = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    if device_name == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda but torch sees no CUDA device (a CPU build of torch?)", file=sys.stderr)
        return 2
    device = torch.device(device_name, 0) if device_name == "cuda" else torch.device("cpu")
    if args.smoke:
        torch.set_num_threads(1)
    report = run(SMOKE if args.smoke else FULL, device, args.budget_s or (60.0 if args.smoke else 270.0))
    report["command"] = " ".join(["python -m bench.gpu_check", *(sys.argv[1:] if argv is None else argv)])
    print(table(report))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    rates = [r["examples_per_s"] for r in report["train"] + report["fused"]] + [report["nli"]["pairs_per_s"]]
    missing = [r for r in rates if not (r == NA or isinstance(r, float) and math.isfinite(r))]
    if missing:
        print(f"gpu_check: {len(missing)} of {len(rates)} throughputs not measured: {sorted(set(map(str, missing)))} "
              "(a larger --budget-s gives skipped ones their time)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
