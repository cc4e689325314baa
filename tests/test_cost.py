"""The dry run's cost projection: its arithmetic on a tiny MASSIVE-format folder; its sizes against
the real MASSIVE release in ../shared/data and the real models' parameter counts; and that
`xsweep run --dry-run` prints it and runs nothing (no Ray, no run directory); and that its
time and memory figures come only from measurement: a stored rate of the same backbone width,
precision and device, an earlier run's early stopping (`--like`), gpu_check's memory per trial
(`--gpu-check`), a hub model's size from the Hugging Face cache."""

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
from xsweep.sweep.cost import MEAN_UTTERANCE_TOKENS, backbone_size, data_size, project
from xsweep.sweep.dry_run import describe_cost
from xsweep.sweep.throughput import parse_throughput

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


def test_dev_and_test_subsets_are_counted_at_their_size(tmp_path):
    """data.max_dev_examples and data.max_test_examples_per_locale cut what is evaluated, and the
    projection counts what is evaluated: a cap above a split's size changes nothing."""
    cfg = load_config(write_config(tmp_path))
    data = data_size(cfg)
    whole = project(cfg, data, None)
    cfg.data.max_dev_examples, cfg.data.max_test_examples_per_locale = 3, 5
    cut = project(cfg, data, None)
    assert cut.dev_sequences == whole.dev_evaluations * 3 < whole.dev_sequences
    assert cut.test_sequences == whole.tested_trials * sum(min(n, 5) for n in TEST.values())
    cfg.data.max_dev_examples, cfg.data.max_test_examples_per_locale = DEV + 1, max(TEST.values()) + 1
    assert project(cfg, data, None) == whole


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


# ---------------------------------------------------------------------------------------------
# From measurement: stored rates keyed by backbone width, precision and device; --like; --gpu-check


