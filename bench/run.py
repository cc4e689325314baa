"""Run every benchmark and write its section of bench/RESULTS.md (figures, machine, command).

    .venv/bin/python -m bench.run          (or: make bench)

Each benchmark reports a ratio against a baseline measured in the same run. A benchmark run on
its own (`python -m bench.bench_trial_overhead`) rewrites only its own section. Benchmarks never
run in CI.
"""

from __future__ import annotations

import os
import platform
from datetime import date
from pathlib import Path

from bench import bench_data_load, bench_fused, bench_trial_overhead
from bench import (bench_eval_order, bench_nli_eval, bench_peft, bench_precision, bench_precision_eval, bench_step,
                   bench_sweep)
from xsweep.atomic import write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = ("# Benchmark results\n\nOne section per benchmark, each written by it; `.venv/bin/python -m bench.run` "
          "runs them all.\n")


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def written_by(command: str) -> str:
    return f"Written by `{command}` on {date.today().isoformat()}; machine: {machine()}."


def update_section(title: str, body: str, path: Path = RESULTS) -> None:
    """Replace the `## title` section of RESULTS.md with `body` (or append it); keep the others."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    head = f"## {title}\n"
    start = text.find(head)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + head + "\n" + body
    else:
        end = text.find("\n## ", start + len(head))
        text = text[:start] + head + "\n" + body + (text[end:] if end >= 0 else "")
    write_text(path, text)


def main() -> None:
    update_section(bench_data_load.TITLE,
                   bench_data_load.section(bench_data_load.main([]), ".venv/bin/python -m bench.run"))
    update_section(bench_trial_overhead.TITLE,
                   bench_trial_overhead.section(bench_trial_overhead.main([]), ".venv/bin/python -m bench.run"))
    update_section(bench_fused.TITLE_CPU, bench_fused.section(bench_fused.main([]), ".venv/bin/python -m bench.run"))
    step = bench_step.main([])  # also stores this machine's FLOP/s for `xsweep run --dry-run`
    update_section(bench_step.TITLE, bench_step.section(step, ".venv/bin/python -m bench.run"))
    update_section(bench_step.PROJECTION_TITLE,
                   bench_step.projection_section(".venv/bin/python -m bench.run"))
    update_section(bench_sweep.TITLE, bench_sweep.section(bench_sweep.main([]), ".venv/bin/python -m bench.run"))
    for bench in (bench_nli_eval, bench_eval_order, bench_peft):  # each under a few minutes on 2 cores
        update_section(bench.TITLE, bench.section(bench.main([]), ".venv/bin/python -m bench.run"))
    update_section(bench_precision.TITLE, bench_precision.section(bench_precision.main([]), ".venv/bin/python -m bench.run"))
    update_section(bench_precision_eval.TITLE,
                   bench_precision_eval.section(bench_precision_eval.main([]), ".venv/bin/python -m bench.run"))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
