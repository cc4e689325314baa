"""Alignment pretraining of soft prompts on parallel data: the first stage of APT.

Each step takes pairs (x: 1-4 consecutive English turns of a dialogue, y: the same turns in the
target language; see align_data), masks x and y dynamically and independently, and trains
    loss = MLM over the masked tokens of x and y  +  InfoNCE(<s> of masked x, <s> of masked y)
with cosine similarity, temperature 0.05 and the other y of the batch as negatives. The backbone
is frozen; only the prompt trains, plus, when the checkpoint brought no MLM head (a bare encoder
such as all-MiniLM-L6-v2), a fresh MLM head whose output projection is tied to the frozen input
embeddings. Adam, linear warm-up over the first 10% of steps then linear decay to 0.

`run_alignment` is the worker loop, read top to bottom: build, resume, then per epoch train steps,
average the losses over workers, checkpoint, report; at the end rank 0 writes the aligned prompt.
It runs as a plain function, and unchanged as the body of a Ray Train worker: when
torch.distributed is initialised the trainable module is wrapped in DDP and each worker trains its
shard of every global batch (so contrastive negatives are the other pairs of the worker's shard).
The Ray Train driver that runs it over N workers is sweep/align_ray.py.

What the output folder holds (`output_dir`):
    prompt.safetensors, prompt.json   the aligned prompt (and fresh MLM head), read by load_prompt_for_apt
    align.json                        backbone, prompt kind/length/position convention, losses per epoch;
                                      written last, so its presence means the run finished
    checkpoints/epoch_NNN/            the latest epoch's state.pt: prompt, MLM head, optimiser, scheduler,
                                      per-worker RNG states, epoch, loss history
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from xsweep.atomic import write_json
from xsweep.config import AlignStageConfig, BackboneConfig, PromptConfig
from xsweep.data.parallel import epoch_pairs
from xsweep.errors import XsweepError
from xsweep.models.backbone import backbone_fingerprint, backbone_info, load_backbone
from xsweep.models.checkpoint import save_prompt
from xsweep.models.mlm_head import MlmHead, load_mlm_head
from xsweep.models.prompts import build_prompt
from xsweep.objectives.alignment import AlignmentLoss, MaskingSpec, alignment_loss
from xsweep.train import rng
from xsweep.train.distributed import barrier, broadcast, gather, rank_and_world
from xsweep.train.align_folder import CHECKPOINTS_DIR, RESULT_FILE
from xsweep.train.align_data import ParallelSource, encode_pairs, load_documents, plan_epoch, shard_digest
from xsweep.train.schedule import linear_warmup_decay

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
Log = Callable[[str], None]
Report = Callable[[dict[str, Any], "Path | None"], None]
"""report(metrics, checkpoint_dir): called by every worker after every epoch; checkpoint_dir is the
epoch's checkpoint folder on rank 0 and None elsewhere."""


