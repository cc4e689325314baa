"""Run every benchmark and write bench/RESULTS.md (figures, machine, command).

    .venv/bin/python -m bench.run          (or: make bench)

Each benchmark reports a ratio against a baseline measured in the same run. Benchmarks never
run in CI.
"""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

from bench import bench_data_load
from xsweep.atomic import write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def main() -> None:
    data = bench_data_load.main([])
    lines = [
        "# Benchmark results",
        "",
        f"Written by `.venv/bin/python -m bench.run` on {date.today().isoformat()}; machine: {machine()}.",
        "",
        "| benchmark | baseline | xsweep | ratio |",
        "|---|---|---|---|",
        f"| load + tokenize MASSIVE en-US + {len(data['locales']) - 1} utterance-only locales "
        f"({data['rows']:,} rows, {data['tokens']:,} tokens) | cold: {data['cold_s']:.2f} s "
        f"| cached (Arrow): {data['cached_s']:.2f} s | {data['cold_over_cached']:.0f}x |",
        "",
    ]
    write_text(RESULTS, "\n".join(lines))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
