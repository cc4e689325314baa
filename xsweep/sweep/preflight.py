"""Checks a sweep runs in the driver before it starts Ray or writes a byte of its run directory.

A bad input found inside a trial costs a worker start-up per trial and leaves a run directory of
failed records; found here, it is one clear error (what, where, how to fix) and nothing written.
Cheapest checks first: the cluster address and storage, then the data files (every line is
parsed), the few-shot sizes, an APT run's aligned prompt, and last the backbone.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from xsweep.config import ExperimentConfig, grid_points, with_overrides
from xsweep.errors import XsweepError

CONNECT_TIMEOUT_S = 5.0
"""How long the driver waits for a cluster address to accept a TCP connection."""


def trial_configs(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """One resolved config per grid point (seeds do not change what is checked here)."""
    return [with_overrides(cfg, point) for point in grid_points(cfg)]


def check_address(address: str | None) -> None:
    """Fail in seconds, not after Ray's minute of retries, when a cluster address does not answer.

    `None`, `auto` and `local` are left to Ray (a local Ray, or the cluster this node belongs to).
    """
    if not address or address in ("auto", "local"):
        return
    where = "--address / RAY_ADDRESS"
    parsed = urlparse(address if "://" in address else f"ray://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise XsweepError(f"cluster address {address!r} is not of the form host:port", where=where,
                          fix="pass the head node's GCS address, e.g. --address=127.0.0.1:6379")
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise XsweepError(f"cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}",
                          where=where,
                          fix="start the cluster (`ray up cluster.yaml`, or `ray start --head`) and pass "
                              "its address, e.g. --address=127.0.0.1:6379; leave it unset to run "
                              "locally") from None


def check_storage(run_dir: Path) -> None:
    """The run directory can be created and written, checked without creating anything."""
    run_dir = Path(run_dir)
    existing = run_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    problem = None
    if not existing.is_dir():
        problem = f"{str(existing)!r} is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem = f"{str(existing)!r} is not writable"
    if problem:
        raise XsweepError(f"cannot create the run directory {str(run_dir)!r}: {problem}",
                          where="storage.root",
                          fix="set storage.root to a writable folder, e.g. storage.root=runs")


def eval_subsets(cfg: ExperimentConfig, data_dir: Path) -> dict[str, dict[int, list[str]]]:
    """{partition: {size: ids}} for every dev/test subset a grid point asks for (data/subsets.py),
    drawn in its training locale; empty when no grid point cuts a partition."""
    from xsweep.data.subsets import SIZE_KEYS, massive_subset_ids, subset_size

    subsets: dict[str, dict[int, list[str]]] = {}
    for c in trial_configs(cfg):
        for partition in SIZE_KEYS:
            size = subset_size(c.data, partition)
            if size is not None:
                ids = massive_subset_ids(Path(data_dir), c.data.train_locale, partition, size)
                subsets.setdefault(partition, {})[size] = list(ids)
    return subsets


def check_data(cfg: ExperimentConfig, data_dir: Path, eval_locales: list[str]) -> None:
    """Parse every file the sweep will read, and check each grid point's few-shot size fits."""
    from xsweep.data.fewshot import sample_few_shot
    from xsweep.data.massive import read_massive
    from xsweep.data.massive_checks import check_locale_rows
    from xsweep.data.subsets import keep_ids

    if cfg.data.dataset == "sgd":
        check_sgd_data(cfg, data_dir, eval_locales)
        return
    if cfg.data.dataset == "conll":
        check_conll_data(cfg, data_dir, eval_locales)
        return
    configs = trial_configs(cfg)
    train_locales = sorted({c.data.train_locale for c in configs})
    slots = any(c.head.kind == "slot" for c in configs)
    # A whole-file read validates every line (malformed JSON, wrong field types, bad bytes, empty file).
    train_files = {locale: read_massive(data_dir, locale) for locale in train_locales}
    subsets = eval_subsets(cfg, data_dir)  # test subsets: every evaluated locale must hold their ids
    for locale in sorted(set(eval_locales) | set(train_locales)):
        rows = train_files[locale] if locale in train_files else read_massive(data_dir, locale)
        # Content faults that would silently change a score, or fail only at evaluation: duplicated
        # rows, test intents the label map lacks, non-parallel ids, slot markup (data/massive_checks.py).
        for train_locale, train_rows in train_files.items():
            check_locale_rows(rows, train_rows, evaluated=locale in eval_locales,
                              trains=locale == train_locale, slots=slots)
        wanted = (["test"] if locale in eval_locales else []) + (["train", "dev"] if locale in train_locales else [])
        for partition in wanted:
            if not any(r.partition == partition for r in rows):
                raise XsweepError(f"the {partition} partition of {locale} is empty", where=str(data_dir),
                                  fix="use complete MASSIVE files; a split with no rows cannot be trained "
                                      "or scored")
        for size, ids in subsets.get("test", {}).items() if locale in eval_locales else ():
            keep_ids([r for r in rows if r.partition == "test"], ids,
                     where=f"data.max_test_examples_per_locale={size}: {locale} test in {data_dir}")
        if locale not in train_locales:
            continue
        train = [r for r in rows if r.partition == "train"]
        for shots in sorted({c.data.shots for c in configs if c.data.train_locale == locale} - {None}):
            try:
                sample_few_shot(train, shots, seed=0)  # sizes do not depend on the seed
            except XsweepError as exc:
                raise XsweepError(f"data.shots={shots}: {exc.what} in the {locale} training data",
                                  where="data.shots", fix=exc.fix) from None


