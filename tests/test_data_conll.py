"""CoNLL intent/slot data (xSID layout, `data.dataset: conll`): the reader on fixtures written here
in the published format, the checks before Ray, and a small PT sweep end to end on 4 languages."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.data.conll import conll_languages, read_conll, read_conll_file
from xsweep.errors import XsweepError

pytestmark = pytest.mark.timeout(60)

# (intent, words with their slot) per language; `/` in intent and slot names as in xSID.
WORDS = {
    "en": {"weather": "weather", "in": "in", "will": "will it rain", "wake": "wake me up", "at": "at",
           "remind": "remind me to", "call": "call mom", "tomorrow": "tomorrow"},
    "de": {"weather": "Wetter", "in": "in", "will": "regnet es", "wake": "weck mich", "at": "um",
           "remind": "erinnere mich", "call": "Mama anrufen", "tomorrow": "morgen"},
    "de-st": {"weather": "Weda", "in": "z'", "will": "regnats", "wake": "weck mi", "at": "um",
              "remind": "erinner mi", "call": "d'Mama oruafa", "tomorrow": "moang"},
    "gsw": {"weather": "Wätter", "in": "in", "will": "rägnets", "wake": "weck mi", "at": "um",
            "remind": "erinner mi", "call": "s'Mami alüte", "tomorrow": "morn"},
}
PLACES = ["Berlin", "Wien", "Zürich", "Graz", "Basel", "Bern"]
TIMES = ["7", "8", "9", "6", "10", "5"]


def utterances(lang: str, n: int) -> list[tuple[str, list[tuple[str, str]]]]:
    """n utterances per intent: (intent, [(token, BIO tag)])."""
    w = WORDS[lang]
    out = []

    def toks(text: str, tag: str = "O") -> list[tuple[str, str]]:
        words = text.split()
        if tag == "O":
            return [(t, "O") for t in words]
        return [(t, ("B-" if i == 0 else "I-") + tag) for i, t in enumerate(words)]

    for i in range(n):
        place, time = PLACES[i % len(PLACES)], TIMES[i % len(TIMES)]
        out.append(("weather/find", toks(w["will"]) + toks(w["in"]) + toks(place, "location")
                    + toks(w["tomorrow"], "datetime")))
        out.append(("alarm/set_alarm", toks(w["wake"]) + toks(w["at"]) + toks(time, "datetime")))
        out.append(("reminder/set_reminder", toks(w["remind"]) + toks(w["call"], "reminder/todo")
                    if i % 2 else toks(w["remind"] + " " + w["call"])))  # a block with no slots
    return out


def write_conll(path: Path, lang: str, n: int) -> Path:
    blocks = []
    for k, (intent, tokens) in enumerate(utterances(lang, n)):
        sep = "=" if k % 2 else ":"  # the family writes both `# key = value` and `# key: value`
        split = path.name.split(".")[-2]
        lines = [f"# id {sep} {lang}-{split}-{k}", f"# text {sep} {' '.join(t for t, _ in tokens)}",
                 f"# intent {sep} {intent}"]
        lines += [f"{i}\t{token}\t{intent}\t{tag}" for i, (token, tag) in enumerate(tokens, start=1)]
        blocks.append("\n".join(lines))
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    return path


def write_folder(folder: Path, train: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_conll(folder / "en.train.conll", "en", train)
    write_conll(folder / "en.valid.conll", "en", 2)
    for lang in WORDS:
        write_conll(folder / f"{lang}.test.conll", lang, 2)
    return folder


@pytest.fixture
def conll(tmp_path) -> Path:
    return write_folder(tmp_path / "xsid")


def test_reader_reads_the_layout(conll):
    assert conll_languages(conll) == ["de", "de-st", "en", "gsw"] and conll_languages(conll, "train") == ["en"]
    rows = read_conll(conll, "de-st", "test")
    assert len(rows) == 6 and {r.locale for r in rows} == {"de-st"} and {r.partition for r in rows} == {"test"}
    weather = rows[0]
    assert weather.intent == "weather/find" and weather.id == "de-st-test-0"
    assert weather.words == ("regnats", "z'", "Berlin", "moang")
    assert weather.tags == ("O", "O", "B-location", "B-datetime")
    assert weather.utt == "regnats z' Berlin moang" and weather.where == f"{conll / 'de-st.test.conll'}:1"
    assert set(rows[2].tags) == {"O"}  # the block with no slots
    assert rows[5].tags[-2:] == ("B-reminder/todo", "I-reminder/todo")
    assert [r.partition for r in read_conll(conll, "en", "dev")] == ["dev"] * 6  # `valid` is dev


TOKEN = "1\twake\talarm/set_alarm\tO"
BLOCK = "# id = en-train-1"  # the first line of the alarm block


@pytest.mark.parametrize("damage, message, anchor", [
    (lambda t: t.replace(TOKEN, "1\twake\talarm/set_alarm"), r"3 tab-separated column\(s\), expected 4", TOKEN),
    (lambda t: t.replace(TOKEN, "1\twake\talarm/set_alarm\tX-time"), "is not BIO", TOKEN),
    (lambda t: t.replace(TOKEN, "one\twake\talarm/set_alarm\tO"), "is not a number", TOKEN),
    (lambda t: t.replace("# intent = alarm/set_alarm\n", "", 1).replace("\twake\talarm/set_alarm\t", "\twake\tweather/find\t"),
     "block has no intent", BLOCK),
    (lambda t: t.replace(BLOCK, "# id = en-train-0"), "appears twice", BLOCK),
])
def test_malformed_block_names_file_and_line(tmp_path, damage, message, anchor):
    path = write_conll(tmp_path / "en.train.conll", "en", 2)
    text = path.read_text(encoding="utf-8")
    line = text.splitlines().index(anchor) + 1
    damaged = damage(text)
    assert damaged != text
    path.write_text(damaged, encoding="utf-8")
    with pytest.raises(XsweepError, match=message) as info:
        read_conll_file(path, "en", "train")
    assert info.value.where == f"{path}:{line}" and info.value.fix


def test_bad_bytes_and_broken_gz_free_reader(tmp_path):
    path = write_conll(tmp_path / "en.train.conll", "en", 2)
    path.write_bytes(path.read_bytes().replace(b"wake", b"w\xe4ke", 1))
    with pytest.raises(XsweepError, match="not valid UTF-8") as info:
        read_conll_file(path, "en", "train")
    line = next(i for i, raw in enumerate(path.read_bytes().split(b"\n"), start=1) if b"w\xe4ke" in raw)
    assert info.value.where == f"{path}:{line}"


EXPERIMENT = """\
name: xsid
method: pt
backbone: {{name: "builtin:micro"}}
data: {{dataset: conll, path: {data}, train_locale: en, max_seq_len: 24}}
head: {{kind: {head}}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 2, batch_size: 16, patience: 2, lr: 1.0e-2}}
sweep: {{grid: {{optim.lr: [1.0e-2]}}, seeds: [0, 1]}}
storage: {{root: {root}}}
resources: {{cpus_per_trial: 1}}
"""


def experiment(tmp_path: Path, data: Path, head: str = "vanilla") -> Path:
    path = tmp_path / f"{head}.yaml"
    path.write_text(EXPERIMENT.format(data=data, head=head, root=tmp_path / "runs"))
    return path


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xsweep: error: ") and "\n  fix: " in err and "Traceback" not in err
    return err


def test_locales_come_from_the_folder_checked_before_ray(tmp_path, conll, capsys, monkeypatch):
    import xsweep.sweep.runner as runner

    def guard(*args, **kwargs):
        raise AssertionError("reached Ray")

    monkeypatch.setattr(runner, "start_ray", guard)
    path = experiment(tmp_path, conll)
    assert main(["validate", str(path), "--set", "data.eval_locales=[en, de-st, gsw]"]) == 0  # not MASSIVE locales
    err = _error(capsys, ["run", str(path), "data.eval_locales=[en, de-sd]"])
    assert "no de-sd.test.conll" in err and "did you mean de-st" in err and "languages there: de, de-st, en, gsw" in err
    err = _error(capsys, ["run", str(path), "data.train_locale=de"])
    assert "data.train_locale" in err and "de.train.conll and de.valid.conll" in err
    # A test intent the training split lacks is caught before any trial, with its file and line.
    gsw = conll / "gsw.test.conll"
    gsw.write_text(gsw.read_text(encoding="utf-8").replace("weather/find", "weather/forecast"), encoding="utf-8")
    err = _error(capsys, ["run", str(path)])
    assert "'weather/forecast'" in err and f"{gsw}:1" in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_small_pt_sweep_end_to_end(tmp_path, ray_session):
    """4 languages (a dialect tag among them), PT, 2 seeds, NLI intents and slots in one sweep:
    per-language scores and AVG (std) for each head."""
    data = write_folder(tmp_path / "xsid")
    path = experiment(tmp_path, data, "nli")
    assert main(["run", str(path), "sweep.grid={head.kind: [nli, slot], optim.lr: [1.0e-2]}", "optim.epochs=1"]) == 0
    run = tmp_path / "runs" / "xsid"
    by_task = {}
    for labels_file in (run / "trials").glob("*/labels.json"):
        labels = json.loads(labels_file.read_text())
        by_task[labels["task"]] = (labels, labels_file.parent)
    assert sorted(by_task) == ["conll_slot", "nli"]
    slot_labels, slot_trial = by_task["conll_slot"]
    assert slot_labels["slots"] == ["Other", "datetime", "location", "reminder/todo"]
    first = json.loads((slot_trial / "predictions" / "gsw.jsonl").read_text().splitlines()[0])
    assert first["gold"] == ["O", "O", "B-location", "B-datetime"]  # the file's own BIO spans
    nli_labels, _ = by_task["nli"]
    assert nli_labels["intents"] == ["alarm/set_alarm", "reminder/set_reminder", "weather/find"]
    assert nli_labels["hypotheses"] == ["alarm set alarm", "reminder set reminder", "weather find"]
    text = (run / "results" / "results.md").read_text()
    with open(run / "results" / "results.csv", newline="") as f:
        assert list(csv.DictReader(f))
    for lang in ("| en ", "| de ", "| de-st ", "| gsw "):
        assert lang in text, text
    avg = next(line for line in text.splitlines() if line.startswith("| AVG"))
    assert len(re.findall(r"\*{0,2}\d+\.\d\*{0,2} \(\d+\.\d\)", avg)) == 2, avg  # AVG (std over seeds), per head
