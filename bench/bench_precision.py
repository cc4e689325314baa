"""PT training speed on a real multilingual encoder: bf16 and length bucketing against today's loop.

    .venv/bin/python -m bench.bench_precision [--seeds 0 1 2] [--epochs 1] [--max-dev 300] [--threads 2]

Four modes of one experiment, run one after another in this process through the shipped loop
(`plan_trials` -> `run_downstream`, trials planned by xsweep from a config, not a copy of the loop):
PT with a layer prompt of 16 on intfloat/multilingual-e5-small, 15 shots of MASSIVE en-US (the real
release in ../shared/data), English dev cut to a stratified `data.max_dev_examples` subset, no test
(`data.eval_locales: [en-US]`, `sweep.evaluate` left to the evaluation stage, which this does not run).

- today's loop: `optim.precision: fp32`, `optim.bucket_by_length: false`
- bucketed:     fp32, `bucket_by_length: true`
- bf16:         `precision: bf16`, `bucket_by_length: false`
- both:         bf16, `bucket_by_length: true`

What is timed: the trial record's `train_seconds` counts the trial's set-up and its dev evaluations
too, so this times `run_downstream` from the first training batch drawn (`task.train_batches`) to
its return, minus the time spent inside `task.evaluate` (the dev evaluations): the training steps,
plus the per-evaluation checkpoint and record writes. Examples/s is the training rows those batches
held over that time. The ratio is each mode's examples/s over today's loop's, seed by seed and
averaged. The padding ratio is the record's (positions fed / real tokens); the dev score is the
record's `best_dev` (the selected English dev accuracy).

A profile says what limits bf16 here: one forward+backward of the same PT model on one training
batch, fp32 vs bf16 (backbone weights in bf16, autocast, as a bf16 trial runs), and the CPU
capability torch dispatches to (`torch.backends.cpu.get_cpu_capability()`).

Defaults (one seed, one epoch, 300 dev utterances) keep the whole run within about 20 minutes on a
2-core CPU without bf16 matmul units, where the two bf16 modes take nearly all of it; the issue's
target is judged over `--seeds 0 1 2` (and more epochs) on a machine where bf16 is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

TITLE = "PT speed on multilingual-e5-small: bf16 and length buckets vs today's loop"
COMMAND = ".venv/bin/python -m bench.bench_precision"
BACKBONE = "intfloat/multilingual-e5-small"
MODES = (("today's loop", "fp32", False), ("bucketed", "fp32", True), ("bf16", "bf16", False),
         ("both", "bf16", True))


def massive_folder() -> str:
    from xsweep.paths import shared_data_dir

    return str(shared_data_dir() / "massive" / "1.1" / "data")


def experiment(precision: str, bucket: bool, args) -> dict:
    return {"name": "bench_precision", "method": "pt", "backbone": {"name": BACKBONE},
            "data": {"path": massive_folder(), "shots": args.shots, "eval_locales": ["en-US"],
                     "max_dev_examples": args.max_dev},
            "prompt": {"kind": "layer", "length": 16},
            "optim": {"epochs": args.epochs, "batch_size": args.batch_size, "precision": precision,
                      "bucket_by_length": bucket, "patience": args.epochs},
            "sweep": {"grid": {"optim.lr": [args.lr]}, "seeds": list(args.seeds)}}


@contextmanager
def timed(method_owner, name: str):
    """Seconds spent inside `method_owner.name` while the block runs: the yielded dict's "s"."""
    clock = {"s": 0.0}
    original = getattr(method_owner, name)

    def wrapper(self, *a, **k):
        start = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            clock["s"] += time.perf_counter() - start

    setattr(method_owner, name, wrapper)
    try:
        yield clock
    finally:
        setattr(method_owner, name, original)


@contextmanager
def instrumented(task_class):
    """Count training rows and time from the first training batch; time spent in `evaluate`
    (the yielded clock's "evaluate"["s"])."""
    clock = {"first_batch": None, "rows": 0}
    train_batches = task_class.train_batches

    def counted_batches(self, *a, **k):
        for batch in train_batches(self, *a, **k):
            if clock["first_batch"] is None:
                clock["first_batch"] = time.perf_counter()
            clock["rows"] += len(batch.labels)
            yield batch

    task_class.train_batches = counted_batches
    try:
        with timed(task_class, "evaluate") as evaluating:
            clock["evaluate"] = evaluating
            yield clock
    finally:
        task_class.train_batches = train_batches


