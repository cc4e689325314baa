"""Schema-Guided Dialogue (and XSGD) read from the official layout, and the paper's intent task.

A split folder holds `schema.json` and `dialogues_NNN.json` (or `.json.gz`). The paper's SGD intent
task pairs a premise (previous system utterance + user utterance) with each candidate intent of
the turn's service (hypothesis = the intent's description); a turn with no intent is out of scope
and is predicted only when no candidate scores above the threshold.

Which user turns carry an intent is a choice, `intent_turns`:
- "active_intent" (default): every user frame is labelled with its `state.active_intent`, so a
  turn that only adds a slot ("in San Jose") still carries the intent being pursued;
  `active_intent == "NONE"` is a no-intent (out-of-scope) example.
- "intent_acts": only frames whose actions state an intent carry it: INFORM_INTENT (the user
  asks for it) or AFFIRM_INTENT (the user accepts an intent the system offered with
  OFFER_INTENT). Every other user frame is a no-intent example: this detects *new* intents.
XSGD adds `utterance_<code>` to every turn; `lang` picks it (None: the English `utterance`).
Languages are MASSIVE locales here too: `en-US` reads SGD's `utterance`, another locale XSGD's
`utterance_<code>` (languages.xsgd_code_for), so test locales exist only where XSGD files are given.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from xsweep.atomic import write_json
from xsweep.data.textio import read_text
from xsweep.errors import XsweepError
from xsweep.languages import locale_for_xsgd, xsgd_code_for

IntentTurns = Literal["active_intent", "intent_acts"]
INTENT_TURN_CHOICES = ("active_intent", "intent_acts")
INTENT_ACTS = frozenset({"INFORM_INTENT", "AFFIRM_INTENT"})
SPLITS = ("train", "dev", "test")
SOURCE_LOCALE = "en-US"
"""SGD's own `utterance` field is English; other locales are XSGD translations."""
_GET_SGD = "run `xsweep data download sgd`, or point at a folder holding train/ dev/ test/"


@dataclass(frozen=True)
class SgdService:
    """One service of a schema: its intents (name -> description, in schema order) and slots."""

    name: str
    description: str
    intents: dict[str, str]
    slots: tuple[str, ...]


@dataclass(frozen=True)
class SgdIntentExample:
    """One user frame as an intent example. `intent` None means no intent (out of scope)."""

    dialogue_id: str
    turn_index: int
    service: str
    system_utterance: str
    """The system turn before the user's ("" on the first turn)."""
    user_utterance: str
    intent: str | None
    candidates: tuple[str, ...]
    """The service's intents, in schema order."""
    descriptions: tuple[str, ...]
    """Description of each candidate (the NLI hypothesis)."""

    @property
    def premise(self) -> str:
        return f"{self.system_utterance} {self.user_utterance}".strip()


def split_dir(data_dir: Path, split: str) -> Path:
    """The folder of one split: `<data_dir>/<split>`, or under `sgd/` or `xsgd/` of a data root."""
    if split not in SPLITS:
        raise XsweepError(f"unknown SGD split {split!r}", fix=f"use one of {', '.join(SPLITS)}")
    data_dir = Path(data_dir)
    searched = [data_dir / split, data_dir / "sgd" / split, data_dir / "xsgd" / split]
    for folder in searched:
        if (folder / "schema.json").is_file():
            return folder
    raise XsweepError(f"no SGD {split} split (schema.json)",
                      where=" or ".join(str(p) for p in searched), fix=_GET_SGD)


def _load_json(path: Path) -> Any:
    text = read_text(path)  # bad bytes and broken .gz: xsweep's error with file and line
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise XsweepError(f"malformed JSON ({e.msg})", where=f"{path}:{e.lineno}",
                          fix="re-download the file; it may be truncated") from None
    except RecursionError:
        raise XsweepError("JSON nested too deeply", where=str(path), fix="re-download the file") from None


