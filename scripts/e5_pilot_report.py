"""docs/pilots/e5_reading.md from the e5 pilot run (experiments/e5_pilot.yaml): how xsweep reads
multilingual-e5-small, decided by English dev, as the protocol selects everything.

    .venv/bin/python scripts/e5_pilot_report.py runs/e5_pilot      # after the run: copies its records
    .venv/bin/python scripts/e5_pilot_report.py docs/pilots/e5_pilot   # regenerates from the copy

The run's small files (config.yaml, manifest.json, every trial's record.json; no checkpoints or
event files) are copied into docs/pilots/e5_pilot/, so the page regenerates from the repository
on a machine without runs/. Every figure on the page is read from those records.
"""

from __future__ import annotations

import shutil
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xsweep.record import RECORD_FILE, read_records  # noqa: E402

COPY = ROOT / "docs" / "pilots" / "e5_pilot"
PAGE = ROOT / "docs" / "pilots" / "e5_reading.md"
COMMAND = ".venv/bin/python scripts/e5_pilot_report.py runs/e5_pilot"
KEYS = (("backbone", "pooling"), ("backbone", "text_prefix"), ("prompt", "shift_positions"), ("backbone", "dropout"),
        ("optim", "lr"))


def copy_records(run_dir: Path) -> None:
    """The run's small files into COPY (replacing an older copy)."""
    if COPY.exists():
        shutil.rmtree(COPY)
    for name in ("config.yaml", "manifest.json"):
        if (run_dir / name).is_file():
            COPY.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / name, COPY / name)
    for record in sorted(run_dir.glob(f"trials/*/{RECORD_FILE}")):
        target = COPY / "trials" / record.parent.name / RECORD_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, target)


def setting(record, section: str, key: str):
    return record.config.get(section, {}).get(key)


def render(records) -> str:
    done = [r for r in records if r.status == "completed"]
    if not any(r.test_scores for r in done):
        raise SystemExit(f"no completed trial with test scores under {COPY}")
    english = done[0].config["data"]["train_locale"]
    tested = next(r for r in done if r.test_scores)
    rows = []
    for r in done:
        others = [v for loc, v in r.test_scores.items() if loc != english]
        rows.append({"record": r, "dev": r.best_dev, "en": r.test_scores.get(english),
                     "others": statistics.mean(others) if others else None,
                     "spread": statistics.pstdev(others) if len(others) > 1 else None})
    rows.sort(key=lambda row: -row["dev"])
    varied = [k for k in KEYS if len({repr(setting(r, *k)) for r in done}) > 1]
    data = done[0].config["data"]
    lines = [
        "# Reading multilingual-e5-small: the pilot",
        "",
        f"Written by `{COMMAND}` on {date.today().isoformat()} from the records in `docs/pilots/e5_pilot/` "
        "(regenerate with `docs/pilots/e5_pilot` as the argument).",
        "",
        f"PT, layer prompt x {done[0].config['prompt']['length']}, {data['shots']} shots of real MASSIVE "
        f"{english}, up to {done[0].config['optim']['epochs']} epochs, seed(s) "
        f"{sorted({r.seed for r in done})}, English dev on a stratified subset of {data['max_dev_examples']}, "
        f"test on {data['max_test_examples_per_locale']} utterances per locale (the same ids in every locale) "
        f"in {len(tested.test_scores)} locales. Sorted by English dev, the protocol's selection rule. As in "
        "every sweep, only each group's selected learning rate is tested (the others show -).",
        "",
        "| " + " | ".join(f"`{s}.{k}`" for s, k in varied) + f" | English dev | {english} test | "
        "mean of the other locales | std over the other locales | best epoch |",
        "|" + "---|" * (len(varied) + 5),
    ]
    def pct(value) -> str:
        return "-" if value is None else f"{100 * value:.1f}"

    for row in rows:
        r = row["record"]
        cells = [repr(setting(r, *k)) for k in varied]
        lines.append("| " + " | ".join(cells) + f" | {pct(row['dev'])} | {pct(row['en'])} | "
                     f"{pct(row['others'])} | {pct(row['spread'])} | {r.best_epoch} |")
    best = rows[0]["record"]
    chosen = ", ".join(f"`{s}.{k}: {setting(best, *k)!r}`" for s, k in varied)
    lines += ["", f"Best on English dev: {chosen}.", ""]
    by_key = []
    for s, k in varied:
        means = {}
        for row in rows:
            means.setdefault(repr(setting(row["record"], s, k)), []).append(row)
        parts = [f"{value}: dev {100 * statistics.mean(x['dev'] for x in group):.1f}" for value, group in means.items()]
        by_key.append(f"- `{s}.{k}` (mean over the other settings): " + "; ".join(parts))
    lines += ["Each setting averaged over the others:", "", *by_key, ""]
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    source = Path(argv[0]).resolve()
    if source != COPY.resolve():
        copy_records(source)
    PAGE.write_text(render(read_records(COPY)), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} from {len(list(COPY.glob('trials/*/' + RECORD_FILE)))} records")


if __name__ == "__main__":
    main(sys.argv[1:])
