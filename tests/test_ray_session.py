"""Where a sweep without `--address` runs: in a Ray of its own, never in a cluster that someone
else started on the same machine, and whatever `xsweep submit` did earlier in the same process.

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


SUBMIT_THEN_RUN = """
import socket, sys
sys.modules["aiohttp"] = None  # no job client: submit stops after choosing the auth mode
import ray
from xsweep.cli import main
from xsweep.sweep.ray_session import start_ray
with socket.socket() as server:  # something answers, so the address check passes
    server.bind(("127.0.0.1", 0))
    server.listen()
    code = main(["submit", "experiments/quickstart.yaml", "storage.root=/tmp/xsweep-runs",
                 "--address", f"http://127.0.0.1:{server.getsockname()[1]}"])
assert code == 2, code
start_ray()
print("gcs", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def test_a_local_ray_starts_after_submit_ran_in_the_same_process(tmp_path):
    """`xsweep submit` turns token auth on (RAY_AUTH_MODE) when a token file exists. Left set after
    it, a local Ray started later in that process required the token while Ray had configured the
    driver without it: InvalidAuthToken (the test session failed so on a CI machine with a token)."""
    token = tmp_path / "auth_token"
    token.write_text("0123456789abcdef" * 4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_TOKEN_PATH=str(token), PYTHONPATH=str(REPO_ROOT))
    done = subprocess.run([sys.executable, "-c", SUBMIT_THEN_RUN], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any(line.startswith("gcs ") for line in done.stdout.splitlines()), done.stdout
