"""NLI evaluation over all candidate intents: xsweep's batched scoring against naive loops.

    .venv/bin/python -m bench.bench_nli_eval [--backbone minilm] [--utterances 20] [--threads 1]
                                             [--repeats 2] [--quick] [--out results.json]

The NLI head predicts an utterance's intent by scoring it against every intent's hypothesis (60 on
MASSIVE) and taking the most entailed. xsweep (train/tasks/nli.py, `NliTask.evaluate`) tokenizes
premises and hypotheses once, joins them on demand and runs the N x 60 pairs in forwards of
`eval_batch_size` (128) pairs, utterance-major, each batch padded to its own longest pair.
Baselines, on the same model (layer prompt x 16, fresh NLI head, eval mode), the same MASSIVE
en-US dev utterances and the same token ids (tokenization is not timed in any of them):

- pairwise: one forward per (utterance, intent) pair, what a direct reading of "score every pair" does;
- per utterance: one forward per utterance holding its 60 pairs.

Both baselines and xsweep must predict the same intents: the script prints the agreement and the
largest difference of entailment probability (batches padded differently give float noise only).
Each method runs `--repeats` times, the three alternating, and its best run is kept: other jobs
share this machine, and with 2 threads on 2 busy cores one descheduled thread stalls a whole
forward, so the default is 1 thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

TITLE = "NLI evaluation: batched pairs vs naive loops"
COMMAND = ".venv/bin/python -m bench.bench_nli_eval"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm", help="minilm, builtin:tiny or a local folder")
    parser.add_argument("--utterances", type=int, default=20, help="English dev utterances scored")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per method; the best is kept")
    parser.add_argument("--eval-batch-size", type=int, default=128, help="pairs per forward (optim.eval_batch_size)")
    parser.add_argument("--quick", action="store_true", help="10 utterances, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.utterances, args.repeats = 10, 1

    from bench.bench_step import backbone_path, experiment, intents, machine, massive_rows
    from xsweep.models.backbone import load_backbone
    from xsweep.objectives.nli import entailment_probability, intent_hypothesis
    from xsweep.train.tasks import NliTask

    torch.set_num_threads(args.threads)
    encoder, tokenizer = load_backbone(backbone_path(args.backbone))
    labels = intents()
    cfg = experiment(head="nli", eval_batch_size=args.eval_batch_size)
    task = NliTask(cfg, labels, [intent_hypothesis(name) for name in labels], tokenizer)
    torch.manual_seed(0)
    model = task.build_model(encoder).eval()
    split = task.encode(massive_rows("dev", args.utterances))
    n, c = len(split), len(labels)
    pairs = [split.pairs[k]["input_ids"] for k in range(n * c)]  # the token ids all three use
    device = torch.device("cpu")

    with torch.no_grad():  # warm-up: the first forwards of a process pay for allocations, not for the method
        model(*task._collate(split, list(range(min(2 * c, n * c))), device))
    evaluation = task.evaluate(model, split, args.eval_batch_size, device)
    xsweep_pred = [labels.index(row["predicted"]) for row in evaluation.rows]

    @torch.no_grad()
    def score(batch_ids: list[list[int]]) -> torch.Tensor:
        from xsweep.train.batches import pad

        ids, mask = pad(batch_ids, tokenizer.pad_token_id)
        return entailment_probability(model(ids, mask))

    methods = {
        # what NliTask.evaluate computes, returned as the (N, C) probabilities it takes the argmax of
        "xsweep": lambda: task.entailment(model, split, args.eval_batch_size, device),
        "pairwise": lambda: torch.stack([torch.cat([score([pairs[i * c + k]]) for k in range(c)])
                                         for i in range(n)]),
        "per_utterance": lambda: torch.stack([score(pairs[i * c:(i + 1) * c]) for i in range(n)]),
    }
    seconds = {name: float("inf") for name in methods}
    probs = {}
    for _ in range(args.repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            probs[name] = run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    result = {"backbone": args.backbone, "utterances": n, "intents": c, "pairs": n * c, "threads": args.threads,
              "repeats": args.repeats, "eval_batch_size": args.eval_batch_size, "machine": machine(),
              "torch": torch.__version__}
    for name in methods:
        same = int((probs[name].argmax(-1) == torch.tensor(xsweep_pred)).sum())
        result[name] = {"seconds": round(seconds[name], 3), "utterances_per_s": round(n / seconds[name], 2),
                        "pairs_per_s": round(n * c / seconds[name], 1), "same_predictions": same,
                        "max_prob_diff": float((probs[name] - probs["xsweep"]).abs().max())}
    # Tokens each batching computes over the real ones: a batch is padded to its longest pair.
    lengths = [len(ids) for ids in pairs]

    def padded(size: int) -> float:
        chunks = [lengths[i:i + size] for i in range(0, len(lengths), size)]
        return sum(max(chunk) * len(chunk) for chunk in chunks) / sum(lengths)

    result["padding"] = {"xsweep": round(padded(args.eval_batch_size), 3), "per_utterance": round(padded(c), 3),
                         "pairwise": 1.0}
    result["ratio_vs_pairwise"] = round(seconds["pairwise"] / seconds["xsweep"], 2)
    result["ratio_vs_per_utterance"] = round(seconds["per_utterance"] / seconds["xsweep"], 2)
    for name in ("pairwise", "per_utterance", "xsweep"):
        r = result[name]
        print(f"{name:14s} {r['seconds']:8.2f} s  {r['utterances_per_s']:8.2f} utterances/s  "
              f"{r['pairs_per_s']:8.1f} pairs/s  same predictions as xsweep: {r['same_predictions']}/{n}  "
              f"max |dP| {r['max_prob_diff']:.1e}")
    print(f"xsweep over pairwise {result['ratio_vs_pairwise']:.1f}x, over per-utterance "
          f"{result['ratio_vs_per_utterance']:.1f}x")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    n = result["utterances"]

    def row(label: str, name: str) -> str:
        r = result[name]
        return (f"| {label} | {r['seconds']:.2f} | {r['utterances_per_s']:.2f} | {r['pairs_per_s']:.0f} | "
                f"{r['same_predictions']}/{n} | {r['max_prob_diff']:.1e} |")

    return "\n".join([
        written_by(command), "",
        f"{n} MASSIVE en-US dev utterances x {result['intents']} intents = {result['pairs']:,} pairs, backbone "
        f"`{result['backbone']}` with a layer prompt x 16 and a fresh NLI head, {result['threads']} thread(s), best of "
        f"{result['repeats']} alternating runs each (predictions: `NliTask.evaluate`'s).",
        "",
        "| evaluation | seconds | utterances/s | pairs/s | same predictions as xsweep | max abs diff of P(entails) |",
        "|---|---|---|---|---|---|",
        row("baseline: one forward per pair", "pairwise"),
        row("baseline: one forward per utterance (its 60 pairs)", "per_utterance"),
        row(f"xsweep: `NliTask.entailment` (what `evaluate` scores with), {result['eval_batch_size']} pairs a forward",
            "xsweep"),
        "",
        f"Ratio: {result['ratio_vs_pairwise']:.1f}x the pairwise loop's examples/s, "
        f"{result['ratio_vs_per_utterance']:.1f}x the per-utterance loop's. Other jobs shared the two cores; "
        "compare the ratios.", "",
        f"Padded over real tokens: {result['padding']['xsweep']:.2f}x in xsweep's {result['eval_batch_size']}-pair "
        f"batches (they span utterances, so every pair is padded to the longest utterance of the batch), "
        f"{result['padding']['per_utterance']:.2f}x in one utterance's {result['intents']} pairs (only the "
        "hypotheses differ), 1.00x one pair at a time: batching by whole utterances (or by length) would give "
        "xsweep the per-utterance loop's padding with its larger forwards.", "",
    ])


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:])))
    print(f"wrote {RESULTS}")
