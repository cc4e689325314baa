"""Damaged lines, generated: every reader, and the checks before Ray, either parse a row or raise
xsweep's error naming the file; never a traceback (issue 13).

Each example takes a valid file of one format (MASSIVE, SGD, Tatoeba, parallel TSV, CoNLL) and
damages it the way copies get damaged: a line cut short, a field of the wrong type, a missing or
an extra field, bytes that are not UTF-8. `max_examples` keeps each property to a few seconds.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

WRONG_VALUES = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2), st.text(max_size=5))
BAD_BYTES = st.sampled_from([b"\xff", b"\xe9", b"\xc3", b"\x80\x80", b"\xed\xa0\x80", b"\x00"])


@st.composite
def damaged_bytes(draw, text: bytes) -> bytes:
    """`text` cut, with bad bytes inserted, or lines dropped/duplicated/swapped."""
    kind = draw(st.sampled_from(["cut", "bytes", "drop_line", "blank_line", "extra_tab"]))
    lines = text.split(b"\n")
    if kind == "cut":
        return text[:draw(st.integers(0, len(text)))]
    if kind == "bytes":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(BAD_BYTES) + text[at:]
    i = draw(st.integers(0, max(len(lines) - 1, 0)))
    if kind == "drop_line":
        return b"\n".join(lines[:i] + lines[i + 1:])
    if kind == "blank_line":
        return b"\n".join(lines[:i] + [b""] + lines[i:])
    return b"\n".join(lines[:i] + [lines[i] + b"\textra"] + lines[i + 1:])


@st.composite
def damaged_record(draw, record: dict) -> dict:
    """A JSON object with a field missing, of a wrong type, or an extra field."""
    record = json.loads(json.dumps(record))
    kind = draw(st.sampled_from(["missing", "wrong_type", "extra"]))
    key = draw(st.sampled_from(sorted(record)))
    if kind == "missing":
        del record[key]
    elif kind == "wrong_type":
        record[key] = draw(WRONG_VALUES)
    else:
        record[draw(st.text(min_size=1, max_size=6))] = draw(WRONG_VALUES)
    return record


def parses_or_names(path: Path, read) -> None:
    """`read()` returns, or raises XsweepError naming a file of `path`'s folder (the damaged file,
    or one the damage made inconsistent with it: a dev row whose intent a cut train file lost);
    never anything else."""
    try:
        read()
    except XsweepError as exc:
        assert str(path.parent) in exc.message, exc.message
        assert exc.fix, exc.message


# --- MASSIVE, through the reader and the checks before Ray ---------------------------------------

def massive_rows(locale: str) -> list[dict]:
    rows, n = [], 0
    for partition in ("train", "dev", "test"):
        for intent in ("alarm_set", "play_music"):
            for i in range(2):
                words = f"{intent.replace('_', ' ')} {i}"
                rows.append({"id": str(n), "locale": locale, "partition": partition, "scenario": "s",
                             "intent": intent, "utt": words, "annot_utt": f"{words} [time : {i} am]"})
                n += 1
    return rows


def _massive_check(folder: Path, slots: bool):
    from xsweep.config import ExperimentConfig
    from xsweep.sweep.preflight import check_data

    cfg = ExperimentConfig()
    cfg.data.path = str(folder)
    cfg.head.kind = "slot" if slots else "vanilla"
    return lambda: check_data(cfg, folder, ["en-US", "de-DE"])


@FUZZ
@given(data=st.data(), by_record=st.booleans(), slots=st.booleans(), gz=st.booleans())
def test_massive_reader_and_checks(data, by_record, slots, gz):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "en-US.jsonl").write_text("".join(json.dumps(r) + "\n" for r in massive_rows("en-US")))
        rows = massive_rows("de-DE")
        if by_record:
            i = data.draw(st.integers(0, len(rows) - 1))
            rows[i] = data.draw(damaged_record(rows[i]))
            raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
        else:
            raw = data.draw(damaged_bytes("".join(json.dumps(r) + "\n" for r in rows).encode()))
        path = folder / ("de-DE.jsonl.gz" if gz else "de-DE.jsonl")
        packed = gzip.compress(raw) if gz else raw
        if gz and data.draw(st.booleans()):
            packed = packed[:data.draw(st.integers(0, len(packed)))]  # a truncated download
        path.write_bytes(packed)
        from xsweep.data.massive import read_massive

        parses_or_names(path, lambda: read_massive(folder, "de-DE"))
        parses_or_names(path, _massive_check(folder, slots))


# --- SGD / XSGD -----------------------------------------------------------------------------------

SCHEMA = [{"service_name": "Alarm_1", "description": "alarms", "slots": [{"name": "time"}],
           "intents": [{"name": "AddAlarm", "description": "set an alarm"}]}]


def dialogue(i: int) -> dict:
    return {"dialogue_id": f"1_{i:05d}", "services": ["Alarm_1"], "turns": [
        {"speaker": "USER", "utterance": "wake me at 7", "utterance_de": "weck mich um 7",
         "frames": [{"service": "Alarm_1", "actions": [{"act": "INFORM_INTENT"}],
                     "state": {"active_intent": "AddAlarm"}}]},
        {"speaker": "SYSTEM", "utterance": "done", "utterance_de": "erledigt",
         "frames": [{"service": "Alarm_1", "actions": []}]}]}


@FUZZ
@given(data=st.data(), where=st.sampled_from(["dialogue", "turn", "frame", "bytes"]))
def test_sgd_reader(data, where):
    from xsweep.data.parallel import xsgd_documents
    from xsweep.data.sgd import read_split_examples

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "train"
        folder.mkdir()
        (folder / "schema.json").write_text(json.dumps(SCHEMA))
        dialogues = [dialogue(0), dialogue(1)]
        if where == "dialogue":
            dialogues[1] = data.draw(damaged_record(dialogues[1]))
        elif where == "turn":
            t = data.draw(st.integers(0, 1))
            dialogues[1]["turns"][t] = data.draw(damaged_record(dialogues[1]["turns"][t]))
        elif where == "frame":
            t = data.draw(st.integers(0, 1))
            frame = dialogues[1]["turns"][t]["frames"][0]
            dialogues[1]["turns"][t]["frames"][0] = data.draw(damaged_record(frame))
        raw = json.dumps(dialogues, indent=1).encode()
        if where == "bytes":
            raw = data.draw(damaged_bytes(raw))
        path = folder / "dialogues_001.json"
        path.write_bytes(raw)
        for intent_turns in ("active_intent", "intent_acts"):
            parses_or_names(path, lambda: read_split_examples(Path(tmp), "train", None, intent_turns))
        parses_or_names(path, lambda: read_split_examples(Path(tmp), "train", "de"))
        parses_or_names(path, lambda: xsgd_documents(Path(tmp), "train", "de"))


# --- Tatoeba and parallel text -------------------------------------------------------------------

@FUZZ
@given(data=st.data(), side=st.sampled_from(["pol", "eng"]))
def test_tatoeba_and_tsv_readers(data, side):
    from xsweep.data.parallel import line_aligned_documents, tsv_documents
    from xsweep.data.tatoeba import read_tatoeba

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pol, eng = folder / "tatoeba.pol-eng.pol", folder / "tatoeba.pol-eng.eng"
        pol.write_text("Jestem tutaj.\nDzięki.\nDobranoc.\n", encoding="utf-8")
        eng.write_text("I am here.\nThanks.\nGood night.\n", encoding="utf-8")
        damaged = pol if side == "pol" else eng
        damaged.write_bytes(data.draw(damaged_bytes(damaged.read_bytes())))
        parses_or_names(damaged, lambda: read_tatoeba(folder, "pol"))
        parses_or_names(damaged, lambda: line_aligned_documents(eng, pol, "pl-PL"))
        tsv = folder / "pairs.tsv"
        tsv.write_bytes(data.draw(damaged_bytes("I am here.\tJestem tutaj.\nThanks.\tDzięki.\n".encode())))
        parses_or_names(tsv, lambda: tsv_documents(tsv, "pl-PL"))


# --- CoNLL ------------------------------------------------------------------------------------------

CONLL = """\
# id = 1
# text = wake me at 7
# intent = alarm/set_alarm
1\twake\talarm/set_alarm\tO
2\tme\talarm/set_alarm\tO
3\tat\talarm/set_alarm\tO
4\t7\talarm/set_alarm\tB-datetime

