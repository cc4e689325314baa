"""Alignment pretraining (APT's first stage) on a tiny built-in backbone: resume, outputs, APT loading.

The learning claims (losses fall, retrieval rises) are in test_learning_alignment.py on a real
pretrained encoder; the 2-worker DDP run on Ray is in test_align_ray.py. Their fixtures (demo data,
tiny backbones) are in conftest.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from xsweep.config import AlignStageConfig, BackboneConfig, PromptConfig, from_dict
from xsweep.data.parallel import AlignmentPair
from xsweep.errors import XsweepError
from xsweep.models.prompted import build_intent_model, load_prompt_for_apt
from xsweep.train.align import (
    AlignSpec,
    build_align_module,
    latest_checkpoint,
    run_alignment,
    tensor_digest,
)
from xsweep.train.align_data import ParallelSource, plan_epoch


def xsgd_spec(backbone: Path, out: Path, demo: Path, *, prompt: dict | None = None, **align) -> AlignSpec:
    """A small alignment spec on the demo XSGD dialogues; dropout off so runs are comparable.
    `prompt`: PromptConfig settings; `align`: AlignStageConfig settings."""
    return AlignSpec(backbone_path=str(backbone), output_dir=str(out),
                     sources=[ParallelSource(kind="xsgd", path=str(demo / "xsgd"), targets=["de", "es"])],
                     align=AlignStageConfig(**{"epochs": 3, "batch_size": 16, "lr": 1e-2, "max_seq_len": 48, **align}),
                     prompt=PromptConfig(**{"length": 4, "dropout": 0.0, **(prompt or {})}),
                     backbone=BackboneConfig(dropout=False), label="test")


class Interrupted(RuntimeError):
    pass


@pytest.mark.timeout(120)
def test_resume_from_an_epoch_checkpoint_gives_the_uninterrupted_result(tmp_path, demo, bare_backbone, one_thread):
    whole = run_alignment(xsgd_spec(bare_backbone, tmp_path / "whole", demo), log=lambda _: None)

    def crash_after_second_epoch(metrics, checkpoint_dir):
        if metrics["epoch"] == 2:
            raise Interrupted("simulated crash after epoch 2")

    cut = xsgd_spec(bare_backbone, tmp_path / "cut", demo)
    with pytest.raises(Interrupted):
        run_alignment(cut, crash_after_second_epoch, log=lambda _: None)
    checkpoint = latest_checkpoint(cut.output_dir)
    assert checkpoint is not None and checkpoint.name == "epoch_002"
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert state["epoch"] == 2 and {"optimizer", "scheduler", "rng", "history"} <= set(state)
    assert any(k.startswith("mlm_head.") for k in state["module"])  # the fresh head is checkpointed too
    assert not (Path(cut.output_dir) / "prompt.json").exists()

    resumed = run_alignment(cut, log=lambda _: None)  # picks up output_dir/checkpoints by itself
    assert resumed.resumed_from_epoch == 2 and whole.resumed_from_epoch == 0
    a = load_file(str(Path(whole.output_dir) / "prompt.safetensors"))
    b = load_file(str(Path(resumed.output_dir) / "prompt.safetensors"))
    assert set(a) == set(b) and any(k.startswith("mlm_head.") for k in a)
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), name
    assert [e["mlm_loss"] for e in resumed.epochs] == pytest.approx([e["mlm_loss"] for e in whole.epochs], abs=1e-6)
    assert [e["contrastive_loss"] for e in resumed.epochs] == pytest.approx(
        [e["contrastive_loss"] for e in whole.epochs], abs=1e-6)


@pytest.mark.timeout(120)
def test_outputs_describe_the_prompt_and_load_for_apt(tmp_path, demo, tiny_backbone, one_thread):
    spec = xsgd_spec(tiny_backbone, tmp_path / "aligned", demo, epochs=1, prompt={"length": 4})
    result = run_alignment(spec, log=lambda _: None)
    out = Path(result.output_dir)
    summary = json.loads((out / "align.json").read_text())
    assert summary["prompt"]["kind"] == "layer" and summary["prompt"]["length"] == 4
    assert summary["prompt"]["shift_positions"] is True and "shifted by P" in summary["position_convention"]
    assert summary["backbone"]["path"] == str(tiny_backbone) and summary["backbone"]["info"]["num_layers"] == 2
    assert summary["backbone"]["mlm_head"] == "the checkpoint's own, frozen"
    assert [e["epoch"] for e in summary["epochs"]] == [1]
    assert {"mlm_loss", "contrastive_loss", "loss", "lr", "steps"} <= set(summary["epochs"][0])
    assert summary["data"]["languages"] == ["de", "es"]
    saved = load_file(str(out / "prompt.safetensors"))
    assert set(saved) == {"prompt.embedding.weight"}  # a pretrained MLM head stays frozen and unsaved
    assert tensor_digest(saved) == result.prompt_digest

    from xsweep.models.backbone import load_backbone

    encoder, _ = load_backbone(str(tiny_backbone))
    apt = build_intent_model(encoder, method="apt", prompt_kind="layer", prompt_length=4, num_labels=3)
    meta = load_prompt_for_apt(apt, out)
    assert meta["alignment"]["spec_digest"] == spec.digest()
    assert torch.equal(apt.prompt.embedding.weight.detach(), saved["prompt.embedding.weight"])

    wrong = build_intent_model(load_backbone(str(tiny_backbone))[0], method="apt", prompt_kind="layer",
                               prompt_length=8, num_labels=3)
    with pytest.raises(XsweepError) as error:
        load_prompt_for_apt(wrong, out)
    assert "length 4" in error.value.what and "prompt.length" in error.value.fix

    # The aligned prompt loads back into the alignment module too (for retrieval evaluation).
    module, _ = build_align_module(spec)
    load_prompt_for_apt(module, out)
    assert torch.equal(module.prompt.embedding.weight.detach(), saved["prompt.embedding.weight"])

    # A finished stage is reused, not re-run; another spec may not write over it.
    again = run_alignment(spec, log=lambda _: None)
    assert again.reused and again.prompt_digest == result.prompt_digest
    with pytest.raises(XsweepError, match="another spec"):
        run_alignment(xsgd_spec(tiny_backbone, out, demo, epochs=2), log=lambda _: None)


@pytest.mark.timeout(60)
def test_a_checkpoint_of_another_spec_is_refused(tmp_path, demo, tiny_backbone, one_thread):
    def stop(metrics, checkpoint_dir):
        raise Interrupted()

    spec = xsgd_spec(tiny_backbone, tmp_path / "a", demo, epochs=2)
    with pytest.raises(Interrupted):
        run_alignment(spec, stop, log=lambda _: None)
    other = xsgd_spec(tiny_backbone, tmp_path / "b", demo, epochs=2, lr=5e-3)
    with pytest.raises(XsweepError, match="another alignment spec"):
        run_alignment(other, resume_from=latest_checkpoint(spec.output_dir), log=lambda _: None)
    shutil.rmtree(tmp_path / "a")


def pairs(n: int) -> list[AlignmentPair]:
    return [AlignmentPair(f"en {i}", f"de {i}", "de", f"d{i}", 0, 1) for i in range(n)]


@pytest.mark.timeout(30)
def test_workers_train_disjoint_shards_of_the_same_global_batches():
    epoch = pairs(70)
    alone = plan_epoch(epoch, 16, rank=0, world_size=1)
    split = [plan_epoch(epoch, 16, rank=r, world_size=2) for r in range(2)]
    assert alone.steps == split[0].steps == split[1].steps == 4  # 70 // 16; the last 6 pairs wait for next epoch
    for step in range(4):
        mine, theirs = split[0].shards[step], split[1].shards[step]
        assert len(mine) == len(theirs) == 8 and not set(p.doc_id for p in mine) & set(p.doc_id for p in theirs)
        assert sorted(p.doc_id for p in mine + theirs) == sorted(p.doc_id for p in alone.shards[step])
    small = plan_epoch(pairs(10), 64, rank=0, world_size=1)
    assert small.steps == 1 and small.global_batch == 10
    with pytest.raises(XsweepError, match="fewer than 2 pairs per worker"):
        plan_epoch(pairs(3), 64, rank=0, world_size=2)


@pytest.mark.timeout(30)
def test_config_rejects_what_alignment_cannot_train():
    """The experiment schema checks alignment's settings, once; AlignSpec takes them as given."""
    def aligned(**align):
        return from_dict({"method": "apt", "align": {"data": "demo", **align}})

    with pytest.raises(XsweepError, match="trains a prompt"):
        from_dict({"method": "apt", "prompt": {"kind": "none"}, "align": {"data": "demo"}})
    with pytest.raises(XsweepError, match="at least 2 pairs per batch") as error:
        aligned(batch_size=1)
    assert error.value.where.endswith("(align.batch_size)")
    for key, value, what in (("warmup_ratio", 1.0, r"warmup_ratio must be in \[0, 1\)"),
                             ("temperature", 0.0, "temperature must be positive"),
                             ("mask_probability", 1.0, r"mask_probability must be in \(0, 1\)"),
                             ("max_segments", 0, "max_segments must be at least 1")):
        with pytest.raises(XsweepError, match=what) as error:
            aligned(**{key: value})
        assert error.value.where.endswith(f"(align.{key})")
    assert AlignStageConfig() == AlignStageConfig(epochs=10, batch_size=64, lr=1e-3, warmup_ratio=0.1,
                                                  temperature=0.05)
    spec = AlignSpec(backbone_path="b", output_dir="o", sources=[{"kind": "xsgd", "path": "x"}],
                     prompt={"length": 8})
    assert isinstance(spec.sources[0], ParallelSource) and spec.prompt.length == 8
    assert AlignSpec(**spec.to_dict()).digest() == spec.digest()
    assert AlignSpec(**{**spec.to_dict(), "output_dir": "elsewhere"}).digest() == spec.digest()


