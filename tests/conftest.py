"""Shared fixtures: one Ray session for every test that needs it, and an isolated cache."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Isolate xsweep's caches from the user's, before anything imports xsweep.paths.
os.environ.setdefault("XSWEEP_CACHE", tempfile.mkdtemp(prefix="xsweep-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from xsweep.paths import REPO_ROOT, shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    import ray

    from xsweep.sweep.runner import start_ray

    start_ray()
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"real data not found at {path}; set XSWEEP_SHARED_DATA")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
