"""The trials' tokenized-split cache: the first trial on a node (cold) vs every later one (warm).

    .venv/bin/python -m bench.bench_data_load [--tokenizer PATH_OR_HUB_ID] [--max-seq-len 64]
                                              [--repeats 3] [--out results.json]

What is timed is what a trial calls: its task's `encode(rows)` (train/tasks/, built by `make_task`
from the label map `task_labels` writes), which tokenizes through data/encode.tokenize_cached. The
splits are those a sweep's trials encode on one node: English train (all of it, as with
`data.shots: all`), dev and test, and the test split of the 12 other locales here (what the
evaluation stage reads for every selected checkpoint), for the vanilla task (utterances) and the NLI
task (premises; the 60 hypotheses are under CACHE_MIN_ROWS and tokenized in place); the slot task
(word lists and word ids) on English only, the 12 locales here having no slot markup.

Cold: `$XSWEEP_CACHE` is an empty folder, as on a fresh node: each split is tokenized and written.
Warm: the same calls again, as the next trial on the node makes them: each split is found by its
key and memory-mapped. The rows are read before timing (`read_examples`; the cache holds token ids,
not rows, which every task needs) and that time is reported beside. Each of `--repeats` rounds uses
a fresh cache folder; the best round of each is kept. Every split's token ids are checked to be
the same cold and warm.

The default tokenizer is the built-in model's (a Unigram vocabulary like XLM-R's, trained on the
demo corpus), because no pretrained model can be downloaded here; pass --tokenizer to time XLM-R's.
Real data comes from ../shared/data (XSWEEP_SHARED_DATA overrides).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

TITLE = "Data loading"
COMMAND = ".venv/bin/python -m bench.bench_data_load"


def _tokenizer(name: str | None, vocab_size: int):
    if name:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    from xsweep.data.synth import demo_corpus, write_demo_data
    from xsweep.models.builtin import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return train_tokenizer(demo_corpus(write_demo_data(Path(tmp) / "demo")), vocab_size)


@contextmanager
def _node_cache(folder: Path) -> Iterator[Path]:
    """xsweep's cache (where trials find tokenized splits) in `folder`, for the block."""
    before = os.environ.get("XSWEEP_CACHE")
    os.environ["XSWEEP_CACHE"] = str(folder)
    try:
        yield folder / "tokenized"
    finally:
        if before is None:
            os.environ.pop("XSWEEP_CACHE")
        else:
            os.environ["XSWEEP_CACHE"] = before


def _input_ids(split) -> list[list[int]]:
    """The token ids of each row of an encoded split (NLI: of each premise, joined to a hypothesis later)."""
    if hasattr(split, "encoded"):  # vanilla
        return split.encoded.input_ids
    if hasattr(split, "pairs"):  # nli
        return split.pairs._premises
    return split.input_ids  # slot


def _tokenizer_output(split) -> list:
    """All a split holds of the tokenizer's output, one list per row, to compare cold and warm."""
    if hasattr(split, "word_ids"):  # slot: word ids and first-sub-token labels come from the tokens too
        return [[*ids, -1, *(-2 if w is None else w for w in words), -1, *labels]
                for ids, words, labels in zip(split.input_ids, split.word_ids, split.token_labels)]
    if hasattr(split, "pairs"):
        return split.pairs._premises + split.pairs._hypotheses
    return _input_ids(split)