@pytest.mark.timeout(30)
def test_a_spec_keeps_the_digest_its_finished_runs_are_found_by():
    """A finished alignment run is found on disk by its spec's digest. These values were computed
    before the settings moved from train/align.py's own AlignConfig to the experiment schema's
    align, prompt and backbone sections: the same settings must keep naming the same runs."""
    def spec(**sections) -> AlignSpec:
        return AlignSpec(backbone_path="xlm-roberta-large", output_dir="o", **sections)

    paper = spec(sources=[ParallelSource(kind="xsgd", path="s3://bucket/xsgd", targets=["de", "es"])])
    assert paper.digest() == "618e7104bfb6"
    custom = spec(sources=[ParallelSource(kind="tatoeba", path="s3://bucket/tatoeba", targets=["deu"], max_pairs=100)],
                  align=AlignStageConfig(epochs=3, batch_size=16, lr=1e-2, max_seq_len=48, seed=1),
                  prompt=PromptConfig(kind="input", length=8, dropout=0.0, shift_positions=False, reparam_hidden=64),
                  backbone=BackboneConfig(dropout=False, attn_implementation="eager"))
    assert custom.digest() == "db302a0d32a7"
    # What the digest does not hash: the stage's data keys (in `sources`), resources, init_from.
    elsewhere = AlignStageConfig(epochs=3, batch_size=16, lr=1e-2, max_seq_len=48, seed=1, data="tatoeba",
                                 num_workers=2, retrieval="demo")
    assert AlignSpec(**{**custom.to_dict(), "align": elsewhere}).digest() == "db302a0d32a7"