def run_mode(name: str, precision: str, bucket: bool, args, root: Path) -> list[dict]:
    from xsweep.config import from_dict
    from xsweep.sweep.prepare import prepare_inputs
    from xsweep.sweep.runner import plan_trials
    from xsweep.train.downstream import run_downstream
    from xsweep.train.tasks.intent import IntentTask

    cfg = from_dict(experiment(precision, bucket, args), source=f"bench_precision {name}")
    specs = plan_trials(cfg, root / name.replace(" ", "_").replace("'", ""), prepare_inputs(cfg, log=lambda _: None))
    rows = []
    for spec in specs:
        with instrumented(IntentTask) as clock:
            record = run_downstream(spec)
            end = time.perf_counter()
        if record.status != "completed" or record.precision != precision:
            raise RuntimeError(f"{name}: trial {spec.trial_id} ended {record.status} ({record.error})")
        eval_s = clock["evaluate"]["s"]
        train_s = end - clock["first_batch"] - eval_s
        rows.append({"mode": name, "precision": precision, "bucket_by_length": bucket, "seed": record.seed,
                     "examples": clock["rows"], "train_s": round(train_s, 2), "eval_s": round(eval_s, 2),
                     "record_train_seconds": round(record.train_seconds, 2),
                     "examples_per_s": round(clock["rows"] / train_s, 2), "padding_ratio": record.padding_ratio,
                     "best_dev": record.best_dev, "best_epoch": record.best_epoch})
        print(f"{name:13s} seed {record.seed}: {clock['rows']} rows in {train_s:7.1f} s = "
              f"{clock['rows'] / train_s:7.2f} ex/s; eval {eval_s:.1f} s; padding "
              f"{record.padding_ratio:.3f}; best dev {record.best_dev:.4f}", flush=True)
    return rows


