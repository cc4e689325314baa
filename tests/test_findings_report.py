"""scripts/findings_report.py: the claim verdicts follow from the records, and docs/findings.md and
README's headline lines are what the committed records say (regenerated here, compared whole)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from xsweep.record import TrialRecord, read_records, write_record

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ["en-US", "de-DE", "fr-FR", "ja-JP"]

pytestmark = pytest.mark.timeout(120)


def load_script():
    spec = importlib.util.spec_from_file_location("findings_report", ROOT / "scripts" / "findings_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_run(tmp_path: Path, accuracy) -> Path:
    """A run directory of records in the real format: vanilla FT/PT/APT at 5 and 15 shots and NLI
    PT/APT at 5, two learning rates (the larger always better on dev), 3 seeds, 4 locales, with
    test accuracies from `accuracy(classifier, method, shots, seed, locale)`."""
    run = tmp_path / "e5_reproduction"
    points = [("vanilla", m, s) for m in ("ft", "pt", "apt") for s in (5, 15)] + [("nli", m, 5) for m in ("pt", "apt")]
    for index, (classifier, method, shots) in enumerate(points):
        key = f"g{index:03d}"
        for lr, dev in ((1e-2, 0.5), (2e-3, 0.3)):
            for seed in (0, 1, 2):
                config = {"method": method, "head": {"kind": classifier}, "data": {"shots": shots, "train_locale": "en-US"},
                          "prompt": {"kind": "none" if method == "ft" else "layer", "length": 16},
                          "backbone": {"name": "intfloat/multilingual-e5-small"}, "sweep": {"seeds": [0, 1, 2]},
                          "resources": {"cpus_per_trial": 1}}
                chosen = lr == 1e-2
                record = TrialRecord(
                    trial_id=f"t{index:03d}-{key}-lr{lr:g}-s{seed}", group_key=key,
                    group_name=f"massive-{classifier}/{method}/shots={shots}", lr=lr, seed=seed, status="completed",
                    best_dev=dev, best_epoch=2, train_seconds=10.0, eval_seconds=5.0, config=config,
                    test_scores={loc: accuracy(classifier, method, shots, seed, loc) for loc in LOCALES} if chosen else {})
                write_record(record, run / "trials" / record.trial_id)
    return run


def paper_like(classifier, method, shots, seed, locale):
    """APT above PT by 10 points at 5 shots and 3 at 15, NLI above vanilla, APT even across languages."""
    base = {"ft": 0.10, "pt": 0.30, "apt": 0.40}[method] + (0.05 if classifier == "nli" else 0.0)
    if shots == 15:
        base += {"ft": 0.2, "pt": 0.3, "apt": 0.23}[method]
    uneven = 0.0 if method == "apt" else (0.08 if locale == "en-US" else -0.02)
    return base + uneven + 0.005 * seed


def test_verdicts_follow_the_records(tmp_path):
    findings = load_script()
    groups = findings.load_groups(read_records(make_run(tmp_path, paper_like)))
    verdicts = {c["claim"][:3]: findings.overall_verdict(c["rows"]) for c in findings.claims(groups)}
    assert verdicts == {"(a)": "held", "(b)": "held", "(c)": "held", "(d)": "held"}, verdicts

    def apt_behind(classifier, method, shots, seed, locale):
        value = paper_like(classifier, method, shots, seed, locale)
        return value - 0.2 if method == "apt" else value

    groups = findings.load_groups(read_records(make_run(tmp_path / "b", apt_behind)))
    claim_b = next(c for c in findings.claims(groups) if c["claim"].startswith("(b)"))
    assert findings.overall_verdict(claim_b["rows"]) == "did not hold"
    # Seeds that disagree are not a finding either way.
    assert findings.verdict([3.0, -1.0, 4.0]) == "unclear"
    assert findings.verdict([0.4, 0.3, 0.5]) == "unclear"  # every seed agrees, but under NOISE_POINTS


def test_the_page_and_readme_are_what_the_committed_records_say():
    findings = load_script()
    if not (findings.COPY / "trials").is_dir():
        pytest.fail(f"no committed records under {findings.COPY}: run the experiment and the script")
    records = read_records(findings.COPY)
    groups = findings.load_groups(records)
    page, headline = findings.render(findings.COPY, groups, records, findings.report_tables(findings.COPY))
    assert findings.PAGE.read_text(encoding="utf-8") == page
    timing = json.loads((findings.COPY / "timing.json").read_text(encoding="utf-8"))
    assert findings.readme_block(headline, groups, timing) in findings.README.read_text(encoding="utf-8")
    assert f"**{timing['wall_seconds'] / 60:.0f} min wall**" in page
    # Records only: no checkpoint, prompt or event file was copied.
    assert {p.suffix for p in findings.COPY.rglob("*") if p.is_file()} <= {".json", ".yaml"}


def test_copying_a_run_keeps_its_records_and_the_report_reads_them(tmp_path):
    findings = load_script()
    run = make_run(tmp_path, paper_like)
    (run / "manifest.json").write_text(json.dumps({"eval_locales": LOCALES}), encoding="utf-8")
    (run / "results").mkdir()
    (run / "results" / "results.md").write_text("# Results\n", encoding="utf-8")
    copy = tmp_path / "copy" / run.name
    findings.copy_run(run, copy)
    assert len(read_records(copy)) == len(read_records(run)) == 48
    timing = json.loads((copy / "timing.json").read_text(encoding="utf-8"))
    assert timing["wall_seconds"] >= 0 and timing["machine"]["cpus"] >= 1
    tables = findings.report_tables(copy)
    assert "| PT |" in tables["methods"] and "###" in tables["results"]
    assert not (copy / "results").exists()  # the report ran in a scratch copy
    shutil.rmtree(run / "results")
    with pytest.raises(SystemExit, match="results.md"):
        findings.copy_run(run, copy)