@dataclass
class AlignSpec:
    """Everything one alignment run needs; plain data, so it crosses into Ray workers
    (`AlignSpec(**spec.to_dict())`). Its settings are the experiment schema's sections, checked when
    the experiment is loaded (xsweep/config), never again here."""

    backbone_path: str
    """Local folder (or hub id in the local cache) of the frozen encoder."""
    output_dir: str
    """Local folder (shared storage on a multi-node cluster) for the aligned prompt, align.json and
    the epoch checkpoints; rank 0 writes it."""
    sources: list[ParallelSource]
    """The parallel data."""
    align: AlignStageConfig = field(default_factory=AlignStageConfig)
    """The hyperparameters: epochs, batch_size, lr, warmup_ratio, temperature, mask_probability,
    max_segments, max_seq_len, seed. Its data and resource keys are the sweep's; the run reads
    `sources` and is given its workers."""
    prompt: PromptConfig = field(default_factory=PromptConfig)
    """The prompt trained: kind, length, dropout, shift_positions, reparam_hidden (not init_from)."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    """How the frozen encoder runs: dropout, attn_implementation (its weights: `backbone_path`)."""
    label: str = "align"
    """Readable part of the Ray run name (the rest is a digest of the spec)."""

    def __post_init__(self) -> None:
        # Absolute paths from the start: Ray workers do not share the driver's working directory,
        # and the digest (which names the run and guards its checkpoints) must not depend on it.
        for name, section in (("align", AlignStageConfig), ("prompt", PromptConfig), ("backbone", BackboneConfig)):
            if isinstance(getattr(self, name), dict):
                setattr(self, name, section(**getattr(self, name)))
        sources = [s if isinstance(s, ParallelSource) else ParallelSource(**s) for s in self.sources]
        self.sources = [ParallelSource(**{**asdict(s), "path": _local(s.path), "target_path": _local(s.target_path)})
                        for s in sources]
        self.backbone_path = _local(self.backbone_path)
        self.output_dir = str(Path(self.output_dir).expanduser().resolve())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def digest(self) -> str:
        """Identifies what is trained (backbone, data, hyperparameters), not where it is written."""
        what = {"backbone": self.backbone_path, "sources": [_source_identity(s) for s in self.sources],
                "config": self.hyperparameters()}
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]

    def hyperparameters(self) -> dict[str, Any]:
        """What the run trains with, flat, under the names the digest has always hashed (those of
        the AlignConfig that held them before they came from the experiment schema): finished runs
        are found by the digest, so these names and this set stay as they are."""
        a, p, b = self.align, self.prompt, self.backbone
        return {"prompt_kind": p.kind, "prompt_length": p.length, "prompt_dropout": p.dropout,
                "shift_positions": p.shift_positions, "reparam_hidden": p.reparam_hidden,
                "backbone_dropout": b.dropout, "attn_implementation": b.attn_implementation,
                "epochs": a.epochs, "batch_size": a.batch_size, "lr": a.lr, "warmup_ratio": a.warmup_ratio,
                "temperature": a.temperature, "mask_probability": a.mask_probability,
                "max_segments": a.max_segments, "max_seq_len": a.max_seq_len, "seed": a.seed,
                # How sentences are read: hashed only when not the default they were added with, so
                # a run aligned before they existed keeps its digest and is reused.
                **{key: value for key, value, default in (("pooling", b.pooling, "cls"),
                                                          ("text_prefix", b.text_prefix, "")) if value != default}}


def _source_identity(source: ParallelSource) -> dict[str, Any]:
    """A source as the digest sees it: a field added after runs were made (`max_pairs`) counts only
    when set, so a run finished before it existed is still found and reused."""
    return {k: v for k, v in asdict(source).items() if not (k == "max_pairs" and v is None)}


def _local(path: str | None) -> str | None:
    """An existing local path made absolute; hub ids, URIs and None unchanged."""
    if path is None or "://" in path:
        return path
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else path


@dataclass
class AlignResult:
    """What a finished alignment run left in `output_dir` (read back from align.json)."""

    output_dir: str
    epochs: list[dict[str, Any]]
    """Per epoch: epoch (1-based), mlm_loss, contrastive_loss, loss, lr, steps, pairs and shard digest per worker."""
    world_size: int
    resumed_from_epoch: int
    """Epochs already done when this (last) attempt started; 0 for a run from scratch."""
    seconds: float
    prompt_digest: str
    """Hash of the saved tensors (prompt, and fresh MLM head): `tensor_digest` of prompt.safetensors."""
    reused: bool = False
    """True when the run had already finished and nothing was trained."""
    summary: dict[str, Any] = field(default_factory=dict)
    """The whole align.json."""

    @property
    def prompt_dir(self) -> Path:
        """The folder `load_prompt_for_apt` (and `prompt.init_from`) takes."""
        return Path(self.output_dir)


def aligned_corpus(prompt_dir: str | Path) -> str | None:
    """What the prompt in `prompt_dir` was aligned on (`xsgd`, `tatoeba`, a .tsv's name; several
    joined by `+`), from its alignment run's align.json; None for a prompt without one."""
    try:
        spec = json.loads((Path(prompt_dir) / RESULT_FILE).read_text(encoding="utf-8"))["spec"]
        return "+".join(ParallelSource(**source).corpus for source in spec["sources"]) or None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_alignment_result(output_dir: str | Path, *, reused: bool = False) -> AlignResult:
    """Read a finished run's align.json; a missing one is an XsweepError."""
    path = Path(output_dir) / RESULT_FILE
    if not path.is_file():
        raise XsweepError("no finished alignment run here", where=str(output_dir),
                          fix="run the alignment stage first (its align.json is written when it finishes)")
    data = json.loads(path.read_text(encoding="utf-8"))
    return AlignResult(output_dir=str(output_dir), epochs=data["epochs"], world_size=data["world_size"],
                       resumed_from_epoch=data["resumed_from_epoch"], seconds=data["seconds"],
                       prompt_digest=data["prompt_digest"], reused=reused, summary=data)


# ---------------------------------------------------------------------------------------------
# The model: frozen encoder, trainable prompt, MLM head