@pytest.mark.timeout(60)
def test_input_prompts_align_and_load_for_apt_too(tmp_path, demo, tiny_backbone, one_thread):
    spec = xsgd_spec(tiny_backbone, tmp_path / "input", demo, prompt={"kind": "input", "length": 3}, epochs=1)
    result = run_alignment(spec, log=lambda _: None)
    assert result.summary["prompt"]["kind"] == "input"
    assert result.summary["position_convention"].startswith("soft tokens after <s>")
    from xsweep.models.backbone import load_backbone

    apt = build_intent_model(load_backbone(str(tiny_backbone))[0], method="apt", prompt_kind="input",
                             prompt_length=3, num_labels=2)
    load_prompt_for_apt(apt, result.prompt_dir)
    with pytest.raises(XsweepError, match="kind"):
        load_prompt_for_apt(build_intent_model(load_backbone(str(tiny_backbone))[0], method="apt",
                                               prompt_kind="layer", prompt_length=3, num_labels=2), result.prompt_dir)


@pytest.mark.timeout(30)
def test_bad_sources_are_clear_errors(tmp_path, demo):
    from xsweep.train.align_data import load_documents

    with pytest.raises(XsweepError, match="no parallel data"):
        load_documents([])
    with pytest.raises(XsweepError, match="target_path and lang"):
        load_documents([ParallelSource(kind="lines", path=str(tmp_path / "en.txt"))])
    with pytest.raises(XsweepError, match="utterance_fr"):
        load_documents([ParallelSource(kind="xsgd", path=str(demo / "xsgd"), targets=["fr"])])
    (tmp_path / "en.txt").write_text("hello\n\n", encoding="utf-8")
    (tmp_path / "de.txt").write_text("hallo\n\n", encoding="utf-8")
    docs = load_documents([ParallelSource(kind="lines", path=str(tmp_path / "en.txt"),
                                          target_path=str(tmp_path / "de.txt"), lang="de")])
    assert [d.source for d in docs] == [("hello",)]  # the blank pair is dropped
