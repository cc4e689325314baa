"""xsweep's own demo data: MASSIVE, (X)SGD and Tatoeba files in their real formats.

Generated from the templates in synth_templates.py (written for this project), so the demo and the
tests run with no download and no licence question. Every example is rendered in all DEMO_LOCALES
from the same template and fillers, so the files are parallel by construction, as the real ones
are. The same seed gives byte-identical files; the whole tree is written to a temporary folder and
renamed into place, so an interrupted run leaves nothing half-written.

Layout written under `out_dir`:
    massive/1.1/data/<locale>.jsonl
    xsgd/{train,dev,test}/schema.json, dialogues_001.json
    tatoeba/v1/tatoeba.<iso3>-eng.<iso3>, tatoeba.<iso3>-eng.eng
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from xsweep.data.massive import read_massive
from xsweep.data.synth_sgd import write_sgd
from xsweep.data.synth_templates import FILLERS, INTENTS, LANGS, LOCALES, PREFIXES
from xsweep.languages import MASSIVE_TO_TATOEBA

DEMO_LOCALES: tuple[str, ...] = LOCALES
FORMAT_VERSION = 1  # bump when the generated data changes, so cached copies are rewritten
SPLIT_SIZES = {"train": 40, "dev": 10, "test": 20}  # rows per intent
TATOEBA_PAIRS = 300
MANIFEST = "DEMO_DATA.json"

_PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")
_SLOT_METHODS = ("translation", "localization", "unchanged")


def template_slots(template: str) -> list[str]:
    """Slot names of a template, in order of appearance."""
    return [m.group(1) for m in _PLACEHOLDER.finditer(template)]


def filler_text(slot: str, index: int, lang: int, form: str | None = None) -> str:
    """The filler `index` of `slot` in language `lang`, in grammatical `form` (default nominative)."""
    value = FILLERS[slot][index][lang]
    return value if isinstance(value, str) else value[form or "nom"]


def render(template: str, lang: int, choice: dict[str, int], prefix: str = "") -> tuple[str, str]:
    """(utt, annot_utt) of a template with the chosen fillers.

    Japanese is written without spaces, as in real ja-JP rows; its annot_utt puts spaces only
    around the `[slot : words]` markup, which character splitting ignores.
    """
    utt_parts: list[str] = [prefix]
    annot_parts: list[str] = [prefix]
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        text = template[pos:m.start()]
        value = filler_text(m.group(1), choice[m.group(1)], lang, m.group(2))
        utt_parts += [text, value]
        annot_parts += [text, f" [{m.group(1)} : {value}] "]
        pos = m.end()
    utt_parts.append(template[pos:])
    annot_parts.append(template[pos:])
    utt = "".join(utt_parts)
    annot = " ".join("".join(annot_parts).split())
    return " ".join(utt.split()), annot


def _draw(rng: random.Random, templates: list[tuple[str, ...]], use_prefix: bool) -> tuple:
    t = rng.randrange(len(templates))
    prefix = rng.randrange(len(PREFIXES)) if use_prefix else 0
    choice = {slot: rng.randrange(len(FILLERS[slot])) for slot in template_slots(templates[t][0])}
    return t, prefix, choice


def _plan_massive(seed: int) -> list[tuple[str, str, str, tuple]]:
    """(partition, scenario, intent, draw) per row, in file (id) order."""
    rng = random.Random(f"massive:{seed}")
    seen: set[str] = set()  # distinct English utterances: no test row is a copy of a train row
    rows = []
    per_intent = sum(SPLIT_SIZES.values())
    for scenario, intent, templates in INTENTS:
        drawn = []
        for _ in range(100 * per_intent):
            if len(drawn) == per_intent:
                break
            d = _draw(rng, templates, use_prefix=True)
            utt = render(templates[d[0]][0], 0, d[2], PREFIXES[d[1]][0])[0]
            if utt not in seen:
                seen.add(utt)
                drawn.append(d)
        if len(drawn) < per_intent:  # a template table too small for the sizes asked
            raise RuntimeError(f"synth templates for {intent} give only {len(drawn)} rows")
        splits = [p for p, n in SPLIT_SIZES.items() for _ in range(n)]
        rows += [(p, scenario, intent, d) for p, d in zip(splits, drawn)]
    rng.shuffle(rows)
    return rows


def _massive_lines(plan: list, lang: int, locale: str, seed: int) -> list[str]:
    meta = random.Random(f"massive-meta:{seed}:{locale}")
    templates = {intent: t for _, intent, t in INTENTS}
    lines = []
    for i, (partition, scenario, intent, (t, prefix, choice)) in enumerate(plan):
        template = templates[intent][t]
        utt, annot = render(template[lang], lang, choice, PREFIXES[prefix][lang])
        row = {"id": str(i), "locale": locale, "partition": partition, "scenario": scenario,
               "intent": intent, "utt": utt, "annot_utt": annot,
               "worker_id": str(meta.randrange(1, 40))}
        if locale != "en-US":
            row["slot_method"] = [{"slot": s, "method": meta.choice(_SLOT_METHODS)}
                                  for s in dict.fromkeys(template_slots(template[lang]))]
            row["judgments"] = [
                {"worker_id": str(meta.randrange(1, 40)), "intent_score": 1,
                 "slots_score": meta.choice((0, 1, 1, 1)), "grammar_score": meta.choice((3, 4, 4)),
                 "spelling_score": 2, "language_identification": "target"}
                for _ in range(3)]
        lines.append(json.dumps(row, ensure_ascii=False))
    return lines


def _write_massive(root: Path, seed: int) -> None:
    folder = root / "massive" / "1.1" / "data"
    folder.mkdir(parents=True)
    plan = _plan_massive(seed)
    for lang, locale in enumerate(DEMO_LOCALES):
        # The official files end without a newline (en-US.jsonl does); so do ours.
        text = "\n".join(_massive_lines(plan, lang, locale, seed))
        (folder / f"{locale}.jsonl").write_text(text, encoding="utf-8")


def _sentence(text: str, lang: int) -> str:
    return text + "。" if LANGS[lang] == "ja" else text[:1].upper() + text[1:] + "."


def _write_tatoeba(root: Path, seed: int) -> None:
    folder = root / "tatoeba" / "v1"
    folder.mkdir(parents=True)
    rng = random.Random(f"tatoeba:{seed}")
    pairs: dict[str, tuple] = {}
    while len(pairs) < TATOEBA_PAIRS:
        _, _, templates = INTENTS[rng.randrange(len(INTENTS))]
        t, _, choice = _draw(rng, templates, use_prefix=False)
        en = render(templates[t][0], 0, choice)[0]
        pairs.setdefault(en, (templates[t], choice))
    for lang, locale in enumerate(DEMO_LOCALES):
        if locale == "en-US":
            continue
        iso3 = MASSIVE_TO_TATOEBA[locale]
        other = [_sentence(render(tpl[lang], lang, c)[0], lang) for tpl, c in pairs.values()]
        eng = [_sentence(en, 0) for en in pairs]
        (folder / f"tatoeba.{iso3}-eng.{iso3}").write_text("\n".join(other) + "\n", encoding="utf-8")
        (folder / f"tatoeba.{iso3}-eng.eng").write_text("\n".join(eng) + "\n", encoding="utf-8")


def write_demo_data(out_dir: Path, seed: int = 0) -> Path:
    """Write the demo data sets under `out_dir` (replacing what is there) and return `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    old = None
    try:
        os.chmod(tmp, 0o755)
        _write_massive(tmp, seed)
        write_sgd(tmp / "xsgd", seed, DEMO_LOCALES)
        _write_tatoeba(tmp, seed)
        (tmp / MANIFEST).write_text(json.dumps(
            {"seed": seed, "format_version": FORMAT_VERSION, "locales": list(DEMO_LOCALES),
             "what": "xsweep demo data generated from xsweep/data/synth_templates.py"},
            indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old",
                                        dir=out_dir.parent))
            os.replace(out_dir, old / "data")
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out_dir


def ensure_demo_data(out_dir: Path, seed: int = 0) -> Path:
    """`write_demo_data` unless `out_dir` already holds this seed's data (e.g. for Ray workers).

    Checked through the manifest, which is written last inside the temporary folder, so its
    presence means the tree is complete.
    """
    manifest = Path(out_dir) / MANIFEST
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        if info.get("seed") == seed and info.get("format_version") == FORMAT_VERSION:
            return Path(out_dir)
    except (OSError, ValueError):
        pass
    return write_demo_data(out_dir, seed)


def demo_corpus(data_dir: Path, partitions: Iterable[str] = ("train",)) -> list[str]:
    """Every `utt` of the given partitions across DEMO_LOCALES, locale by locale in file order.

    `data_dir` is what write_demo_data returned (or any folder read_massive accepts). Used to
    train the built-in model's tokenizer and its short MLM pretraining.
    """
    parts = list(partitions)
    return [ex.utt for locale in DEMO_LOCALES for ex in read_massive(data_dir, locale, parts)]
