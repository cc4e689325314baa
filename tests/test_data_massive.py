"""MASSIVE reader and slot parser, on the real shared files and on broken ones."""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from xsweep.data.massive import (
    available_locales,
    intent_labels,
    locale_file,
    parse_annot_utt,
    read_massive,
    slot_labels,
    split_words,
)
from xsweep.errors import XsweepError
from xsweep.paths import shared_data_dir

pytestmark = pytest.mark.timeout(60)

# Real data is required (tests/conftest.py's `shared_data` fails loudly where it is missing).
MASSIVE = shared_data_dir() / "massive"
UTT_ONLY = MASSIVE / "utt-only"
UTT_ONLY_LOCALES = ["ar-SA", "de-DE", "es-ES", "fr-FR", "hi-IN", "id-ID", "ja-JP", "ko-KR",
                    "ru-RU", "th-TH", "tr-TR", "zh-TW"]


@pytest.fixture(scope="module")
def en_us(shared_data):
    return read_massive(MASSIVE, "en-US")


def test_real_en_us_counts(en_us):
    assert not (MASSIVE / "1.1" / "data" / "en-US.jsonl").read_bytes().endswith(b"\n")
    counts = Counter(ex.partition for ex in en_us)
    assert counts == {"train": 11514, "dev": 2033, "test": 2974}
    labels = intent_labels(en_us)
    assert len(labels) == 60 and labels == sorted(labels)
    assert len(slot_labels(en_us)) == 55
    assert read_massive(MASSIVE, "en-US", ["dev"]) == [e for e in en_us if e.partition == "dev"]


def test_real_slot_parse_round_trips_en_and_de(en_us):
    de_dev = read_massive(MASSIVE, "de-DE", ["dev"])
    assert len(de_dev) == 2033
    for ex in en_us + de_dev:
        words, labels = parse_annot_utt(ex.annot_utt, ex.locale)
        assert words == split_words(ex.utt, ex.locale), ex.id
        assert len(labels) == len(words)
    words, labels = parse_annot_utt(en_us[0].annot_utt, "en-US")
    assert words == "wake me up at five am this week".split()
    assert labels == ["Other"] * 4 + ["time", "time", "date", "date"]


def test_real_de_dev_has_ids_parallel_to_en(en_us):
    en_dev = {ex.id: ex for ex in en_us if ex.partition == "dev"}
    de_dev = read_massive(MASSIVE, "de-DE", ["dev"])
    assert all(ex.id in en_dev and en_dev[ex.id].intent == ex.intent for ex in de_dev)
    # The file holds only dev rows: asking for train is an empty split, an error.
    with pytest.raises(XsweepError, match="partition 'train' is empty"):
        read_massive(MASSIVE, "de-DE", ["train"])


def test_real_utt_only_locales_read_from_gz(shared_data):
    assert available_locales(UTT_ONLY) == UTT_ONLY_LOCALES
    for locale in ("ja-JP", "zh-TW"):
        rows = read_massive(UTT_ONLY, locale, ["test"])
        assert len(rows) == 2974 and all(ex.annot_utt is None for ex in rows)
        assert locale_file(UTT_ONLY, locale).name == f"{locale}.jsonl.gz"
        # No spaces between words: the character split still yields many words per utterance.
        assert split_words(rows[0].utt, locale) and " " not in rows[0].utt


def test_parse_handles_irregular_spacing_colons_and_cjk():
    words, labels = parse_annot_utt("[ time :5:30 pm ] wake[date: tomorrow ]  now", "en-US")
    assert words == ["5:30", "pm", "wake", "tomorrow", "now"]
    assert labels == ["time", "time", "Other", "date", "Other"]
    words, labels = parse_annot_utt("[date : 今週] の [time : 午前5時] にiPhoneで起こして", "ja-JP")
    assert words[:7] == ["今", "週", "の", "午", "前", "5", "時"]
    assert "iPhone" in words and labels[words.index("iPhone")] == "Other"
    assert labels[:3] == ["date", "date", "Other"]
    for bad in ("wake me [time : five", "wake ] me", "[time : ] now"):
        with pytest.raises(XsweepError):
            parse_annot_utt(bad, "en-US")


def _row(**over):
    row = {"id": "1", "locale": "en-US", "partition": "train", "scenario": "alarm",
           "intent": "alarm_set", "utt": "wake me", "annot_utt": "wake me", "worker_id": "1"}
    row.update(over)
    return json.dumps(row)


def _write(folder: Path, text: str, name: str = "en-US.jsonl") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_truncated_line_names_file_and_line(tmp_path):
    _write(tmp_path, _row() + "\n" + _row(id="2")[:40] + "\n")
    with pytest.raises(XsweepError) as e:
        read_massive(tmp_path, "en-US")
    assert e.value.where.endswith("en-US.jsonl:2") and "malformed JSON" in e.value.what


def test_wrong_type_and_missing_field_name_the_field(tmp_path):
    _write(tmp_path, _row() + "\n" + _row(intent=3))
    with pytest.raises(XsweepError) as e:
        read_massive(tmp_path, "en-US")
    assert "'intent'" in e.value.what and e.value.where.endswith(":2")
    row = json.loads(_row())
    del row["partition"]
    _write(tmp_path, json.dumps(row))
    with pytest.raises(XsweepError, match="missing field 'partition'"):
        read_massive(tmp_path, "en-US")


def test_empty_file_is_an_error(tmp_path):
    _write(tmp_path, "")
    with pytest.raises(XsweepError, match="empty"):
        read_massive(tmp_path, "en-US")


def test_missing_locale_says_which_where_and_how(tmp_path):
    _write(tmp_path / "1.1" / "data", _row())
    assert read_massive(tmp_path, "en-US")[0].intent == "alarm_set"  # archive root accepted
    with pytest.raises(XsweepError) as e:
        read_massive(tmp_path, "fr-FR")
    assert "fr-FR" in e.value.what and str(tmp_path) in e.value.where
    assert "en-US" in e.value.fix and "download" in e.value.fix
    with pytest.raises(XsweepError, match="fr-FX"):
        read_massive(tmp_path, "fr-FX")  # not a MASSIVE locale at all


def test_gz_file_reads_like_plain(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    with gzip.open(tmp_path / "en-US.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(_row() + "\n" + _row(id="2", partition="test"))
    assert [ex.id for ex in read_massive(tmp_path, "en-US", ["test"])] == ["2"]


def test_official_tarball_is_read_without_unpacking(tmp_path):
    _write(tmp_path / "src" / "1.1" / "data", _row() + "\n" + _row(id="2", partition="dev"))
    _write(tmp_path / "src" / "1.1" / "data", _row(locale="de-DE"), name="de-DE.jsonl")
    tar = tmp_path / "amazon-massive-dataset-1.1.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "src" / "1.1", arcname="1.1")
    assert available_locales(tar) == ["de-DE", "en-US"]
    assert [ex.id for ex in read_massive(tar, "en-US", ["dev"])] == ["2"]
    with pytest.raises(XsweepError) as e:
        read_massive(tar, "fr-FR")
    assert "de-DE, en-US" in e.value.fix and str(tar) in e.value.where