@pytest.fixture
def own_cache(tmp_path, monkeypatch) -> Path:
    """A cache of this test's own, so stored measurements of other tests (or the user's) do not count."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("XSWEEP_CACHE", str(cache))
    return cache


def store_rate(flop_per_s: float, backbone: str = "builtin:micro") -> None:
    """A measurement stored as bench/bench_step.py stores its result (its own storing function)."""
    from bench.bench_step import store_throughput

    store_throughput({"flop_per_s": flop_per_s, "backbone": backbone, "flop_per_s_threads": 2,
                      "machine": "x86_64, 2 CPUs"}, backbone)


def dry_run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(["run", *argv, "--dry-run"])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.timeout(30)
def test_a_stored_rate_counts_only_for_its_backbone_precision_and_device(tmp_path, own_cache, capsys):
    config = str(write_config(tmp_path))
    cfg = load_config(config)
    total = project(cfg, data_size(cfg), backbone_size("builtin:micro")).total_flops
    status, out, _ = dry_run(capsys, config)
    assert status == 0
    assert "device-hours: not measured for builtin:micro (hidden 64, FFN 256) at fp32 on CPU" in out
    assert "`python -m bench.bench_step --backbone builtin:micro` measures it" in out
    assert "stored measurements: none" in out

    store_rate(2e9)  # measured for builtin:micro, fp32 on the CPU
    status, out, _ = dry_run(capsys, config)
    assert f"device-hours: at most {total / 2e9 / 3600:,.1f} at 2.00e+09 FLOP/s measured for builtin:micro" in out
    assert "fp32 on cpu" in out
    # --throughput overrides the stored rate
    _, out, _ = dry_run(capsys, config, "--throughput", "1e9")
    assert f"at most {total / 1e9 / 3600:,.1f} at 1.00e+09 FLOP/s (--throughput)" in out

    # Another precision, another device, another backbone width: the stored CPU fp32 rate is not theirs.
    _, out, _ = dry_run(capsys, config, "optim.precision=bf16")
    assert "device-hours: not measured for builtin:micro (hidden 64, FFN 256) at bf16 on CPU" in out
    assert "stored measurements: 2.00e+09 FLOP/s measured for builtin:micro" in out
    _, out, _ = dry_run(capsys, config, "resources.gpus_per_trial=0.5")
    assert "not measured for builtin:micro (hidden 64, FFN 256) at bf16 on a GPU" in out
    assert "optim.precision auto: taken as bf16" in out and "python -m bench.gpu_check --out DIR" in out
    _, out, _ = dry_run(capsys, config, "backbone.name=builtin:tiny")
    assert "not measured for builtin:tiny (hidden 128, FFN 512) at fp32 on CPU" in out

    # A rate for builtin:tiny is added beside the first, not over it; measuring micro again replaces micro's.
    store_rate(5e9, "builtin:tiny")
    store_rate(3e9)
    stored = json.loads((own_cache / "throughput.json").read_text())["measurements"]
    assert sorted((m["backbone_name"], m["flop_per_s"]) for m in stored) == [("builtin:micro", 3e9),
                                                                              ("builtin:tiny", 5e9)]
    _, out, _ = dry_run(capsys, config, "backbone.name=builtin:tiny")
    assert "at 5.00e+09 FLOP/s measured for builtin:tiny" in out


@pytest.mark.timeout(30)
def test_an_older_stored_file_is_read_as_fp32_on_the_cpu(tmp_path, own_cache, capsys):
    # What bench_step wrote before measurements named their precision and device (git history).
    own_cache.mkdir()
    (own_cache / "throughput.json").write_text(json.dumps(
        {"flop_per_s": 4e9, "machine": "host (x86_64, 2 CPUs)", "threads": 2, "backbone": "builtin:micro",
         "date": "2026-11-24", "written_by": ".venv/bin/python -m bench.bench_step"}))
    config = str(write_config(tmp_path))
    _, out, _ = dry_run(capsys, config)
    assert "at 4.00e+09 FLOP/s measured for builtin:micro (hidden 64, FFN 256), fp32 on cpu" in out
    assert "older than precision and device in it, read as fp32 on CPU" in out
    _, out, _ = dry_run(capsys, config, "optim.precision=bf16")
    assert "not measured for builtin:micro (hidden 64, FFN 256) at bf16 on CPU" in out
    store_rate(6e9, "builtin:tiny")  # the old figure stays, as an entry of the new file
    _, out, _ = dry_run(capsys, config)
    assert "at 4.00e+09 FLOP/s measured for builtin:micro" in out


@pytest.fixture
def like_run(tmp_path) -> Path:
    """A run directory as the downstream loop leaves it (records written by xsweep.record, each with
    its trial's resolved config): PT trials of optim.epochs 8 that stopped after their dev evaluation
    of epoch 3 (patience 2 after a best at 1) and of epoch 8 (the last), one of optim.epochs 20 that
    stopped at 5, and a trial still running at 2, which is left out. A real run takes a minute on two
    cores (the built-in backbone's pretraining), for records of this same format."""
    from xsweep.config import to_dict
    from xsweep.record import DevPoint, TrialRecord, write_record

    run_dir = tmp_path / "runs" / "like_source"
    for index, (epochs, scores, status) in enumerate([
            (8, [0.5, 0.4, 0.45], "completed"),
            (8, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "completed"),
            (20, [0.3, 0.5, 0.4, 0.45, 0.2], "completed"),
            (8, [0.1, 0.2], "running")]):
        cfg = load_config(write_config(tmp_path / f"source{index}"), [f"optim.epochs={epochs}", "optim.patience=2"])
        record = TrialRecord(f"t{index}", "g", "group", lr=0.01, seed=index, status=status, precision="fp32",
                             config={**to_dict(cfg), "method": "pt"})
        for epoch, score in enumerate(scores, start=1):
            record.add_dev(DevPoint(step=10 * epoch, epoch=epoch, score=score, train_loss=1.0))
        write_record(record, run_dir / "trials" / record.trial_id)
    return run_dir


@pytest.mark.timeout(30)
def test_like_scales_the_upper_bound_by_the_early_stopping_of_a_real_run(tmp_path, own_cache, like_run, capsys):
    # Epochs each trial trained (its last dev evaluation) over its optim.epochs, read here with json.
    records = [json.loads(p.read_text()) for p in sorted(like_run.glob("trials/*/record.json"))]
    finished = [r for r in records if r["status"] == "completed"]
    shares = [max(point["epoch"] for point in r["dev_history"]) / r["config"]["optim"]["epochs"] for r in finished]
    assert shares == [3 / 8, 8 / 8, 5 / 20]
    fraction = sum(shares) / len(shares)
    config = write_config(tmp_path)
    pt_only = ["sweep.grid={data.shots: [2, null], optim.lr: [0.1, 0.01]}"]  # PT alone: the run's own method
    status, out, _ = dry_run(capsys, str(config), *pt_only, "--throughput", "1e9", "--like", str(like_run))
    assert status == 0
    cfg = load_config(config, pt_only)
    p = project(cfg, data_size(cfg), backbone_size("builtin:micro"))
    expected = fraction * (p.train_flops + p.dev_flops) + p.test_flops
    assert f"expected, like {like_run} (3 finished trial records; 1 unfinished left out; fp32)" in out
    assert f"trials trained pt {fraction:.0%} over 3 of their optim.epochs" in out
    assert f"FLOPs {expected:.2e} (upper bound {p.total_flops:.2e})" in out
    assert f"device-hours {expected / 1e9 / 3600:,.1f} (upper bound {p.total_flops / 1e9 / 3600:,.1f})" in out
    # FT was not in the run: it takes the overall share; without a rate, no device-hours are made up.
    _, out, _ = dry_run(capsys, str(config), "--like", str(like_run))
    assert f"other methods at the overall {fraction:.0%}" in out
    assert "device-hours not measured (above)" in out


@pytest.mark.timeout(30)
def test_a_bad_like_fails_before_anything_is_printed(tmp_path, capsys):
    config = str(write_config(tmp_path))
    status, out, err = dry_run(capsys, config, "--like", str(tmp_path / "no-such-run"))
    assert status == 2 and out == ""
    assert "--like: run directory" in err and "does not exist" in err and "fix:" in err
    (tmp_path / "empty").mkdir()
    status, out, err = dry_run(capsys, config, "--like", str(tmp_path / "empty"))
    assert status == 2 and out == "" and "no trial records" in err
    assert main(["run", config, "--like", str(tmp_path / "empty")]) == 2  # without --dry-run
    assert "only shape the cost projection of a dry run" in capsys.readouterr().err


@pytest.fixture(scope="module")
def smoke_gpu_check(tmp_path_factory) -> Path:
    """gpu_check.json as bench/gpu_check.py writes it, from a real `--smoke` run (CPU, tiny shapes)."""
    from bench.gpu_check import main as gpu_check

    out = tmp_path_factory.mktemp("gpu_check")
    gpu_check(["--smoke", "--out", str(out)])
    return out / "gpu_check.json"


@pytest.mark.timeout(180)
def test_trials_per_gpu_from_gpu_checks_memory(tmp_path, smoke_gpu_check, capsys):
    from bench.gpu_check import FULL

    config = str(write_config(tmp_path))
    gpus = ["resources.gpus_per_trial=0.25"]
    _, out, _ = dry_run(capsys, config)
    assert "trials per GPU: none asked for (resources.gpus_per_trial 0" in out
    _, out, _ = dry_run(capsys, config, *gpus)
    assert "trials per GPU: not measured (run `python -m bench.gpu_check --out DIR` on the GPU" in out
    # A CPU smoke run measures no GPU memory: still not measured, and it says why.
    _, out, _ = dry_run(capsys, config, *gpus, "--gpu-check", str(smoke_gpu_check))
    assert "trials per GPU: not measured (" in out and "(cpu, " in out and "memory per trial n/a" in out

    # The same report as a CUDA run of the full XLM-R-large shape writes it: its device, shape and
    # memory figure in place of the smoke run's.
    report = json.loads(smoke_gpu_check.read_text())
    report["device"].update(type="cuda", name="NVIDIA A100-SXM4-80GB")
    report["shape"].update(layers=FULL.layers, hidden=FULL.hidden, intermediate=FULL.intermediate, vocab=FULL.vocab)
    report["memory_per_trial"]["peak_mib"] = 6000.0
    cuda = tmp_path / "cuda_gpu_check.json"
    cuda.write_text(json.dumps(report))
    large = ["backbone.name=xlm-roberta-large"]
    _, out, _ = dry_run(capsys, config, *gpus, *large, "--gpu-check", str(cuda))
    assert "one PT trial peaks at 6,000 MiB (bf16, batch 4" in out and "81,920 MiB (80 GB from the device's name" in out
    # the grid's FT variant asks for no GPU: only PT's 0.25 is reported; floor(0.25 x 81920 / 6000) = 3
    assert "at resources.gpus_per_trial 0.25: Ray places 4 trial(s) a GPU" in out
    assert "holds 3 trial(s) of 6,000 MiB (fits)" in out
    _, out, _ = dry_run(capsys, config, "resources.gpus_per_trial=0.05", *large, "--gpu-check", str(cuda))
    assert "holds 0 trial(s) of 6,000 MiB (does not fit: raise resources.gpus_per_trial)" in out
    _, out, _ = dry_run(capsys, config, *gpus, *large, "optim.precision=fp32", "--gpu-check", str(cuda))
    assert "at resources.gpus_per_trial 0.25 (fp32): not measured (memory was measured in bf16)" in out
    _, out, _ = dry_run(capsys, config, *gpus, "--gpu-check", str(cuda))  # builtin:micro is not that shape
    assert "trials per GPU: not measured (" in out and "backbone builtin:micro is 2 layers, hidden 64" in out

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({k: v for k, v in report.items() if k != "memory_per_trial"}))
    status, out, err = dry_run(capsys, config, "--gpu-check", str(broken))
    assert status == 2 and out == "" and "lacks memory_per_trial.precision" in err and "fix:" in err
    status, _, err = dry_run(capsys, config, "--gpu-check", str(tmp_path / "none.json"))
    assert status == 2 and "--gpu-check: cannot read" in err


@pytest.mark.timeout(120)
def test_a_hub_models_size_comes_from_the_hugging_face_cache(e5_small, tmp_path, capsys):
    """intfloat/multilingual-e5-small is in no table: its size is its cached config.json's, and its
    layer parameters are those of its cached weights file."""
    from huggingface_hub import try_to_load_from_cache

    folder = Path(try_to_load_from_cache(e5_small, "model.safetensors")).parent
    model = json.loads((folder / "config.json").read_text())
    size = backbone_size(e5_small)
    assert (size.layers, size.hidden, size.intermediate, size.vocab) == (
        model["num_hidden_layers"], model["hidden_size"], model["intermediate_size"], model["vocab_size"])
    assert size.layer_params == layer_params_in(str(folder))
    _, out, _ = dry_run(capsys, str(write_config(tmp_path)), f"backbone.name={e5_small}", "--throughput", "1e12")
    assert f"FLOPs ({e5_small}: {model['num_hidden_layers']} layers, hidden {model['hidden_size']}" in out
    assert "device-hours: at most" in out


@pytest.mark.timeout(60)
def test_the_projection_section_shows_only_measured_rates(own_cache):
    """bench/RESULTS.md's projection of the paper's tables: GPU trials in bf16, and no GPU rate measured."""
    from bench.bench_step import projection_section

    store_rate(6e10, "xlm-roberta-large")  # a CPU fp32 rate for XLM-R large's width: not the GPU trials' rate
    text = projection_section()
    rows = [line for line in text.splitlines() if line.startswith("| `massive_")]
    assert len(rows) == 3
    assert all(row.endswith("| not measured: bf16 on cuda |") for row in rows)
    assert "A100" not in text and "Stored measurements: 6.00e+10 FLOP/s measured for xlm-roberta-large" in text