class AlignModule(nn.Module):
    """The trainable part of alignment (the prompt, and a fresh MLM head if there is one) and its loss.

    The frozen encoder and a pretrained (frozen) MLM head are plain attributes, outside the module
    tree, so DDP over this module broadcasts and averages the trainable tensors and nothing else.
    It has the `prompt`, `encoder` and `info` that `load_prompt_for_apt` reads, so an aligned
    prompt loads back into it for evaluation.
    """

    def __init__(self, encoder: nn.Module, prompt: nn.Module, mlm_head: MlmHead, *, head_trainable: bool,
                 masking: MaskingSpec, backbone_dropout: bool, temperature: float, pooling: str = "cls"):
        super().__init__()
        self.__dict__["encoder"] = encoder.requires_grad_(False)
        self.info = backbone_info(encoder)
        self.prompt = prompt
        if head_trainable:
            self.mlm_head = mlm_head
        else:
            self.__dict__["mlm_head"] = mlm_head.requires_grad_(False)
        self.head_trainable, self.backbone_dropout = head_trainable, backbone_dropout
        self.masking, self.temperature, self.pooling = masking, temperature, pooling
        self.generator: torch.Generator | None = None
        """Draws the masks; set by the loop (one stream per worker, saved in checkpoints)."""

    def train(self, mode: bool = True) -> "AlignModule":
        super().train(mode)
        self.encoder.train(mode and self.backbone_dropout)
        if not self.head_trainable:
            self.mlm_head.eval()
        return self

    def trainable_head(self) -> MlmHead | None:
        return self.mlm_head if self.head_trainable else None

    def forward(self, x_ids: torch.Tensor, x_mask: torch.Tensor, y_ids: torch.Tensor, y_mask: torch.Tensor
                ) -> AlignmentLoss:
        """x_ids, x_mask: (B, Tx) English; y_ids, y_mask: (B, Ty), row i the translation of x row i.
        Masks both sides (independently) and returns the MLM, contrastive and total losses."""
        return alignment_loss(self.encoder, self.prompt, self.mlm_head, x_ids, x_mask, y_ids, y_mask,
                              self.masking, temperature=self.temperature, pooling=self.pooling,
                              generator=self.generator)


def build_align_module(spec: AlignSpec, device: torch.device | str = "cpu"):
    """Load the backbone and build a fresh AlignModule for `spec` (seeded); returns (module, tokenizer)."""
    cfg, p = spec.align, spec.prompt
    encoder, tokenizer = load_backbone(spec.backbone_path, attn_implementation=spec.backbone.attn_implementation)
    if tokenizer.mask_token_id is None:
        raise XsweepError("the backbone's tokenizer has no mask token, so MLM cannot run", where=spec.backbone_path,
                          fix="use an encoder whose tokenizer defines <mask> / [MASK]")
    encoder.to(device)
    torch.manual_seed(cfg.seed)  # the same initial prompt and head on every worker
    prompt = build_prompt(p.kind, backbone_info(encoder), p.length, encoder, dropout=p.dropout,
                          reparam_hidden=p.reparam_hidden, shift_positions=p.shift_positions)
    head, pretrained = load_mlm_head(encoder, spec.backbone_path)
    masking = MaskingSpec.from_tokenizer(tokenizer, cfg.mask_probability)
    masking.vocab_size = min(masking.vocab_size, encoder.get_input_embeddings().num_embeddings)
    module = AlignModule(encoder, prompt, head.to(device), head_trainable=not pretrained, masking=masking,
                         backbone_dropout=spec.backbone.dropout, temperature=cfg.temperature,
                         pooling=spec.backbone.pooling)
    return module.to(device), tokenizer


# ---------------------------------------------------------------------------------------------
# The worker loop