def profile(args) -> dict:
    """One forward+backward of the PT model on one padded training batch, fp32 vs bf16."""
    from bench.bench_step import experiment as step_experiment
    from bench.bench_step import intents, massive_rows
    from xsweep.models.backbone import load_backbone
    from xsweep.models.precision import autocast
    from xsweep.train.tasks.intent import IntentTask

    labels, rows = intents(), massive_rows("train", limit=args.batch_size)
    cpu, result = torch.device("cpu"), {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        encoder, tokenizer = load_backbone(BACKBONE, dtype=dtype)
        task = IntentTask(step_experiment(batch_size=args.batch_size, precision=precision), labels, tokenizer)
        torch.manual_seed(0)
        model = task.build_model(encoder)
        model.train()
        batch = next(iter(task.train_batches(task.encode(rows), args.batch_size, torch.Generator().manual_seed(0), cpu)))
        times = []
        for _ in range(args.profile_repeats + 1):  # the first is warm-up
            start = time.perf_counter()
            with autocast(precision, cpu):
                loss = task.loss(model, batch)
            loss.backward()
            times.append(time.perf_counter() - start)
            model.zero_grad(set_to_none=True)
        result[precision] = {"best_s": round(min(times[1:]), 4), "shape": list(batch.attention_mask.shape)}
        print(f"profile {precision}: forward+backward {min(times[1:]):.3f} s on a batch of "
              f"{tuple(batch.attention_mask.shape)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--shots", type=int, default=15)
    parser.add_argument("--max-dev", type=int, default=300, help="data.max_dev_examples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile-repeats", type=int, default=1)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the encoder is built into the cache, never downloaded
    torch.set_num_threads(args.threads)
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__}, CPU capability {capability}, {args.threads} threads", flush=True)

    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_precision_") as tmp:
        for name, precision, bucket in MODES:
            rows += run_mode(name, precision, bucket, args, Path(tmp))
    prof = profile(args)
    base = {r["seed"]: r for r in rows if r["mode"] == MODES[0][0]}
    for r in rows:
        r["ratio"] = round(r["examples_per_s"] / base[r["seed"]]["examples_per_s"], 3)
        r["dev_minus_fp32"] = round(r["best_dev"] - base[r["seed"]]["best_dev"], 4)
    from bench.bench_step import intents
    from bench.run import machine

    return {"rows": rows, "profile": prof, "capability": capability, "torch": torch.__version__,
            "threads": args.threads, "seeds": list(args.seeds), "intents": len(intents()), "epochs": args.epochs, "shots": args.shots,
            "max_dev": args.max_dev, "batch_size": args.batch_size, "lr": args.lr, "machine": machine(),
            "wall_s": round(time.perf_counter() - started, 1)}


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    seeds = result["seeds"]
    by_mode = {name: [r for r in result["rows"] if r["mode"] == name] for name, _, _ in MODES}
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    lines = [
        written_by(command), "",
        f"PT through the shipped loop (`plan_trials` -> `run_downstream`) on `{BACKBONE}`, layer prompt x 16, "
        f"{result['shots']} shots of real MASSIVE en-US, batch {result['batch_size']}, lr {result['lr']}, "
        f"{result['epochs']} epochs, English dev on a stratified subset of {result['max_dev']} "
        f"(`data.max_dev_examples`), no test; seeds {', '.join(map(str, seeds))}; torch {result['torch']}, "
        f"{result['threads']} threads, CPU capability `{result['capability']}`. Timed: from the first training "
        "batch drawn to the trial's return, minus the time inside `task.evaluate` (dev); that is the steps plus "
        "per-evaluation checkpoint writes. Examples/s: training rows seen / that time. "
        f"Whole benchmark: {result['wall_s']:.0f} s.", "",
        "| mode | precision | bucket_by_length | examples/s (mean over seeds) | ratio vs today's loop | "
        "padding ratio | selected English dev (per seed) | dev - fp32 today's loop (per seed, points) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, precision, bucket in MODES:
        rs = by_mode[name]
        lines.append(
            f"| {name} | {precision} | {str(bucket).lower()} | {mean([r['examples_per_s'] for r in rs]):.1f} | "
            f"{mean([r['ratio'] for r in rs]):.2f}x | {mean([r['padding_ratio'] for r in rs]):.3f} | "
            + ", ".join(f"{r['best_dev'] * 100:.1f}" for r in rs) + " | "
            + ", ".join(f"{r['dev_minus_fp32'] * 100:+.1f}" for r in rs) + " |")
    both = by_mode["both"]
    ratio = mean([r["ratio"] for r in both])
    worst = max(abs(r["dev_minus_fp32"]) for r in both) * 100
    prof = result["profile"]
    slower = prof["bf16"]["best_s"] / prof["fp32"]["best_s"]
    lines += [
        "",
        f"Profile (what limits bf16 here): one forward+backward of the PT model on a training batch of "
        f"{prof['fp32']['shape'][0]} x {prof['fp32']['shape'][1]} tokens, best of the repeats after a warm-up: "
        f"fp32 {prof['fp32']['best_s']:.3f} s, bf16 {prof['bf16']['best_s']:.3f} s ({slower:.1f}x the fp32 time). "
        f"torch dispatches to `{result['capability']}` kernels on this CPU; without AVX512-BF16 or AMX, bf16 "
        "matmuls are converted and computed slower than fp32 ones, so bf16 pays here what it saves on a GPU.",
        "",
        f"Issue target: the combination (`both`) at least 2x today's loop, with the selected English dev score "
        f"within 1 point of fp32 over 3 seeds, compared seed by seed. Here: {ratio:.2f}x "
        f"({'met' if ratio >= 2 else 'not met'} on this CPU); largest dev difference {worst:.1f} points over "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        + ("" if len(seeds) >= 3 else " (the target asks for 3: `--seeds 0 1 2`)") + ". "
        f"Chance on the {result['intents']} intents is {100 / result['intents']:.1f}%: after {result['epochs']} "
        f"epoch{'s' if result['epochs'] != 1 else ''} of few-shot PT the dev scores above compare prompts that have "
        "barely begun to learn, so the dev side of the target is only judged by a longer run (`--epochs`), "
        "on a machine where bf16 is fast enough to afford it.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:]), f"{COMMAND} {' '.join(sys.argv[1:])}".rstrip()))
    print(f"wrote {RESULTS}")
