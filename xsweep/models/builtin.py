"""The built-in small backbone: an XLM-R-architecture encoder made here, so the default needs no download.

A Unigram tokenizer (XLM-R's kind of vocabulary) is trained on the corpus, a random-init
XLMRobertaForMaskedLM of the requested size gets a short masked-language-model pretraining on the
same corpus (a random encoder gives prompts nothing to steer; a minute of MLM gives them contextual
features), and the result is cached on disk, keyed by a hash of the corpus and the spec. The folder loads with `load_backbone` like any Hugging Face checkpoint.

The build is deterministic: the same corpus and spec give byte-identical files (on the same machine
and packages), so a fresh cache reproduces the results of an old one. That is why the Unigram
vocabulary is learned here (SentencePiece's algorithm, as `tokenizers` runs it) rather than with
`tokenizers.trainers.UnigramTrainer`: that trainer keeps its word counts in a hash map seeded at
random in each process and walks it in that order, so its EM sums floats in a different order in
every process (scores differ in the last digits) and it orders tied pieces by that walk (token ids
differ), even single-threaded. The pretraining runs on one thread with fixed seeds (see `pretrain`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaForMaskedLM

from xsweep import paths
from xsweep.atomic import write_json
from xsweep.errors import XsweepError
from xsweep.models.unigram import unigram_pieces
from xsweep.objectives.mlm import mask_tokens

# XLM-R's special-token ids: <s>=0, <pad>=1, </s>=2, <unk>=3; <mask> follows them here.
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
MAX_POSITIONS = 514  # as XLM-R: 512 tokens + the padding offset; prompts of 100 still fit
MAX_TOKENS = 64  # pretraining sequence cap; the demo utterances are short
# Bump when the recipe below changes, so old caches are not reused. 2: deterministic build (the
# tokenizer trained here, not by `tokenizers`' trainer; deterministic torch algorithms).
RECIPE_VERSION = 2


def build_builtin_backbone(corpus: list[str], *, layers: int = 4, hidden: int = 128, heads: int = 4,
                           vocab_size: int = 4000, pretrain_steps: int = 600, pretrain_lr: float = 1e-3,
                           seed: int = 0,
                           cache_root: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Train (once) and cache the built-in backbone for `corpus`; returns its folder.

    A second call with the same corpus and spec returns the cached folder without training.
    """
    texts = [t.strip() for t in corpus if t and t.strip()]
    if len(texts) < 10:
        raise XsweepError(f"the built-in backbone needs a corpus of at least 10 sentences, got {len(texts)}",
                          where="backbone", fix="generate the demo data first (`xsweep data synth`)")
    if hidden % heads:
        raise XsweepError(f"hidden size {hidden} is not a multiple of {heads} heads", where="backbone")
    spec = {"layers": layers, "hidden": hidden, "heads": heads, "vocab_size": vocab_size,
            "pretrain_steps": pretrain_steps, "pretrain_lr": pretrain_lr, "seed": seed, "recipe": RECIPE_VERSION}
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8") + b"\n")
    root = Path(cache_root) if cache_root is not None else paths.cache_dir() / "backbones"
    target = root / f"builtin-{digest.hexdigest()[:16]}"
    if (target / "xsweep_builtin.json").is_file():
        return target

    log(f"xsweep: pretraining the built-in backbone ({layers} layers, hidden {hidden}) with {pretrain_steps} "
        f"masked-LM steps on {len(texts)} sentences (once; minutes on CPU); caching it in {target}")
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".builtin-", dir=root))
    try:
        started = time.perf_counter()
        tokenizer = train_tokenizer(texts, vocab_size)
        tokenizer.save_pretrained(work)
        threads = torch.get_num_threads()
        deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        # One thread, for determinism and for speed. torch splits a float reduction (a sum, a norm)
        # among its threads, so the rounding, and then the weights, depend on the thread count
        # (measured: a 3M-element sum differs between 1 and 2 threads); fixing it makes every machine
        # and caller build the same model. And a model this small gains nothing from a second thread
        # but loses many times over when the other core is busy (up to 70x slower under load).
        torch.set_num_threads(1)
        # Deterministic kernels only: an op without one raises here instead of making builds differ
        # silently. On one CPU thread the ops used today are deterministic anyway; this keeps it so.
        torch.use_deterministic_algorithms(True)
        try:
            with torch.random.fork_rng():  # leave the caller's random state as it was
                model, losses = pretrain(texts, tokenizer, layers=layers, hidden=hidden, heads=heads,
                                         steps=pretrain_steps, seed=seed, lr=pretrain_lr)
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        model.save_pretrained(work)
        write_json(work / "xsweep_builtin.json", {**spec, "sentences": len(texts), "vocab": len(tokenizer),
                                                  "mlm_loss_first": losses[0], "mlm_loss_last": losses[-1],
                                                  "seconds": round(time.perf_counter() - started, 1)})
        try:
            os.rename(work, target)
        except OSError:
            # Another process finished the same backbone first: keep theirs, drop ours.
            if not (target / "xsweep_builtin.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"xsweep: built-in backbone ready ({time.perf_counter() - started:.0f} s, MLM loss "
        f"{losses[0]:.2f} -> {losses[-1]:.2f}): {target}")
    return target


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """An XLM-R-like Unigram tokenizer (NFKC, SentencePiece's "▁" word marker, `<s> ... </s>`).

    `vocab_size` counts the special tokens; the corpus may hold fewer pieces worth keeping.
    Wrapped as PreTrainedTokenizerFast: loading it as XLMRobertaTokenizerFast would drop the normaliser.
    """
    normalizer, pre_tokenizer = normalizers.NFKC(), pre_tokenizers.Metaspace()
    # The words `Tokenizer.train_from_iterator` would hand a trainer, counted, in sorted order.
    counts = Counter(word for text in texts
                     for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    pieces = unigram_pieces(sorted(counts.items()), vocab_size - len(SPECIAL_TOKENS))
    tok = Tokenizer(models.Unigram([(t, 0.0) for t in SPECIAL_TOKENS] + pieces,
                                   unk_id=SPECIAL_TOKENS.index("<unk>"), byte_fallback=False))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre_tokenizer, decoders.Metaspace()
    tok.add_special_tokens(SPECIAL_TOKENS)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", cls_token="<s>",
                                   sep_token="</s>", pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                   model_max_length=MAX_POSITIONS - 2)


def pretrain(texts: list[str], tokenizer: PreTrainedTokenizerFast, *, layers: int, hidden: int, heads: int,
             steps: int, seed: int, batch_size: int = 32, lr: float = 1e-3) -> tuple[XLMRobertaForMaskedLM, list[float]]:
    """A random-init XLMRobertaForMaskedLM trained `steps` MLM steps on `texts`; returns it and its losses.

    Deterministic for a given seed on a given thread count: every random draw (initial weights,
    masking, dropout, batches) comes from torch's global generator or `rng`, both seeded here.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=4 * hidden, max_position_embeddings=MAX_POSITIONS, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, type_vocab_size=1)
    model = XLMRobertaForMaskedLM(config)
    encoded = tokenizer(texts, truncation=True, max_length=MAX_TOKENS)["input_ids"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))))
    special = sorted(tokenizer.all_special_ids)
    model.train()
    losses = []
    for _ in range(steps):
        rows = [encoded[rng.randrange(len(encoded))] for _ in range(batch_size)]
        ids, mask = _pad(rows, tokenizer.pad_token_id)
        inputs, labels = mask_tokens(ids, mask, special_ids=special, mask_id=tokenizer.mask_token_id,
                                     vocab_size=len(tokenizer))
        loss = model(input_ids=inputs, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(round(loss.item(), 4))
    model.eval()
    # Report smoothed ends so one lucky batch does not stand for the curve.
    window = max(1, min(20, steps // 5))
    return model, [sum(losses[:window]) / window, sum(losses[-window:]) / window]


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != pad_id).long()