def run_alignment(spec: AlignSpec, report: Report | None = None, *, resume_from: str | Path | None = None,
                  device: torch.device | str | None = None, log: Log = print) -> AlignResult:
    """Align a prompt as `spec` says; return the result (also in `spec.output_dir`).

    A finished run with the same spec is reused, not re-run. Otherwise training resumes from
    `resume_from` (an epoch checkpoint folder; Ray Train passes its latest) or else from the latest
    checkpoint in `output_dir/checkpoints`, and continues to the same result an uninterrupted run
    gives. Under torch.distributed (Ray Train) every worker calls this; only rank 0 writes files.
    """
    started = time.perf_counter()
    cfg, out = spec.align, Path(spec.output_dir)
    rank, world = rank_and_world()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    finished = broadcast(finished_result(spec) if rank == 0 else None)
    if finished is not None:
        return finished

    # Build: frozen backbone, prompt, MLM head; data; optimiser and schedule.
    module, tokenizer = build_align_module(spec, device)
    docs = load_documents(spec.sources)
    steps_per_epoch = plan_epoch(epoch_pairs(docs, cfg.seed, 0, cfg.max_segments), cfg.batch_size, rank, world).steps
    total_steps = steps_per_epoch * cfg.epochs
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=cfg.lr)
    warmup_steps = round(total_steps * cfg.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_warmup_decay(total_steps, warmup_steps))
    # Masking and dropout draw from per-worker streams, so workers mask their shards differently.
    masking = torch.Generator().manual_seed(_derived_seed(cfg.seed, "mask", rank))
    module.generator = masking
    torch.manual_seed(_derived_seed(cfg.seed, "dropout", rank))

    # Resume: rank 0 reads the checkpoint and hands it to every worker.
    state = broadcast(_read_state(spec, resume_from) if rank == 0 else None)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if state is not None:
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, start_epoch = state["history"], state["epoch"]
        if state["world_size"] == world:
            rng.restore(state["rng"][rank], {"masking": masking})
        else:  # another worker count shards differently anyway; start fresh streams for this epoch
            masking.manual_seed(_derived_seed(cfg.seed, f"mask@{start_epoch}", rank))
            torch.manual_seed(_derived_seed(cfg.seed, f"dropout@{start_epoch}", rank))
        if rank == 0:
            log(f"align: resuming after epoch {start_epoch} of {cfg.epochs}")
    model = module
    if world > 1:  # gradients of the prompt (and fresh head) averaged over workers each step
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None)

    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        epoch_started = time.perf_counter()
        plan = plan_epoch(epoch_pairs(docs, cfg.seed, epoch, cfg.max_segments), cfg.batch_size, rank, world)
        sums = torch.zeros(3, dtype=torch.float64)  # mlm, contrastive, steps
        for shard in plan.shards:
            batch = [t.to(device) for t in encode_pairs(tokenizer, shard, cfg.max_seq_len, spec.backbone.text_prefix)]
            losses = model(*batch)  # masks x and y independently, then MLM + InfoNCE
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            optimizer.step()
            scheduler.step()
            values = torch.stack([losses.mlm.detach(), losses.contrastive.detach()]).double().cpu()  # sync point
            if not torch.isfinite(values).all():
                raise XsweepError(f"the alignment losses became {values.tolist()} (mlm, contrastive) in epoch "
                                  f"{epoch + 1}", where="alignment", fix="lower align.lr")
            sums += torch.cat([values, values.new_ones(1)])
        # Every worker's mean, then the mean over workers (equal step counts on every worker).
        if world > 1:
            dist.all_reduce(sums)
        mlm_mean, contrastive_mean = (sums[0] / sums[2]).item(), (sums[1] / sums[2]).item()
        shards = gather({"pairs": sum(len(s) for s in plan.shards), "digest": shard_digest(plan.shards)})
        history.append({"epoch": epoch + 1, "mlm_loss": mlm_mean, "contrastive_loss": contrastive_mean,
                        "loss": mlm_mean + contrastive_mean, "lr": scheduler.get_last_lr()[0],
                        "steps": plan.steps, "global_batch": plan.global_batch,
                        "pairs_per_worker": [s["pairs"] for s in shards],
                        "shard_digests": [s["digest"] for s in shards],
                        "seconds": round(time.perf_counter() - epoch_started, 3)})
        rng_states = gather(rng.capture({"masking": masking}))
        checkpoint_dir = None
        if rank == 0:
            checkpoint_dir = _write_checkpoint(spec, {
                "format": FORMAT_VERSION, "spec_digest": spec.digest(), "epoch": epoch + 1, "world_size": world,
                "module": module.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_states, "history": history})
            log(f"align: epoch {epoch + 1}/{cfg.epochs}  mlm {mlm_mean:.4f}  contrastive {contrastive_mean:.4f}  "
                f"({plan.steps} steps, {history[-1]['seconds']:.1f} s)")
        if report is not None:
            report({k: v for k, v in history[-1].items() if not isinstance(v, list)}, checkpoint_dir)

    # Output: the aligned prompt, then align.json (last: its presence means the run finished).
    module.eval()
    digests = gather(tensor_digest(module.state_dict()))  # what save_prompt writes: prompt (+ fresh head)
    if len(set(digests)) != 1:
        raise XsweepError(f"workers ended with different prompts ({digests}): DDP did not keep them in step",
                          where="alignment", fix="report this as a bug in xsweep")
    summary = {
        "format": FORMAT_VERSION, "spec_digest": spec.digest(), "spec": spec.to_dict(),
        "backbone": {"path": spec.backbone_path, "fingerprint": backbone_fingerprint(module.encoder),
                     "info": module.info.to_dict(),
                     "mlm_head": "fresh, tied to the input embeddings, trained and saved with the prompt"
                     if module.head_trainable else "the checkpoint's own, frozen"},
        "prompt": module.prompt.describe(),
        "position_convention": _position_convention(module.prompt),
        "data": {"documents": len(docs), "languages": sorted({d.lang for d in docs}),
                 "steps_per_epoch": steps_per_epoch},
        "epochs": history, "world_size": world, "resumed_from_epoch": start_epoch,
        "seconds": round(time.perf_counter() - started, 3), "prompt_digest": digests[0],
        "prompt_digests_per_worker": digests,
    }
    if rank == 0:
        save_prompt(module.prompt, module.encoder, out,
                    meta={"alignment": {k: summary[k] for k in ("spec_digest", "data", "position_convention")},
                          "final_losses": {k: history[-1][k] for k in ("mlm_loss", "contrastive_loss")}},
                    mlm_head=module.trainable_head())
        write_json(out / RESULT_FILE, summary)
    barrier()
    return AlignResult(output_dir=str(out), epochs=history, world_size=world, resumed_from_epoch=start_epoch,
                       seconds=summary["seconds"], prompt_digest=digests[0], summary=summary)


