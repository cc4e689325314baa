"""Test-set evaluation (vanilla intent head): batches ordered by length against file order.

    .venv/bin/python -m bench.bench_eval_order [--backbone minilm] [--locales en-US] [--rows N]
                                               [--threads 1] [--repeats 2] [--out results.json]

The evaluation stage tests the selected trials on every language's test set. xsweep's
`IntentTask.evaluate` forwards rows shortest first in batches of `eval_batch_size` (64) and puts
the predictions back in file order (`batches.length_batches`). The baseline is the same model, rows
and batch size in file order, where each batch is padded to its longest row. Same model (layer
prompt x 16, a random head so predictions vary), same token ids; tokenization is not timed. Both
must predict the same intent for every row. The methods alternate, and the best of `--repeats`
runs of each is kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

TITLE = "Test-set evaluation: batches by length vs file order"
COMMAND = ".venv/bin/python -m bench.bench_eval_order"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm", help="minilm, builtin:tiny or a local folder")
    parser.add_argument("--locales", nargs="+", default=["en-US"],
                        help="MASSIVE locales with a test split in the data (the shared copy: en-US)")
    parser.add_argument("--rows", type=int, default=None, help="first test rows per locale; default all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    from bench.bench_step import backbone_path, experiment, intents, machine, massive_rows
    from xsweep.models.backbone import load_backbone
    from xsweep.train.batches import iter_batches, length_batches
    from xsweep.train.tasks import IntentTask

    torch.set_num_threads(args.threads)
    encoder, tokenizer = load_backbone(backbone_path(args.backbone))
    labels = intents()
    task = IntentTask(experiment(eval_batch_size=args.eval_batch_size), labels, tokenizer)
    torch.manual_seed(0)
    model = task.build_model(encoder).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad and not name.startswith("encoder."):
                param.normal_(0.0, 0.5)
    splits = [task.encode(massive_rows("test", args.rows, locale)) for locale in args.locales]
    device, size = torch.device("cpu"), args.eval_batch_size

    @torch.no_grad()
    def file_order() -> list[list[int]]:
        return [torch.cat([model(b.input_ids, b.attention_mask).argmax(-1) for b in
                           iter_batches(split.encoded, size, shuffle=None, device=device)]).tolist()
                for split in splits]

    def by_length() -> list[list[int]]:
        return [[labels.index(row["predicted"]) for row in task.evaluate(model, split, size, device).rows]
                for split in splits]

    methods = {"file_order": file_order, "xsweep": by_length}
    file_order()  # warm-up
    seconds = {name: float("inf") for name in methods}
    predictions = {}
    for _ in range(args.repeats):
        for name, run in methods.items():
            start = time.perf_counter()
            predictions[name] = run()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    rows = sum(len(split) for split in splits)

    def padded(batches) -> int:
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    real = padded_file = padded_sorted = 0
    for split in splits:
        lengths = [len(ids) for ids in split.encoded.input_ids]
        real += sum(lengths)
        padded_file += padded([list(range(s, min(s + size, len(lengths)))) for s in range(0, len(lengths), size)])
        padded_sorted += padded(length_batches(lengths, size))
    same = sum(a == b for pa, pb in zip(predictions["file_order"], predictions["xsweep"]) for a, b in zip(pa, pb))
    result = {"backbone": args.backbone, "locales": args.locales, "rows": rows, "threads": args.threads,
              "repeats": args.repeats, "eval_batch_size": size, "machine": machine(), "torch": torch.__version__,
              "same_predictions": same, "distinct_predictions": len({p for ps in predictions["xsweep"] for p in ps}),
              "padding": {"file_order": round(padded_file / real, 3), "xsweep": round(padded_sorted / real, 3)}}
    for name in methods:
        result[name] = {"seconds": round(seconds[name], 3), "rows_per_s": round(rows / seconds[name], 1)}
    result["ratio"] = round(seconds["file_order"] / seconds["xsweep"], 2)
    print(f"file order {result['file_order']['rows_per_s']} rows/s, by length {result['xsweep']['rows_per_s']} rows/s: "
          f"{result['ratio']}x; same predictions {same}/{rows}; padding {result['padding']}")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    if same != rows:
        raise SystemExit("the two orders predicted differently: the comparison is void")
    return result


def section(result: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    return "\n".join([
        written_by(command), "",
        f"{result['rows']:,} MASSIVE test rows ({', '.join(result['locales'])}), backbone `{result['backbone']}` with a "
        f"layer prompt x 16 and a random vanilla head ({result['distinct_predictions']} distinct intents predicted), "
        f"batches of {result['eval_batch_size']}, {result['threads']} thread(s), best of {result['repeats']} "
        "alternating runs.", "",
        "| evaluation | seconds | rows/s | padded / real tokens |",
        "|---|---|---|---|",
        f"| baseline: file order | {result['file_order']['seconds']:.2f} | {result['file_order']['rows_per_s']:.1f} | "
        f"{result['padding']['file_order']:.2f}x |",
        f"| xsweep: `IntentTask.evaluate`, shortest rows first | {result['xsweep']['seconds']:.2f} | "
        f"{result['xsweep']['rows_per_s']:.1f} | {result['padding']['xsweep']:.2f}x |", "",
        f"Ratio: {result['ratio']:.2f}x the rows/s of file order; same predictions for "
        f"{result['same_predictions']}/{result['rows']} rows. Slot filling's `SlotTask.predict` orders its batches "
        "the same way.", "",
    ])


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:])))
    print(f"wrote {RESULTS}")
