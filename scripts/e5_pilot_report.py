"""docs/pilots/e5_reading.md from the e5 pilot runs (experiments/e5_pilot.yaml: pooling, prefix and
learning rate; experiments/e5_pilot_layer_prompt.yaml: the layer prompt's conventions): how xsweep
reads multilingual-e5-small, decided by English dev, as the protocol selects everything.

    .venv/bin/python scripts/e5_pilot_report.py runs/e5_pilot runs/e5_pilot_layer_prompt   # copies their records
    .venv/bin/python scripts/e5_pilot_report.py                                            # from the copies

Each run's small files (config.yaml, manifest.json, every trial's record.json; no checkpoints or
event files) are copied into docs/pilots/<run name>/, so the page regenerates from the repository
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

PILOTS = ROOT / "docs" / "pilots"
RUNS = ("e5_pilot", "e5_pilot_layer_prompt")
"""The pilot runs, in the order the page shows them (each a folder under PILOTS once copied)."""
PAGE = PILOTS / "e5_reading.md"
COMMAND = ".venv/bin/python scripts/e5_pilot_report.py"
NOISE_POINTS = 1.0
"""English dev points under which two settings are called even: on the 300-utterance dev subset
that is 3 utterances, and the pilot ran one seed."""
KEYS = (("backbone", "pooling"), ("backbone", "text_prefix"), ("prompt", "shift_positions"), ("backbone", "dropout"),
        ("optim", "lr"))


def copy_records(run_dir: Path) -> None:
    """The run's small files into PILOTS/<run name> (replacing an older copy)."""
    copy = PILOTS / run_dir.name
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir(parents=True)
    for name in ("config.yaml", "manifest.json"):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, copy / name)
    for record in sorted(run_dir.glob(f"trials/*/{RECORD_FILE}")):
        target = copy / "trials" / record.parent.name / RECORD_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(record, target)


def setting(record, section: str, key: str):
    return record.config.get(section, {}).get(key)


def render(name: str, records) -> tuple[list[str], dict]:
    """The section of one pilot run, and the settings its best trial on English dev varied."""
    done = [r for r in records if r.status == "completed"]
    if not any(r.test_scores for r in done):
        raise SystemExit(f"no completed trial with test scores under {PILOTS / name}")
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
        f"## {name}: {done[0].config.get('description', '')}",
        "",
        f"Records in `docs/pilots/{name}/`. PT, layer prompt x {done[0].config['prompt']['length']}, {data['shots']} shots of real MASSIVE "
        f"{english}, up to {done[0].config['optim']['epochs']} epochs, seed(s) "
        f"{sorted({r.seed for r in done})}, English dev on a stratified subset of {data['max_dev_examples']}, "
        f"test on {data['max_test_examples_per_locale']} utterances per locale (the same ids in every locale) "
        f"in {len(tested.test_scores)} locales; every other setting: `docs/pilots/{name}/config.yaml`. Sorted "
        "by English dev, the protocol's selection rule. As in every sweep, only each group's selected learning "
        "rate is tested (the others show -).",
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
    chosen = ", ".join(f"`{s}.{k}: {setting(best, s, k)!r}`" for s, k in varied)
    lines += ["", f"Best on English dev: {chosen}.", "",
              f"Each setting against the others, at the best trial's other settings (English dev; a difference "
              f"under {NOISE_POINTS:g} point is not called one, see NOISE_POINTS in the script):", ""]
    for s, k in varied:
        mine = setting(best, s, k)
        for row in rows:
            other = row["record"]
            if setting(other, s, k) != mine and all(setting(other, *o) == setting(best, *o) for o in varied if o != (s, k)):
                gap = 100 * (best.best_dev - row["dev"])
                verdict = "no measurable difference" if gap < NOISE_POINTS else "better"
                lines.append(f"- `{s}.{k}`: {mine!r} {100 * best.best_dev:.1f} vs {setting(other, s, k)!r} "
                             f"{100 * row['dev']:.1f} ({gap:+.1f} points: {verdict})")
    tested_rows = [row for row in rows if row["others"] is not None]
    transfer = max(tested_rows, key=lambda row: row["others"])
    if transfer["record"] is not best:
        settings = ", ".join(f"`{s}.{k}: {setting(transfer['record'], s, k)!r}`" for s, k in varied)
        lines += ["", f"The other locales rank the settings differently: their best mean, "
                  f"{100 * transfer['others']:.1f} ({settings}), against {100 * rows[0]['others']:.1f} for the "
                  "setting English dev chose. The protocol selects on English dev only, so the choice above stands; "
                  "the gap is measured on one seed."]
    last = max(r.best_epoch or 0 for r in done)
    if all(r.best_epoch == done[0].config["optim"]["epochs"] for r in done):
        lines += ["", f"Every trial's best dev came at its last epoch ({last}): all were still learning when "
                  "the pilot stopped them, so the scores are those of a short run, not of converged prompts."]
    return lines + [""], {f"{s}.{k}": setting(best, s, k) for s, k in varied}


def main(argv: list[str]) -> None:
    for run_dir in map(Path, argv):
        if run_dir.name not in RUNS:
            raise SystemExit(f"{run_dir}: not one of the pilot runs ({', '.join(RUNS)})\n\n{__doc__}")
        copy_records(run_dir.resolve())
    names = [name for name in RUNS if (PILOTS / name / "trials").is_dir()]
    if not names:
        raise SystemExit(f"no pilot records under {PILOTS}: run the pilots and pass their run directories")
    lines = ["# Reading multilingual-e5-small: the pilots", "",
             f"Written by `{COMMAND}` on {date.today().isoformat()} from the records under `docs/pilots/` "
             "(copied there from the runs; the same command without arguments regenerates this page).", ""]
    sections, chosen = [], {}
    for name in names:
        section, best = render(name, read_records(PILOTS / name))
        sections += section
        chosen.update(best)
    lines += ["What the pilots chose for this model, each on English dev (the later pilot ran at the earlier one's "
              "choice): " + ", ".join(f"`{key}: {value!r}`" for key, value in chosen.items()) + ".", "", *sections]
    PAGE.write_text("\n".join(lines), encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} from {', '.join(names)}")


if __name__ == "__main__":
    main(sys.argv[1:])