def finished_result(spec: AlignSpec) -> AlignResult | None:
    """The result of `spec`'s run if it has finished in `spec.output_dir`, else None; a finished run of
    another spec there is an XsweepError."""
    path = Path(spec.output_dir) / RESULT_FILE
    if not path.is_file():
        return None
    done = json.loads(path.read_text(encoding="utf-8"))
    if done.get("spec_digest") != spec.digest():
        raise XsweepError(f"{spec.output_dir!r} holds a finished alignment run of another spec "
                          f"({done.get('spec_digest')} vs {spec.digest()})", where="align.output_dir",
                          fix="use a fresh output folder for a different backbone, data or hyperparameters")
    return load_alignment_result(spec.output_dir, reused=True)


def _position_convention(prompt: nn.Module) -> str:
    if prompt.kind == "layer":
        return ("layer prefixes; real tokens' position ids shifted by P" if prompt.shift_positions
                else "layer prefixes; real tokens keep their unprompted position ids")
    return "soft tokens after <s> at positions 1..P; real tokens shifted by P"


# ---------------------------------------------------------------------------------------------
# Checkpoints


def _checkpoint_root(spec: AlignSpec) -> Path:
    return Path(spec.output_dir) / CHECKPOINTS_DIR


def _write_checkpoint(spec: AlignSpec, state: dict[str, Any]) -> Path:
    """Write epoch `state["epoch"]`'s checkpoint folder atomically and drop the older ones."""
    root = _checkpoint_root(spec)
    root.mkdir(parents=True, exist_ok=True)
    target = root / f"epoch_{state['epoch']:03d}"
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    torch.save(state, work / STATE_FILE)
    write_json(work / "checkpoint.json", {"epoch": state["epoch"], "spec_digest": state["spec_digest"],
                                          "world_size": state["world_size"], "history": state["history"]})
    shutil.rmtree(target, ignore_errors=True)
    work.rename(target)
    for old in root.glob("epoch_*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete epoch checkpoint under `output_dir/checkpoints`, if any."""
    found = sorted(p for p in (Path(output_dir) / CHECKPOINTS_DIR).glob("epoch_*") if (p / STATE_FILE).is_file())
    return found[-1] if found else None


def _read_state(spec: AlignSpec, resume_from: str | Path | None) -> dict[str, Any] | None:
    folder = Path(resume_from) if resume_from is not None else latest_checkpoint(spec.output_dir)
    if folder is None:
        return None
    if not (folder / STATE_FILE).is_file():
        raise XsweepError(f"no {STATE_FILE} in the checkpoint folder", where=str(folder),
                          fix="resume from an epoch folder written by xsweep's alignment")
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    if state.get("spec_digest") != spec.digest():
        raise XsweepError(f"the checkpoint belongs to another alignment spec ({state.get('spec_digest')} vs "
                          f"{spec.digest()})", where=str(folder),
                          fix="resume with the spec it was written by, or use a fresh output folder")
    return state


def _derived_seed(seed: int, stream: str, rank: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{stream}:{rank}".encode()).digest()[:8], "little") >> 1


def tensor_digest(state: dict[str, torch.Tensor]) -> str:
    """A short hash of named tensors (as float32), independent of device and of dict order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]