def _encode_all(tasks: dict, splits: dict) -> tuple[dict[str, float], dict[str, tuple[int, str]]]:
    """Seconds of `task.encode` over each task's splits, and (tokens, sha256 of the tokenizer's output)."""
    seconds, output = {}, {}
    for kind, task in tasks.items():
        gc.collect()  # the previous task's garbage is not this one's time
        start = time.perf_counter()
        encoded = [task.encode(rows) for rows in splits[kind]]
        seconds[kind] = time.perf_counter() - start
        tokens = sum(len(ids) for split in encoded for ids in _input_ids(split))
        rows = [row for split in encoded for row in _tokenizer_output(split)]
        output[kind] = (tokens, hashlib.sha256(json.dumps(rows).encode()).hexdigest())
        del encoded, rows
    return seconds, output


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="tokenizer path or hub id")
    parser.add_argument("--vocab-size", type=int, default=8000, help="built-in tokenizer only")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)

    from xsweep.config import from_dict
    from xsweep.data.encode import CACHE_STATS
    from xsweep.data.massive import available_locales
    from xsweep.paths import shared_data_dir
    from xsweep.train.tasks import make_task, read_examples, task_labels

    english, utt_only = shared_data_dir() / "massive" / "1.1" / "data", shared_data_dir() / "massive" / "utt-only"
    others = available_locales(utt_only)
    cfgs = {kind: from_dict({"method": "pt", "data": {"path": "massive", "max_seq_len": args.max_seq_len},
                             "head": {"kind": kind}}) for kind in ("vanilla", "nli", "slot")}
    start = time.perf_counter()
    english_splits = [read_examples(cfgs["vanilla"], english, "en-US", p) for p in ("train", "dev", "test")]
    intent_splits = english_splits + [read_examples(cfgs["vanilla"], utt_only, loc, "test") for loc in others]
    read_s = time.perf_counter() - start
    splits = {"vanilla": intent_splits, "nli": intent_splits, "slot": english_splits}
    tokenizer = _tokenizer(args.tokenizer, args.vocab_size)
    tasks = {kind: make_task(cfg, task_labels(cfg, english_splits[0]), tokenizer) for kind, cfg in cfgs.items()}

    cold: dict[str, float] = {}
    warm: dict[str, float] = {}
    entries = size = 0
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="xsweep-bench-cache-") as tmp, _node_cache(Path(tmp)) as cache:
            CACHE_STATS.clear()
            first, cold_ids = _encode_all(tasks, splits)
            written = dict(CACHE_STATS)
            CACHE_STATS.clear()
            again, warm_ids = _encode_all(tasks, splits)
            read_back = dict(CACHE_STATS)
            files = list(cache.glob("*.arrow"))
            entries, size = len(files), sum(f.stat().st_size for f in files)
        if warm_ids != cold_ids:
            raise SystemExit("the cache returned other token ids than the tokenizer")
        if written.get("miss") != entries or read_back.get("hit") != entries or read_back.get("miss"):
            raise SystemExit(f"not every split went through the cache: cold {written}, warm {read_back}")
        cold = {k: min(v, cold.get(k, v)) for k, v in first.items()}
        warm = {k: min(v, warm.get(k, v)) for k, v in again.items()}

    rows = {kind: sum(len(s) for s in splits[kind]) for kind in splits}
    tokens = {kind: count for kind, (count, _) in cold_ids.items()}
    result = {
        "locales": ["en-US"] + others, "rows": rows, "tokens": tokens, "read_s": round(read_s, 3),
        "cold_s": {k: round(v, 3) for k, v in cold.items()}, "warm_s": {k: round(v, 3) for k, v in warm.items()},
        "cold_over_warm": {k: round(cold[k] / warm[k], 1) for k in cold},
        "total_cold_over_warm": round(sum(cold.values()) / sum(warm.values()), 1),
        "entries": entries, "cache_mb": round(size / 2**20, 1), "repeats": args.repeats,
        "tokenizer": args.tokenizer or f"builtin unigram {args.vocab_size}", "max_seq_len": args.max_seq_len,
    }
    print(f"read {sum(len(s) for s in intent_splits):,} rows in {read_s:.2f} s; tokenizer {result['tokenizer']}, "
          f"max_seq_len {args.max_seq_len}; {entries} entries, {result['cache_mb']} MB")
    for kind in tasks:
        print(f"{kind:8s} {rows[kind]:7,} rows  cold {cold[kind]:7.2f} s  warm {warm[kind]:6.2f} s  "
              f"ratio {cold[kind] / warm[kind]:6.1f}x")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


WHAT = {"vanilla": "vanilla: utterances (`IntentTask.encode`)",
        "nli": "nli: premises (`NliTask.encode`; 60 hypotheses tokenized in place)",
        "slot": "slot: word lists + word ids (`SlotTask.encode`)"}


def section(data: dict, command: str = COMMAND) -> str:
    from bench.run import written_by

    others = len(data["locales"]) - 1
    where = {"vanilla": f"en-US train/dev/test + {others} locales' test",
             "nli": f"en-US train/dev/test + {others} locales' test", "slot": "en-US train/dev/test"}
    lines = [
        written_by(command),
        "",
        f"What a trial's task encodes (`task.encode`, through `data/encode.tokenize_cached`) on one node: the "
        f"first trial tokenizes each split and writes it to `$XSWEEP_CACHE/tokenized/` (cold); every later "
        f"trial, and the evaluation stage, memory-maps it (warm). Tokenizer {data['tokenizer']}, max_seq_len "
        f"{data['max_seq_len']}; best of {data['repeats']} rounds, each on an empty cache.",
        "",
        "| task encoding | splits | rows | tokens | cold: first trial (s) | warm: later trials (s) | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in ("vanilla", "nli", "slot"):
        lines.append(f"| {WHAT[kind]} | {where[kind]} | {data['rows'][kind]:,} | {data['tokens'][kind]:,} "
                     f"| {data['cold_s'][kind]:.2f} | {data['warm_s'][kind]:.2f} | {data['cold_over_warm'][kind]:.1f}x |")
    lines += [
        f"| all | {data['entries']} cache entries, {data['cache_mb']} MB | | | {sum(data['cold_s'].values()):.2f} "
        f"| {sum(data['warm_s'].values()):.2f} | {data['total_cold_over_warm']:.1f}x |",
        "",
        f"Reading the rows of these splits, which every trial still does (tasks need the rows; the cache holds "
        f"token ids): {data['read_s']:.2f} s. Cold and warm gave the same token ids for every split. Measured "
        "while other jobs shared the two cores; compare the ratio, not the seconds.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    from bench.run import RESULTS, update_section

    update_section(TITLE, section(main(sys.argv[1:])))
    print(f"wrote {RESULTS}")