def check_conll_data(cfg: ExperimentConfig, data_dir: Path, eval_locales: list[str]) -> None:
    """Parse every CoNLL file a trial reads (every block: columns, BIO tags, intent), then the
    MASSIVE-style content checks: dev/test intents the training split lacks, and few-shot sizes."""
    from xsweep.data.conll import read_conll
    from xsweep.data.fewshot import sample_few_shot
    from xsweep.data.massive_checks import check_known_intents

    train_locale = cfg.data.train_locale
    train = read_conll(data_dir, train_locale, "train")
    intents = {row.intent for row in train}
    check_known_intents(read_conll(data_dir, train_locale, "dev"), intents, train_locale, ["dev"])
    for locale in eval_locales:
        check_known_intents(read_conll(data_dir, locale, "test"), intents, train_locale, ["test"])
    for shots in sorted({c.data.shots for c in trial_configs(cfg)} - {None}):
        try:
            sample_few_shot(train, shots, seed=0)
        except XsweepError as exc:
            raise XsweepError(f"data.shots={shots}: {exc.what} in the {train_locale} training data",
                              where="data.shots", fix=exc.fix) from None


def check_sgd_data(cfg: ExperimentConfig, data_dir: Path, eval_locales: list[str]) -> None:
    """Read every SGD split a trial reads (validating every dialogue against its schema) in each
    turn choice of the grid; training needs in-scope frames, dev and test any frame."""
    from xsweep.data.sgd import read_locale_examples

    configs = {c.data.intent_turns: c for c in trial_configs(cfg)}.values()
    for trial_cfg in configs:
        reads = [(trial_cfg.data.train_locale, "train"), (trial_cfg.data.train_locale, "dev")]
        for locale, split in reads + [(locale, "test") for locale in eval_locales]:
            examples = read_locale_examples(data_dir, locale, split, trial_cfg.data.intent_turns)
            if not examples or (split == "train" and all(e.intent is None for e in examples)):
                raise XsweepError(f"the SGD {split} split holds no {'in-scope ' if examples else ''}user frames "
                                  f"for {locale} with data.intent_turns={trial_cfg.data.intent_turns}",
                                  where=str(data_dir), fix="use complete SGD files")


def check_aligned_prompts(cfg: ExperimentConfig) -> None:
    """An APT run's `prompt.init_from` holds a saved prompt matching this run's prompt settings."""
    for trial_cfg in trial_configs(cfg):
        if trial_cfg.method != "apt" or not trial_cfg.prompt.init_from:
            continue
        folder = Path(trial_cfg.prompt.init_from)
        fix = ("point prompt.init_from at the `prompt/` folder an alignment run wrote "
               "(it holds prompt.json and prompt.safetensors)")
        if not folder.is_dir():
            raise XsweepError(f"no alignment run at {str(folder)!r}: the folder does not exist",
                              where="prompt.init_from", fix=fix)
        description, tensors = folder / "prompt.json", folder / "prompt.safetensors"
        if not description.is_file() or not tensors.is_file():
            missing = [p.name for p in (description, tensors) if not p.is_file()]
            raise XsweepError(f"{str(folder)!r} holds no saved prompt ({', '.join(missing)} missing)",
                              where="prompt.init_from", fix=fix)
        try:
            saved = json.loads(description.read_text(encoding="utf-8"))["prompt"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise XsweepError(f"cannot read the aligned prompt's description: {exc}", where=str(description),
                              fix="re-run the alignment; the file is written by xsweep") from None
        mine = {"kind": trial_cfg.prompt.kind, "length": trial_cfg.prompt.length,
                "shift_positions": trial_cfg.prompt.shift_positions,
                "reparam_hidden": trial_cfg.prompt.reparam_hidden}
        for key, value in mine.items():
            if key in saved and saved[key] != value:
                raise XsweepError(
                    f"the aligned prompt has {key} {saved[key]!r} but this run asks for prompt.{key} {value!r}",
                    where=f"prompt.init_from ({folder})",
                    fix=f"set prompt.{key}={saved[key]!r} to use this prompt, or align a prompt with "
                        f"{key} {value!r}")


def check_backbone(name: str) -> None:
    """A backbone folder exists and holds a supported encoder; a hub id is in the local cache
    (or the hub can be reached). Built-in backbones are checked where they are built."""
    from xsweep.models.backbone import SUPPORTED_FAMILIES

    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or path.exists()
    if looks_like_path:
        if not path.is_dir():
            raise XsweepError(f"backbone folder {name!r} does not exist", where="backbone.name",
                              fix="pass a folder holding a Hugging Face encoder (config.json, weights, "
                                  "tokenizer), a hub id, or builtin:tiny")
        config_file = path / "config.json"
        try:
            model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError) as exc:
            raise XsweepError(f"backbone folder {name!r} holds no readable config.json ({exc})",
                              where="backbone.name",
                              fix="pass a folder written by save_pretrained (config.json, weights, tokenizer)"
                              ) from None
        if model_type not in SUPPORTED_FAMILIES:
            raise XsweepError(f"backbone {name!r} is a {model_type!r} model, which xsweep's prompts do not "
                              "support", where="backbone.name",
                              fix=f"use an encoder of one of: {', '.join(sorted(SUPPORTED_FAMILIES))}")
        return
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    from xsweep.models.backbone import _hub_reachable

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if offline or not _hub_reachable():
        reason = "HF_HUB_OFFLINE is set" if offline else "the hub cannot be reached"
        raise XsweepError(f"backbone {name!r} is not in the local Hugging Face cache and {reason}",
                          where="backbone.name",
                          fix=f"download it first (`hf download {name}`), point HF_HOME at a cache that "
                              "holds it, or pass a local folder")
