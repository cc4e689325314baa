"""Where xsweep keeps caches and where tests find the shared real data."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of xsweep's on-disk caches (tokenizers, built-in backbones, tokenized data).

    Override with XSWEEP_CACHE; defaults to ~/.cache/xsweep.
    """
    root = os.environ.get("XSWEEP_CACHE") or Path.home() / ".cache" / "xsweep"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_root() -> Path:
    """Where `xsweep data download` puts data sets; XSWEEP_DATA overrides (default: the cache)."""
    override = os.environ.get("XSWEEP_DATA")
    return Path(override).expanduser() if override else cache_dir() / "data"


def shared_data_dir() -> Path:
    """The real data sets beside the checkout (../shared/data); XSWEEP_SHARED_DATA overrides."""
    override = os.environ.get("XSWEEP_SHARED_DATA")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "data"