# id: 2
# text: rain in Bern
# intent: weather/find
1\train\tweather/find\tO
2\tin\tweather/find\tO
3\tBern\tweather/find\tB-weather/location
"""


@FUZZ
@given(data=st.data(), cell=st.one_of(st.text(max_size=6), st.sampled_from(["", "B-", "I-x y", "O\tO", "-1"])))
def test_conll_reader_and_checks(data, cell):
    from xsweep.config import ExperimentConfig
    from xsweep.data.conll import read_conll_file
    from xsweep.sweep.preflight import check_data

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = CONLL.split("\n")
        if data.draw(st.booleans()):  # one column of a token line replaced
            i = data.draw(st.sampled_from([3, 4, 5, 6, 11, 12, 13]))
            cols = lines[i].split("\t")
            cols[data.draw(st.integers(0, 3))] = cell
            lines[i] = "\t".join(cols)
            raw = "\n".join(lines).encode("utf-8", "surrogatepass")
        else:
            raw = data.draw(damaged_bytes(CONLL.encode()))
        path = folder / "en.train.conll"
        path.write_bytes(raw)
        (folder / "en.valid.conll").write_text(CONLL, encoding="utf-8")
        (folder / "de.test.conll").write_text(CONLL, encoding="utf-8")
        parses_or_names(path, lambda: read_conll_file(path, "en", "train"))
        cfg = ExperimentConfig()
        cfg.data.dataset, cfg.data.path, cfg.data.train_locale = "conll", str(folder), "en"
        parses_or_names(path, lambda: check_data(cfg, folder, ["de"]))