def _need(obj: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise XsweepError(f"missing field {key!r}", where=where,
                          fix="the file does not follow the SGD format; re-download it")
    if not isinstance(obj[key], kind):
        raise XsweepError(f"field {key!r} must be {kind.__name__}, got {type(obj[key]).__name__}",
                          where=where, fix="the file does not follow the SGD format; re-download it")
    return obj[key]


def read_schema(folder: Path) -> dict[str, SgdService]:
    """Services of `folder/schema.json` by name."""
    path = Path(folder) / "schema.json"
    if not path.is_file():
        raise XsweepError("no schema.json", where=str(folder), fix=_GET_SGD)
    data = _load_json(path)
    if not isinstance(data, list) or not data:
        raise XsweepError("schema must be a non-empty list of services", where=str(path),
                          fix="re-download the file")
    out: dict[str, SgdService] = {}
    for i, svc in enumerate(data):
        where = f"{path}: service {i}"
        name = _need(svc, "service_name", str, where)
        intents = {}
        for intent in _need(svc, "intents", list, where):
            intents[_need(intent, "name", str, f"{where} ({name})")] = _need(
                intent, "description", str, f"{where} ({name})")
        if not intents:
            raise XsweepError(f"service {name} has no intents", where=str(path),
                              fix="re-download the file")
        slots = tuple(_need(s, "name", str, where) for s in svc.get("slots", []))
        out[name] = SgdService(name, svc.get("description", ""), intents, slots)
    return out


def dialogue_files(folder: Path) -> list[Path]:
    """`dialogues_*.json` and `.json.gz` of a split folder, sorted by name."""
    files = sorted(p for p in Path(folder).glob("dialogues_*.json*")
                   if p.name.endswith((".json", ".json.gz")))
    if not files:
        raise XsweepError("no dialogues_NNN.json files", where=str(folder), fix=_GET_SGD)
    return files


def _check_dialogue(d: Any, where: str, lang: str | None) -> None:
    did = _need(d, "dialogue_id", str, where)
    where = f"{where}: dialogue {did}"
    _need(d, "services", list, where)
    turns = _need(d, "turns", list, where)
    key = "utterance" if lang is None else f"utterance_{lang}"
    for t, turn in enumerate(turns):
        tw = f"{where} turn {t}"
        if _need(turn, "speaker", str, tw) not in ("USER", "SYSTEM"):
            raise XsweepError(f"speaker must be USER or SYSTEM, got {turn['speaker']!r}", where=tw,
                              fix="re-download the file")
        if key not in turn and lang is not None:
            present = sorted(k[len("utterance_"):] for k in turn if k.startswith("utterance_"))
            raise XsweepError(f"no {key} in the turn (XSGD translation for {lang!r} missing)",
                              where=tw, fix=f"languages present: {', '.join(present) or 'none'}; "
                              "get XSGD from its authors' bucket (see xsweep.data.download)")
        _need(turn, key, str, tw)
        for frame in _need(turn, "frames", list, tw):
            _need(frame, "service", str, tw)
            _need(frame, "actions", list, tw)
            if turn["speaker"] == "USER":
                _need(_need(frame, "state", dict, tw), "active_intent", str, tw)


def read_dialogues(folder: Path, lang: str | None = None) -> list[dict]:
    """All dialogues of a split folder, validated, in file order.

    `lang`: an XSGD code whose `utterance_<code>` every turn must have (None: English only).
    Dialogues stay plain dicts in the SGD format; they are large and read in one place.
    """
    return read_dialogues_and_files(folder, lang)[0]


def read_dialogues_and_files(folder: Path, lang: str | None = None) -> tuple[list[dict], dict[str, Path]]:
    """`read_dialogues`, and the file each dialogue id came from (for errors found later)."""
    out: list[dict] = []
    seen: dict[str, Path] = {}
    for path in dialogue_files(folder):
        data = _load_json(path)
        if not isinstance(data, list):
            raise XsweepError("expected a list of dialogues", where=str(path),
                              fix="re-download the file")
        for d in data:
            _check_dialogue(d, str(path), lang)
            if d["dialogue_id"] in seen:
                raise XsweepError(f"dialogue id {d['dialogue_id']} appears twice", where=str(path),
                                  fix=f"also in {seen[d['dialogue_id']]}; remove the duplicate file")
            seen[d["dialogue_id"]] = path
            out.append(d)
    return out, seen


def check_services(dialogues: Sequence[dict], schema: dict[str, SgdService],
                   schema_path: Path | str = "schema.json", files: dict[str, Path] | None = None) -> None:
    """Every service and active intent the dialogues name must be in the schema; an error names
    the dialogue's file (`files`: dialogue id -> file, from read_dialogues_and_files), the dialogue and the turn."""
    for d in dialogues:
        source = (files or {}).get(d["dialogue_id"], "dialogues")
        for t, turn in enumerate(d["turns"]):
            where = f"{source}: dialogue {d['dialogue_id']} turn {t}"
            for frame in turn["frames"]:
                svc = schema.get(frame["service"])
                if svc is None:
                    raise XsweepError(f"service {frame['service']!r} is not in the schema {schema_path}",
                                      where=where,
                                      fix=f"services there: {', '.join(sorted(schema))}; keep each split's "
                                          "dialogues beside that split's own schema.json")
                intent = frame.get("state", {}).get("active_intent", "NONE")
                if intent != "NONE" and intent not in svc.intents:
                    raise XsweepError(
                        f"active_intent {intent!r} is not an intent of {svc.name} in {schema_path}",
                        where=where,
                        fix=f"{svc.name}'s intents there: {', '.join(svc.intents)}; correct the turn's "
                            "active_intent, or add the intent to the service in schema.json")


def intent_examples(dialogues: Sequence[dict], schema: dict[str, SgdService],
                    intent_turns: IntentTurns = "active_intent",
                    lang: str | None = None, *, schema_path: Path | str = "schema.json",
                    files: dict[str, Path] | None = None) -> list[SgdIntentExample]:
    """One example per user frame, no-intent frames included (see the module docstring)."""
    if intent_turns not in INTENT_TURN_CHOICES:
        raise XsweepError(f"unknown intent_turns {intent_turns!r}",
                          fix=f"use one of {', '.join(INTENT_TURN_CHOICES)}")
    check_services(dialogues, schema, schema_path, files)
    key = "utterance" if lang is None else f"utterance_{lang}"
    out = []
    for d in dialogues:
        previous_system = ""
        for t, turn in enumerate(d["turns"]):
            if turn["speaker"] == "SYSTEM":
                previous_system = turn[key]
                continue
            for frame in turn["frames"]:
                svc = schema[frame["service"]]
                intent: str | None = frame["state"]["active_intent"]
                if intent == "NONE":
                    intent = None
                elif intent_turns == "intent_acts" and not any(
                        a.get("act") in INTENT_ACTS for a in frame["actions"]):
                    intent = None
                out.append(SgdIntentExample(
                    dialogue_id=d["dialogue_id"], turn_index=t, service=svc.name,
                    system_utterance=previous_system, user_utterance=turn[key], intent=intent,
                    candidates=tuple(svc.intents), descriptions=tuple(svc.intents.values())))
    return out


def read_split_examples(data_dir: Path, split: str, lang: str | None = None,
                        intent_turns: IntentTurns = "active_intent") -> list[SgdIntentExample]:
    """The intent examples of one split of an SGD/XSGD folder (see `split_dir`), validated."""
    folder = split_dir(data_dir, split)
    dialogues, files = read_dialogues_and_files(folder, lang)
    return intent_examples(dialogues, read_schema(folder), intent_turns, lang,
                           schema_path=folder / "schema.json", files=files)


def xsgd_lang(locale: str) -> str | None:
    """The `utterance_<code>` code of `locale`, None for English (SGD's `utterance`)."""
    if locale == SOURCE_LOCALE:
        return None
    code = xsgd_code_for(locale)
    if code is None:
        raise XsweepError(f"XSGD has no translation for {locale}", where="data.eval_locales",
                          fix="remove it from the SGD experiment's locales")
    return code


def read_locale_examples(data_dir: Path, locale: str, split: str,
                         intent_turns: IntentTurns = "active_intent") -> list[SgdIntentExample]:
    """All intent examples (user frames) of one split in one MASSIVE locale (see `xsgd_lang`)."""
    return read_split_examples(Path(data_dir), split, xsgd_lang(locale), intent_turns)


def translation_codes(folder: Path) -> list[str]:
    """XSGD codes whose `utterance_<code>` the split folder's turns carry (empty for SGD itself),
    read off the first turn of the first dialogue file; `read_dialogues(folder, code)` checks
    every turn has it."""
    dialogues = _load_json(dialogue_files(folder)[0])
    turns = dialogues[0].get("turns") if isinstance(dialogues, list) and dialogues and \
        isinstance(dialogues[0], dict) else None
    if not turns or not isinstance(turns[0], dict):
        return []
    return sorted(k[len("utterance_"):] for k in turns[0] if k.startswith("utterance_"))


def sgd_locales(data_dir: Path, split: str = "test") -> list[str]:
    """English, plus the MASSIVE locale of every XSGD translation the split's turns carry
    (XSGD-only languages have no MASSIVE locale and are left out). Plain SGD: ["en-US"]."""
    codes = translation_codes(split_dir(data_dir, split))
    return [SOURCE_LOCALE] + sorted({loc for code in codes if (loc := _locale_of(code))})


def _locale_of(code: str) -> str | None:
    try:
        return locale_for_xsgd(code)
    except XsweepError:  # a field name that is not an XSGD code: not a language we report
        return None


@dataclass(frozen=True)
class DialogueSample:
    """Dialogue ids sampled per service, and the services that had fewer than asked."""

    ids: list[str]
    by_service: dict[str, list[str]]
    short_services: dict[str, int] = field(default_factory=dict)
    per_service: int = 5
    seed: int = 0


def sample_dialogues(dialogues: Sequence[dict], per_service: int = 5,
                     seed: int = 0) -> DialogueSample:
    """`per_service` dialogues per service (the paper's 5-shot SGD training set), seeded.

    Each service draws from its own seeded stream among the dialogues that involve it, so the
    draw for one service does not depend on the others: some services (Travel_1 in SGD train)
    occur only in multi-service dialogues, and excluding dialogues already drawn for another
    service would starve them. A dialogue drawn for two services is kept once in `ids`.
    The result depends on the set of dialogues, not their order.
    """
    if per_service < 1:
        raise XsweepError(f"per_service must be >= 1, got {per_service}", fix="use e.g. 5")
    by_id = {d["dialogue_id"]: d for d in dialogues}
    services = sorted({s for d in dialogues for s in d["services"]})
    if not services:
        raise XsweepError("no dialogues to sample from", fix="check the split folder")
    taken: set[str] = set()
    by_service: dict[str, list[str]] = {}
    short: dict[str, int] = {}
    for svc in services:
        pool = sorted(i for i, d in by_id.items() if svc in d["services"])
        k = min(per_service, len(pool))
        if k < per_service:
            short[svc] = k
        chosen = sorted(random.Random(f"{seed}:{svc}").sample(pool, k))
        by_service[svc] = chosen
        taken.update(chosen)
    ids = sorted(taken)
    return DialogueSample(ids=ids, by_service=by_service, short_services=short,
                          per_service=per_service, seed=seed)


def save_dialogue_sample(sample: DialogueSample, path: Path) -> None:
    """Write the sampled ids (per service too) as JSON, atomically, for an exact re-run."""
    write_json(path, {"ids": sample.ids, "by_service": sample.by_service,
                      "short_services": sample.short_services,
                      "per_service": sample.per_service, "seed": sample.seed})


def sample_training_examples(train: Sequence[SgdIntentExample], per_service: int | None, seed: int,
                             path: Path) -> list[SgdIntentExample]:
    """The frames of `per_service` dialogues per service (None: every dialogue), drawn from the
    dialogues of `train` with `seed` (sample_dialogues); the sampled ids are written to `path`."""
    services: dict[str, set[str]] = {}
    for example in train:
        services.setdefault(example.dialogue_id, set()).add(example.service)
    dialogues = [{"dialogue_id": d, "services": sorted(s)} for d, s in services.items()]
    sample = sample_dialogues(dialogues, per_service or max(len(dialogues), 1), seed)
    save_dialogue_sample(sample, path)
    keep = set(sample.ids)
    return [example for example in train if example.dialogue_id in keep]


def select_dialogues(dialogues: Sequence[dict], ids: Sequence[str]) -> list[dict]:
    """The dialogues with the given ids, in `ids` order; a missing id is an error."""
    by_id = {d["dialogue_id"]: d for d in dialogues}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise XsweepError(f"{len(missing)} saved dialogue ids are not in the data "
                          f"(first: {missing[0]!r})", fix="use the same SGD files as the run")
    return [by_id[i] for i in ids]
