"""The built-in backbone: trained once, cached, loaded like any Hugging Face checkpoint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import PreTrainedTokenizerFast

from xsweep.errors import XsweepError
from xsweep.models.backbone import backbone_info, load_backbone
from xsweep.models.builtin import build_builtin_backbone

CORPUS = [f"{greet} {who}, the {thing} is {state}" for greet in ("hello", "hallo", "hola", "привет")
          for who in ("anna", "bob", "carla") for thing in ("alarm", "music", "weather")
          for state in ("on", "off", "ready")]
TINY = dict(layers=1, hidden=32, heads=2, vocab_size=120, pretrain_steps=3)


@pytest.mark.timeout(120)
def test_builds_once_then_reuses_the_cache(tmp_path):
    logged: list[str] = []
    first = build_builtin_backbone(CORPUS, cache_root=tmp_path, log=logged.append, **TINY)
    assert first.parent == tmp_path and first.is_dir()
    assert any("pretraining" in line and "caching" in line for line in logged)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folder left behind
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    logged.clear()
    again = build_builtin_backbone(CORPUS, cache_root=tmp_path, log=logged.append, **TINY)
    assert again == first and logged == []
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp

    other = build_builtin_backbone(CORPUS[:-1], cache_root=tmp_path, log=logged.append, **TINY)
    assert other != first  # a different corpus is a different backbone


@pytest.mark.timeout(120)
def test_loads_as_xlmr_with_its_own_tokenizer(tmp_path):
    folder = build_builtin_backbone(CORPUS, cache_root=tmp_path, log=lambda _: None, **TINY)
    encoder, tokenizer = load_backbone(str(folder))
    info = backbone_info(encoder)
    assert (info.family, info.num_layers, info.hidden, info.num_heads) == ("xlm-roberta", 1, 32, 2)
    assert isinstance(tokenizer, PreTrainedTokenizerFast)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.pad_token_id == encoder.config.pad_token_id
    ids = tokenizer("hello anna")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # The NFKC normaliser survived saving and loading: full-width letters read as ASCII ones.
    assert tokenizer("ｈｅｌｌｏ anna")["input_ids"] == ids
    out = encoder(**tokenizer(["hello anna", "hola"], padding=True, return_tensors="pt"))
    assert out.last_hidden_state.shape[:2] == (2, len(ids))


@pytest.mark.timeout(120)
def test_pretraining_lowers_mlm_loss(tmp_path):
    folder = build_builtin_backbone(CORPUS, cache_root=tmp_path, log=lambda _: None,
                                    **{**TINY, "pretrain_steps": 100})
    stats = json.loads((folder / "xsweep_builtin.json").read_text())
    assert stats["mlm_loss_last"] < stats["mlm_loss_first"] - 0.4  # observed 3.55 -> 2.89


@pytest.mark.timeout(60)
def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(XsweepError, match="at least 10"):
        build_builtin_backbone(["one sentence"], cache_root=tmp_path)
    with pytest.raises(XsweepError, match="multiple"):
        build_builtin_backbone(CORPUS, cache_root=tmp_path, hidden=30, heads=4)


@pytest.mark.timeout(60)
def test_unknown_backbones_fail_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(XsweepError) as err:
        load_backbone("xlm-roberta-large")
    assert "could not be found locally" in err.value.what and "HF_HOME" in err.value.fix
    with pytest.raises(XsweepError, match="does not exist"):
        load_backbone(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(XsweepError, match="could not load"):
        load_backbone(str(tmp_path / "empty"))
    with pytest.raises(XsweepError, match="attention"):
        load_backbone(str(tmp_path / "empty"), attn_implementation="flash_attention_9")


@pytest.mark.timeout(60)
def test_random_state_of_the_caller_is_untouched(tmp_path):
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    build_builtin_backbone(CORPUS, cache_root=tmp_path, log=lambda _: None, **TINY)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.timeout(60)
def test_checkpoint_with_missing_encoder_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = build_builtin_backbone(CORPUS, cache_root=tmp_path / "cache", log=lambda _: None, **TINY)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    weights = load_file(str(broken / "model.safetensors"))
    dropped = next(k for k in weights if k.endswith("attention.self.query.weight"))
    save_file({k: v for k, v in weights.items() if k != dropped}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(XsweepError, match="lacks 1 encoder weights"):
        load_backbone(str(broken))


# Run in a fresh interpreter with its own XSWEEP_CACHE, as `xsweep run` makes `builtin:*` (prepare.py):
# the demo corpus, then build_builtin_backbone into the cache.
_BUILD_IN_A_FRESH_PROCESS = """
import json, sys, torch
from xsweep.data.synth import demo_corpus
from xsweep.models.builtin import build_builtin_backbone
from xsweep.sweep.prepare import demo_data_dir
torch.set_num_threads(int(sys.argv[1]))
corpus = demo_corpus(demo_data_dir(log=lambda _: None) / "massive" / "1.1" / "data")
print(build_builtin_backbone(corpus, log=lambda _: None, **json.loads(sys.argv[2])))
"""


@pytest.mark.timeout(240)
def test_two_fresh_builds_are_byte_identical(tmp_path):
    """The build is deterministic across processes. The demo corpus (2,800 sentences, the quickstart's)
    is what made `tokenizers`' Unigram trainer differ from process to process (scores in the last
    digits, tied pieces in another order); the default vocabulary, a small model and a few steps
    keep this under a minute. The two builds run at once, each with its own caches, Python hash
    seed and torch thread count: none of these may change a byte."""
    spec = json.dumps({"layers": 1, "hidden": 32, "heads": 2, "pretrain_steps": 20})
    builds = []
    for n, threads in enumerate((1, 2)):
        env = {**os.environ, "XSWEEP_CACHE": str(tmp_path / f"cache{n}"), "PYTHONHASHSEED": str(n)}
        builds.append(subprocess.Popen([sys.executable, "-c", _BUILD_IN_A_FRESH_PROCESS, str(threads), spec],
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    folders = []
    for build in builds:
        out, err = build.communicate(timeout=200)
        assert build.returncode == 0, err[-3000:]
        folders.append(Path(out.strip().splitlines()[-1]))
    first, second = folders
    assert first != second and first.name == second.name  # two caches, one key

    def saved(folder: Path) -> dict[str, bytes]:
        files = {f.name: f.read_bytes() for f in sorted(folder.iterdir())}
        # The summary's wall-clock build time is the one thing allowed to differ.
        files["xsweep_builtin.json"], found = re.subn(rb'"seconds": [0-9.]+', b'"seconds": null',
                                                      files["xsweep_builtin.json"])
        assert found == 1
        return files

    files = saved(first)
    assert {"tokenizer.json", "config.json", "model.safetensors", "xsweep_builtin.json"} <= set(files)
    assert saved(second) == files
