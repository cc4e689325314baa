"""Load + tokenize all of MASSIVE en-US and the 12 utterance-only locales: cold vs cached.

    .venv/bin/python -m bench.bench_data_load [--tokenizer PATH_OR_HUB_ID] [--max-seq-len 64]
                                              [--out results.json]

Cold: an empty cache; every locale file is hashed, read, validated, tokenized and saved as Arrow.
Cached: the same calls again; each finds its entry by key (file hash, tokenizer, length,
labels) and memory-maps it. Both runs happen in this process, each timed from the first call
until every token id has been read (summed in Arrow); the tokenizer is built before timing.

The default tokenizer is the built-in model's (a Unigram vocabulary like XLM-R's, trained on the
demo corpus), because no pretrained model can be downloaded here; pass --tokenizer to time XLM-R's.
Real data comes from ../shared/data (XSWEEP_SHARED_DATA overrides).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from xsweep.data.encode import encode_massive
from xsweep.data.massive import available_locales, intent_labels, read_massive
from xsweep.paths import shared_data_dir


def _tokenizer(name: str | None, vocab_size: int):
    if name:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name)
    from xsweep.data.synth import demo_corpus, write_demo_data
    from xsweep.models.builtin import train_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return train_tokenizer(demo_corpus(write_demo_data(Path(tmp) / "demo")), vocab_size)


def _encode_all(sources: list[tuple[Path, str]], tokenizer, max_seq_len: int,
                intents: list[str], cache: Path) -> tuple[float, tuple[int, int, int]]:
    """Seconds, and (rows, tokens, sum of token ids) to check the cache returns the same."""
    import pyarrow.compute as pc

    start = time.perf_counter()
    rows = tokens = checksum = 0
    for folder, locale in sources:
        ds = encode_massive(folder, locale, tokenizer, max_seq_len, intents, cache_root=cache)
        # Touch every token id (a memory-mapped dataset that is never read would be free), in
        # Arrow: converting 4M ids to Python lists would time the conversion, not the cache.
        flat = pc.list_flatten(ds.data.column("input_ids"))
        rows += len(ds)
        tokens += len(flat)
        checksum += pc.sum(flat).as_py()
    return time.perf_counter() - start, (rows, tokens, checksum)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", default=None, help="tokenizer path or hub id")
    parser.add_argument("--vocab-size", type=int, default=8000, help="built-in tokenizer only")
    parser.add_argument("--max-seq-len", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON")
    args = parser.parse_args(argv)

    massive = shared_data_dir() / "massive"
    utt_only = massive / "utt-only"
    sources = [(massive, "en-US")] + [(utt_only, loc) for loc in available_locales(utt_only)]
    intents = intent_labels(read_massive(massive, "en-US", ["train"]))
    tokenizer = _tokenizer(args.tokenizer, args.vocab_size)
    with tempfile.TemporaryDirectory(prefix="xsweep-bench-cache-") as tmp:
        cold, counts = _encode_all(sources, tokenizer, args.max_seq_len, intents, Path(tmp))
        cached, again = _encode_all(sources, tokenizer, args.max_seq_len, intents, Path(tmp))
    if again != counts:
        raise SystemExit(f"the cache returned other data: {again} != {counts}")
    rows, tokens, _ = counts
    result = {
        "locales": [loc for _, loc in sources], "rows": rows, "tokens": tokens,
        "tokenizer": args.tokenizer or f"builtin unigram {args.vocab_size}",
        "max_seq_len": args.max_seq_len, "cold_s": round(cold, 3), "cached_s": round(cached, 3),
        "cold_over_cached": round(cold / cached, 1),
        "machine": f"{platform.machine()} {platform.python_implementation()} "
                   f"{platform.python_version()}",
    }
    print(f"{len(sources)} locales, {rows:,} rows, {tokens:,} tokens, "
          f"tokenizer {result['tokenizer']}, max_seq_len {args.max_seq_len}")
    print(f"cold   {cold:8.2f} s")
    print(f"cached {cached:8.2f} s")
    print(f"ratio  {cold / cached:8.1f}x")
    if args.out:
        from xsweep.atomic import write_json

        write_json(args.out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
