"""Where a sweep without `--address` runs: in a Ray of its own, never in a cluster that someone
else started on the same machine.

Ray's `ray.init()` without an address joins the cluster that `ray start` last started on this
machine (it reads `ray_current_cluster` in Ray's temp folder). A CI machine had one running, with
token authentication, and every Ray test failed to start. The subprocess below gets a temp folder
whose `ray_current_cluster` names a cluster that is not there, as after a `ray start` that ended
without `ray stop`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from xsweep.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(120)

SCRIPT = """
import ray
from xsweep.sweep.ray_session import start_ray
start_ray()
print("gcs", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_without_an_address_a_local_ray_is_started_even_when_ray_start_left_a_cluster_behind():
    # A short folder: Ray's unix sockets live under it (107-character limit).
    with tempfile.TemporaryDirectory(prefix="xrs-", dir="/tmp") as ray_tmp:
        stale = f"127.0.0.1:{_closed_port()}"
        (Path(ray_tmp) / "ray").mkdir()
        (Path(ray_tmp) / "ray" / "ray_current_cluster").write_text(stale)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=ray_tmp, PYTHONPATH=str(REPO_ROOT))
        done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    gcs = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("gcs ")]
    assert gcs and gcs[0] != stale, (done.stdout, stale)
