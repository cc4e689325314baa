"""What a sweep needs before its first trial: data on disk, a backbone, a self-describing run dir.

Done once in the driver, so trials never race to generate demo data or train the built-in model.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from xsweep.atomic import write_json
from xsweep.config import ExperimentConfig
from xsweep.data.massive import available_locales, locale_file
from xsweep.data.subsets import SUBSETS_FILE
from xsweep.digest import file_sha256
from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT, cache_dir, data_root
from xsweep.sweep.preflight import check_aligned_prompts, check_backbone, check_data, eval_subsets

BUILTIN_PREFIX = "builtin:"
# Built-in backbones: XLM-R architecture, tokenizer and MLM pretraining from the demo corpus.
# `tiny` is the quickstart's: its MLM pretraining is what makes the frozen model worth prompting
# (PT on the demo data, one seed: 39% English test after 600 steps, 63% after 1200, 89% after 2400). `micro` is
# for tests of the plumbing, where learning is not the point and seconds count.
BUILTIN_SPECS = {
    "tiny": {"layers": 4, "hidden": 128, "heads": 4, "pretrain_steps": 2400},
    "micro": {"layers": 2, "hidden": 64, "heads": 2, "pretrain_steps": 150},
}
DEMO_SEED = 0


@dataclass
class PreparedInputs:
    data_dir: Path
    """Local MASSIVE folder of `<locale>.jsonl` files, SGD folder (`data.dataset: sgd`), or CoNLL
    folder of `<lang>.<split>.conll` files (`data.dataset: conll`)."""
    eval_locales: list[str]
    backbone_path: str
    """Local directory (built-in or user's) or a hub id."""
    data_files: list[Path]


def demo_data_dir(log: Callable[[str], None] = print) -> Path:
    """The project's own demo data, generated once into the cache."""
    from xsweep.data.synth import ensure_demo_data

    root = cache_dir() / "demo-data" / f"seed{DEMO_SEED}"
    if not root.exists():
        log(f"xsweep: generating the demo data set into {root}")
    return ensure_demo_data(root, seed=DEMO_SEED)


def massive_dir(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> Path:
    if cfg.data.path == "demo":
        return demo_data_dir(log) / "massive" / "1.1" / "data"
    if cfg.data.path == "massive":
        folder = data_root() / "massive" / "1.1" / "data"
        if not folder.is_dir():
            raise XsweepError(f"data.path is massive but MASSIVE 1.1 is not in {str(folder)!r}",
                              where="data.path",
                              fix="fetch it with `xsweep data download massive` (XSWEEP_DATA sets where), "
                                  "or set data.path to your copy's folder")
        return folder
    return Path(cfg.data.path)  # read_massive accepts the locale folder, 1.1/data/ or the tarball


def sgd_dir(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> Path:
    """The folder holding SGD's (or XSGD's) `train/ dev/ test/` for `data.dataset: sgd`."""
    if cfg.data.path == "demo":
        return demo_data_dir(log) / "xsgd"  # the demo dialogues: SGD layout with XSGD translations
    if cfg.data.path == "sgd":
        folder = data_root() / "sgd"
        if not folder.is_dir():
            raise XsweepError(f"data.path is sgd but SGD is not in {str(folder)!r}", where="data.path",
                              fix="fetch it with `xsweep data download sgd` (XSWEEP_DATA sets where), "
                                  "or set data.path to your copy's folder")
        return folder
    return Path(cfg.data.path)  # split_dir also finds sgd/ or xsgd/ inside it


def _prepare_sgd(cfg: ExperimentConfig, log: Callable[[str], None]) -> tuple[Path, list[str], list[Path]]:
    """(folder, eval locales, files) of an SGD experiment: English test, plus the locales of the
    XSGD translations the test split carries (none in SGD itself)."""
    from xsweep.data.sgd import SOURCE_LOCALE, SPLITS, dialogue_files, sgd_locales, split_dir

    data_dir = sgd_dir(cfg, log)
    found = sgd_locales(data_dir)
    for key, wanted in (("data.train_locale", [cfg.data.train_locale]),
                        ("data.eval_locales", [] if cfg.data.eval_locales == "all" else cfg.data.eval_locales)):
        missing = [loc for loc in wanted if loc not in found]
        if missing:
            raise XsweepError(f"no SGD/XSGD utterances for {', '.join(missing)} in {str(data_dir)!r}", where=key,
                              fix=f"languages found there: {', '.join(found)}; SGD itself is English only "
                                  f"({SOURCE_LOCALE}), other locales need XSGD files")
    eval_locales = found if cfg.data.eval_locales == "all" else list(cfg.data.eval_locales)
    files = []
    for split in SPLITS:
        folder = split_dir(data_dir, split)
        files += [folder / "schema.json", *dialogue_files(folder)]
    return data_dir, eval_locales, files


def _prepare_conll(cfg: ExperimentConfig) -> tuple[Path, list[str], list[Path]]:
    """A CoNLL folder: its languages are the data's own tags, checked here (not at config load),
    with the nearest tags the folder holds for a misspelt one."""
    import difflib

    from xsweep.data.conll import conll_files, conll_languages

    data_dir = Path(cfg.data.path).expanduser()
    files = conll_files(data_dir)
    testable = conll_languages(data_dir, "test")

    def unknown(key: str, tag: str, have: list[str], need: str) -> XsweepError:
        near = difflib.get_close_matches(tag, have, n=3, cutoff=0.5)
        return XsweepError(f"{key}: no {need} for language {tag!r} in {str(data_dir)!r}", where=key,
                           fix=(f"did you mean {', '.join(near)}? " if near else "")
                           + f"languages there: {', '.join(have) or 'none'}")

    train = cfg.data.train_locale
    if train not in files or not {"train", "dev"} <= set(files[train]):
        raise unknown("data.train_locale", train, conll_languages(data_dir, "train"),
                      f"{train}.train.conll and {train}.valid.conll")
    eval_locales = testable if cfg.data.eval_locales == "all" else list(cfg.data.eval_locales)
    for tag in eval_locales:
        if tag not in testable:
            raise unknown("data.eval_locales", tag, testable, f"{tag}.test.conll")
    eval_locales = sorted(eval_locales, key=lambda loc: (loc != train, loc))
    read = [files[train]["train"], files[train]["dev"]] + [files[tag]["test"] for tag in eval_locales]
    return data_dir, eval_locales, list(dict.fromkeys(read))


def prepare_inputs(cfg: ExperimentConfig, log: Callable[[str], None] = print) -> PreparedInputs:
    if cfg.data.dataset == "sgd":
        data_dir, eval_locales, files = _prepare_sgd(cfg, log)
    elif cfg.data.dataset == "conll":
        data_dir, eval_locales, files = _prepare_conll(cfg)
    else:
        data_dir, eval_locales, files = _prepare_massive(cfg, log)
    # Bad data, shots or aligned prompts fail here, in the driver, before any trial starts.
    check_data(cfg, data_dir, eval_locales)
    check_aligned_prompts(cfg)
    if not cfg.backbone.name.startswith(BUILTIN_PREFIX):
        check_backbone(cfg.backbone.name)
    return PreparedInputs(data_dir=data_dir, eval_locales=eval_locales,
                          backbone_path=resolve_backbone(cfg, data_dir, log), data_files=files)


def _prepare_massive(cfg: ExperimentConfig, log: Callable[[str], None]) -> tuple[Path, list[str], list[Path]]:
    """The MASSIVE folder, the locales to test (training locale first) and the files read."""
    data_dir = massive_dir(cfg, log)
    found = available_locales(data_dir)
    if cfg.data.train_locale not in found:
        raise XsweepError(f"no data file for the training locale {cfg.data.train_locale!r} in {str(data_dir)!r}",
                          where="data.train_locale",
                          fix=f"locales found there: {', '.join(found) or 'none'}; "
                              "`xsweep data download massive` fetches MASSIVE")
    if cfg.data.eval_locales == "all":
        eval_locales = found
    else:
        missing = [loc for loc in cfg.data.eval_locales if loc not in found]
        if missing:
            raise XsweepError(f"no data file for eval locale(s) {', '.join(missing)} in {str(data_dir)!r}",
                              where="data.eval_locales",
                              fix=f"locales found there: {', '.join(found)}; remove the others or add their files")
        eval_locales = list(cfg.data.eval_locales)
    # The training locale first, as the paper's tables put English first.
    eval_locales = sorted(eval_locales, key=lambda loc: (loc != cfg.data.train_locale, loc))
    files = [locale_file(data_dir, loc) for loc in sorted(set(eval_locales) | {cfg.data.train_locale})]
    return data_dir, eval_locales, files


def resolve_backbone(cfg: ExperimentConfig, data_dir: Path, log: Callable[[str], None] = print) -> str:
    name = cfg.backbone.name
    if not name.startswith(BUILTIN_PREFIX):
        return name
    kind = name[len(BUILTIN_PREFIX):]
    if kind not in BUILTIN_SPECS:
        raise XsweepError(f"unknown built-in backbone {name!r}", where="backbone.name",
                          fix=f"use one of {', '.join(BUILTIN_PREFIX + k for k in BUILTIN_SPECS)}, "
                              "a hub id or a local model directory")
    from xsweep.data.synth import demo_corpus
    from xsweep.models.builtin import build_builtin_backbone

    # The built-in model learns its vocabulary and a short MLM pretraining from the demo corpus,
    # whatever the task data: it is the same model for every experiment, cached once.
    corpus = demo_corpus(demo_data_dir(log) / "massive" / "1.1" / "data")
    return str(build_builtin_backbone(corpus, **BUILTIN_SPECS[kind], log=log))


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("xsweep", "torch", "transformers", "ray", "tokenizers", "datasets", "pyarrow", "optuna", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _file_name(path: Path, data_dir: Path, cfg: ExperimentConfig) -> str:
    """A data file's manifest key: its name (MASSIVE's `<locale>.jsonl`), or for SGD its path in
    the data folder, since each of SGD's splits holds a `schema.json`."""
    if cfg.data.dataset in ("massive", "conll"):
        return path.name
    try:
        return path.relative_to(data_dir).as_posix()
    except ValueError:
        return path.name


def write_manifest(run_dir: Path, cfg: ExperimentConfig, inputs: PreparedInputs) -> Path:
    """What any table of this run can be traced back to: code, packages, data, command."""
    manifest = {
        "experiment": cfg.name,
        "command": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "xsweep_git_commit": _git_commit(),
        "backbone": {"name": cfg.backbone.name, "path": inputs.backbone_path},
        "data_dir": str(inputs.data_dir),
        "data_files": {_file_name(p, inputs.data_dir, cfg): file_sha256(p) for p in inputs.data_files},
        "eval_locales": inputs.eval_locales,
    }
    subsets = eval_subsets(cfg, inputs.data_dir)
    if subsets:  # the utterances every trial was scored on, when the sweep cuts dev or test
        write_json(run_dir / SUBSETS_FILE, subsets)
        manifest["eval_subsets"] = {partition: sorted(sizes) for partition, sizes in subsets.items()}
    path = run_dir / "manifest.json"
    write_json(path, manifest)
    return path
