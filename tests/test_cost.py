"""The dry run's cost projection: its arithmetic on a tiny MASSIVE-format folder; its sizes against
the real MASSIVE release in ../shared/data and the real models' parameter counts; and that
`xsweep run --dry-run` prints it and runs nothing (no Ray, no run directory)."""

from __future__ import annotations

import gzip
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.config import load_config
from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT
from xsweep.sweep.cost import MEAN_UTTERANCE_TOKENS, backbone_size, data_size, describe_cost, parse_throughput, project

# train: intent a 7 utterances, b 3, c 5; dev 4; test 6 (en-US) and 2 (de-DE)
TRAIN = {"a": 7, "b": 3, "c": 5}
DEV, TEST = 4, {"en-US": 6, "de-DE": 2}


def write_massive(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for locale in ("en-US", "de-DE"):
        rows, n = [], 0

        def add(partition: str, intent: str) -> None:
            nonlocal n
            rows.append({"id": str(n), "locale": locale, "partition": partition, "scenario": "s", "intent": intent,
                         "utt": "one two three four five", "annot_utt": "one two three four five"})
            n += 1

        for intent, count in TRAIN.items():
            for _ in range(count):
                add("train", intent)
        for i in range(DEV):
            add("dev", "abc"[i % 3])
        for i in range(TEST[locale]):
            add("test", "abc"[i % 3])
        (folder / f"{locale}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return folder


def write_config(tmp_path: Path, head: str = "vanilla", evaluate: str = "selected") -> Path:
    data = write_massive(tmp_path / "data")
    path = tmp_path / "exp.yaml"
    path.write_text(f"""
name: tiny_cost
method: pt
backbone: {{name: "builtin:micro"}}
data: {{path: {data}, eval_locales: all}}
prompt: {{kind: layer, length: 4}}
head: {{kind: {head}}}
optim: {{epochs: 10, batch_size: 4, eval_every_epochs: 3}}
storage: {{root: {tmp_path / 'runs'}}}
sweep:
  evaluate: {evaluate}
  grid:
    variant:
      - {{method: ft, prompt.kind: none, optim.epochs: 2, optim.eval_every_epochs: 1}}
      - {{method: pt}}
    data.shots: [2, null]
    optim.lr: [0.1, 0.01, 0.001]
  seeds: [0, 1]
""", encoding="utf-8")
    return path


def test_counts_of_a_small_grid(tmp_path):
    cfg = load_config(write_config(tmp_path))
    data = data_size(cfg)
    assert data.intents == 3 and data.dev == DEV and data.test == TEST
    assert data.train(2) == 2 + 2 + 2 and data.train(None) == 15 and data.train(4) == 4 + 3 + 4
    p = project(cfg, data, None)
    # 2 variants x 2 shot counts x 3 lrs x 2 seeds
    assert p.trials == 24 and p.trials_by_method == {"ft": 12, "pt": 12}
    per_lr_seed = (6 * 2 + 15 * 2) + (6 * 10 + 15 * 10)  # ft: 2 epochs; pt: 10 epochs
    assert p.train_examples == p.train_sequences == 3 * 2 * per_lr_seed
    steps = (2 * 2 + 4 * 2) + (2 * 10 + 4 * 10)  # ceil(6/4)=2, ceil(15/4)=4 steps an epoch
    assert p.steps == 6 * steps
    # ft: 2 evaluations (every epoch); pt: epochs 3, 6, 9 and the last (10)
    assert p.dev_evaluations == 6 * 2 * (2 + 4)
    assert p.dev_sequences == p.dev_evaluations * DEV
    # selected: every ft trial (12) tests itself; pt tests one lr's 2 seeds in each of 2 groups
    assert p.tested_trials == 12 + 2 * 2
    assert p.test_sequences == 16 * sum(TEST.values())


def test_evaluate_all_and_nli_multiply(tmp_path):
    cfg = load_config(write_config(tmp_path, head="nli", evaluate="all"))
    data = data_size(cfg)
    vanilla = project(load_config(write_config(tmp_path / "v")), data, None)
    p = project(cfg, data, None)
    assert p.tested_trials == 24
    assert p.train_examples == vanilla.train_examples
    assert p.train_sequences == 2 * p.train_examples  # a positive and a negative pair an utterance
    assert p.dev_sequences == vanilla.dev_sequences * 3  # every utterance against all 3 intents
    assert p.test_sequences == 24 * sum(TEST.values()) * 3


def read_rows(path: Path) -> list[dict]:
    """A MASSIVE file's rows, read here with json (not with xsweep's reader)."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line.strip()]


def layer_params_in(model_dir: str) -> int:
    """Parameters of the transformer layers in a BERT-layout weights file, counted from its tensors."""
    from safetensors import safe_open

    with safe_open(str(Path(model_dir) / "model.safetensors"), "pt") as weights:
        return sum(math.prod(weights.get_slice(k).get_shape()) for k in weights.keys() if k.startswith("encoder.layer."))


@pytest.fixture(scope="module")
def massive_en(shared_data) -> list[dict]:
    """All 16,521 rows of the official MASSIVE 1.1 en-US file."""
    return read_rows(shared_data / "massive" / "1.1" / "data" / "en-US.jsonl")


def test_published_massive_sizes_are_the_release(shared_data, massive_en):
    """`data.path: massive` is projected from split sizes written into the code, without the data:
    they must be the real release's counts (en-US in full, and the test split of 12 more locales)."""
    data = data_size(load_config(REPO_ROOT / "experiments" / "massive_intent_vanilla.yaml"))
    partitions = Counter(row["partition"] for row in massive_en)
    per_intent = Counter(row["intent"] for row in massive_en if row["partition"] == "train")
    assert data.train_per_intent == tuple(sorted(per_intent.values()))
    assert data.intents == len(per_intent) == 60
    assert data.train(None) == partitions["train"] and data.train(5) == sum(min(n, 5) for n in per_intent.values())
    assert data.dev == partitions["dev"]
    assert data.test["en-US"] == partitions["test"]
    assert len(data.test) == 52  # MASSIVE's 52 locales: eval_locales all
    others = sorted((shared_data / "massive" / "utt-only").glob("*.jsonl.gz"))
    assert len(others) == 12
    for path in others:
        locale = path.name.split(".")[0]
        assert data.test[locale] == sum(row["partition"] == "test" for row in read_rows(path)), locale


def test_mean_utterance_tokens_is_what_a_real_tokenizer_counts(massive_en, minilm_path):
    """The projection's tokens an utterance (no data on disk) against all-MiniLM-L6-v2's WordPiece on
    every en-US training utterance, specials included (the code says it measured 9.5)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    ids = tokenizer([row["utt"] for row in massive_en if row["partition"] == "train"])["input_ids"]
    measured = sum(map(len, ids)) / len(ids)
    assert abs(MEAN_UTTERANCE_TOKENS - measured) / measured < 0.1, measured


def test_flops_from_a_real_models_parameter_count(shared_data, massive_en, minilm_path, tmp_path):
    """FLOPs of an FT and a PT trial on the real en-US file and the real all-MiniLM-L6-v2, written out
    here from the formula the code documents, with the parameters counted from the weights file:
    forward = 2 x layer parameters x T + 4 x layers x hidden x T x (T + layer prompt); training adds
    a backward of 2x the forward for FT (forward + backward = the usual 6 x N x T) and 1x for PT."""
    n = layer_params_in(minilm_path)
    assert 1.0e7 < n < 1.1e7  # all-MiniLM-L6-v2: 22.7M parameters, 11.9M of them embeddings
    model = json.loads((Path(minilm_path) / "config.json").read_text())
    layers, hidden = model["num_hidden_layers"], model["hidden_size"]
    train = [row for row in massive_en if row["partition"] == "train"]
    dev = sum(row["partition"] == "dev" for row in massive_en)
    test = sum(row["partition"] == "test" for row in massive_en)
    # The code's estimate for a folder on disk: 1.1 sub-word tokens a word, plus <s> and </s>.
    t = 1.1 * sum(len(row["utt"].split()) for row in train) / len(train) + 2

    def forward(prompt: int) -> float:
        return 2 * n * t + 4 * layers * hidden * t * (t + prompt)

    path = tmp_path / "real.yaml"
    path.write_text(f"""
name: real_cost
method: pt
backbone: {{name: {minilm_path}}}
data: {{path: {shared_data / 'massive' / '1.1' / 'data'}, eval_locales: [en-US]}}
prompt: {{kind: layer, length: 4}}
optim: {{epochs: 2, eval_every_epochs: 1}}
storage: {{root: {tmp_path / 'runs'}}}
sweep:
  evaluate: all
  grid:
    variant: [{{method: ft, prompt.kind: none}}, {{method: pt}}]
    optim.lr: [0.01]
  seeds: [0]
""", encoding="utf-8")
    cfg = load_config(path)
    data = data_size(cfg)
    assert data.mean_tokens == pytest.approx(t)
    p = project(cfg, data, backbone_size(minilm_path))
    epochs = 2
    ft_train = len(train) * epochs * 3 * forward(0)
    pt_train = len(train) * epochs * 2 * forward(4)
    assert p.train_flops == pytest.approx(ft_train + pt_train, rel=1e-9)
    assert p.dev_flops == pytest.approx(epochs * dev * (forward(0) + forward(4)), rel=1e-9)
    assert p.test_flops == pytest.approx(test * (forward(0) + forward(4)), rel=1e-9)
    # FT is the textbook 6 x N x T a training token, plus a few percent of attention at T ~ 11.
    assert 1.0 < ft_train / (6 * n * t * len(train) * epochs) < 1.1


@pytest.mark.parametrize("name, layers, hidden, heads, intermediate", [
    ("xlm-roberta-base", 12, 768, 12, 3072),
    ("xlm-roberta-large", 24, 1024, 16, 4096),
])
def test_known_backbone_sizes_are_the_real_models(name, layers, hidden, heads, intermediate):
    """The table of known backbones (used when the model is not on disk) against the parameters of the
    real architecture, built by transformers on the meta device (no memory, no download) from the
    model's published config.json."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(vocab_size=250002, hidden_size=hidden, num_hidden_layers=layers,
                              num_attention_heads=heads, intermediate_size=intermediate,
                              max_position_embeddings=514, type_vocab_size=1)
    with torch.device("meta"):
        model = XLMRobertaModel(config, add_pooling_layer=False)
    size = backbone_size(name)
    assert size.layer_params == sum(p.numel() for p in model.encoder.parameters())
    assert size.embedding_params == sum(p.numel() for p in model.embeddings.parameters())
    assert backbone_size("someone/unknown-model") is None


def test_the_known_minilm_is_the_real_one(minilm_path):
    """all-MiniLM-L6-v2 by name (not on disk) has the layer parameters of its real weights file."""
    assert backbone_size("sentence-transformers/all-MiniLM-L6-v2").layer_params == layer_params_in(minilm_path)


def test_throughput_units():
    assert parse_throughput("1e14") == (1e14, "flop/s")
    assert parse_throughput("100T") == (1e14, "flop/s")
    assert parse_throughput("100TFLOP/s") == (1e14, "flop/s")
    assert parse_throughput("5k tok/s") == (5000.0, "tok/s")
    with pytest.raises(XsweepError):
        parse_throughput("fast")


def test_unknown_backbone_skips_flops(tmp_path):
    cfg = load_config(write_config(tmp_path), ["backbone.name=someone/unknown-model"])
    text = "\n".join(describe_cost(cfg, "1e12"))
    assert "FLOPs: skipped" in text and "device-hours" not in text


def test_dry_run_prints_the_projection_and_runs_nothing(tmp_path, monkeypatch, capsys):
    import xsweep.sweep.runner as runner

    def refuse(*args, **kwargs):
        raise AssertionError("--dry-run must not run the sweep")

    monkeypatch.setattr(runner, "run_sweep", refuse)
    monkeypatch.setattr(runner, "start_ray", refuse)
    assert main(["run", str(write_config(tmp_path)), "--dry-run", "--throughput", "1e9"]) == 0
    out = capsys.readouterr().out
    assert "cost projection (upper bounds" in out
    assert "trials: 24 (ft 12, pt 12)" in out
    assert "test: 16 trials x 2 locale(s)" in out
    assert "device-hours: at most" in out and "1.00e+09 FLOP/s (--throughput)" in out
    assert not (tmp_path / "runs").exists()
    assert main(["run", str(write_config(tmp_path / "b")), "--dry-run", "--throughput", "fast"]) == 2
