"""`xsweep submit` on a real two-node Ray cluster started on this machine, and its bad inputs.

The cluster is two `ray start --block` processes (a head and a second node) with token
authentication, their own token, temp dirs and ports, so they touch neither the test session's
local Ray nor any other Ray on the machine; the test ends them by process group (never `ray stop`,
which ends every Ray on the machine). The cheap bad-input tests need no cluster.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from xsweep.cli import main
from xsweep.paths import REPO_ROOT
from xsweep.record import read_records


@pytest.fixture
def job_server_packages() -> None:
    """Ray's job server and client need ray[default] (xsweep's submit extra). `make test` installs it,
    so without it the cluster test fails rather than skipping what it exists to check."""
    try:
        import ray.dashboard.optional_deps  # noqa: F401  (Ray's own test for its job server's packages)
    except ImportError as exc:
        pytest.fail(f"ray[default] is not installed ({exc}); `make test` installs it: pip install -e '.[submit]'")

# The e2e test's tiny sweep (built-in micro model, demo data, 2 seeds), as overrides of a shipped
# experiment: the job ships the checkout, so the experiment file must be inside it.
TINY_SWEEP = ["experiments/quickstart.yaml", "backbone.name=builtin:micro", "data.max_seq_len=40",
              "prompt.length=8", "optim.epochs=3", "optim.batch_size=32", "optim.patience=3",
              "optim.warmup_ratio=0", "sweep.grid={optim.lr: [1.0e-2]}", "sweep.seeds=[0,1]"]
NODE_TIMEOUT_S = 90
QUICKSTART = str(REPO_ROOT / "experiments" / "quickstart.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound and released: refused at once)."""
    return _free_port()


class TwoNodeCluster:
    """A head node and a second node on this machine, one CPU each, with token authentication."""

    def __init__(self):
        # Short temp paths: Ray's unix sockets live under them (107-character limit).
        self.root = Path(tempfile.mkdtemp(prefix="xsc-", dir="/tmp"))
        self.token_file = self.root / "auth_token"
        self.token_file.write_text(secrets.token_hex(32))
        self.gcs_port, self.dashboard_port = _free_port(), _free_port()
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.processes: list[subprocess.Popen] = []
        bin_dir = str(Path(sys.executable).parent)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        # The job runs `python -m xsweep` with the nodes' PATH: this interpreter's.
        self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_file),
                        RAY_USAGE_STATS_ENABLED="0", PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""))

    def start(self) -> None:
        self._ray_start("head", ["--head", f"--port={self.gcs_port}", "--dashboard-host=127.0.0.1",
                                 f"--dashboard-port={self.dashboard_port}",
                                 f"--ray-client-server-port={_free_port()}"])
        self._wait_for(lambda: _accepts(self.gcs_port), "the head's GCS")
        # Its own temp dir: nodes sharing one would delete each other's copy of the job's files.
        self._ray_start("node2", [f"--address=127.0.0.1:{self.gcs_port}"])
        self._wait_for(lambda: _accepts(self.dashboard_port), "the head's dashboard")
        self._wait_for_nodes(2)

    def _ray_start(self, name: str, args: list[str]) -> None:
        temp_dir = self.root / name
        temp_dir.mkdir()
        ports = [f"--{flag}={_free_port()}" for flag in ("node-manager-port", "object-manager-port",
                                                          "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                          "runtime-env-agent-port", "metrics-export-port")]
        command = [str(Path(sys.executable).parent / "ray"), "start", "--block", "--num-cpus=1",
                   f"--temp-dir={temp_dir}", "--object-store-memory=100000000", *ports, *args]
        log = open(self.root / f"{name}.log", "w")
        self.processes.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))

    def _wait_for(self, ready, what: str) -> None:
        deadline = time.monotonic() + NODE_TIMEOUT_S
        while not ready():
            for process in self.processes:
                assert process.poll() is None, f"{what}: `ray start` exited:\n{self.logs()}"
            assert time.monotonic() < deadline, f"{what} not up after {NODE_TIMEOUT_S} s:\n{self.logs()}"
            time.sleep(0.5)

    def _wait_for_nodes(self, count: int) -> None:
        script = ("import ray, sys, time\n"
                  f"ray.init(address='127.0.0.1:{self.gcs_port}', log_to_driver=False)\n"
                  f"deadline = time.monotonic() + {NODE_TIMEOUT_S}\n"
                  f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
                  "    if time.monotonic() > deadline: sys.exit(1)\n"
                  "    time.sleep(0.5)\n")
        done = subprocess.run([sys.executable, "-c", script], env=self.env, capture_output=True, text=True,
                              timeout=NODE_TIMEOUT_S + 30)
        assert done.returncode == 0, f"{count} nodes not alive:\n{done.stderr[-3000:]}\n{self.logs()}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        """End every process of this cluster: the `ray start` process groups, then any Ray worker
        that left its group (found by this cluster's own token path in its environment)."""
        for process in self.processes:
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and any(p.poll() is None for p in self.processes):
            time.sleep(0.2)
        for process in self.processes:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        marker = f"RAY_AUTH_TOKEN_PATH={self.token_file}".encode()
        for pid in _pids_with_environ(marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # start_new_session: the group id is the `ray start` process's id
    except ProcessLookupError:
        pass


def _pids_with_environ(marker: bytes) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _xsweep(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI, from the checkout (what a user runs), with its output for the assertion messages."""
    return subprocess.run([sys.executable, "-m", "xsweep", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(480)
@pytest.mark.ray  # a two-node cluster of its own
def test_submit_runs_a_sweep_on_a_two_node_cluster(tmp_path, job_server_packages):
    cluster = TwoNodeCluster()
    try:
        cluster.start()
        # The client gets the token path but no RAY_AUTH_MODE: xsweep turns token auth on itself.
        client_env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
        address = ["--address", cluster.address]

        # A sweep left running (--no-wait) while a second one is refused, then followed to its end.
        root = tmp_path / "shared"
        started = _xsweep(["submit", *TINY_SWEEP, "name=remote", f"storage.root={root}", "storage.shared=true",
                           "--no-wait", *address], client_env, timeout=60)
        assert started.returncode == 0, started.stdout + started.stderr + cluster.logs()
        job_id = re.search(r"submitted job (\S+)", started.stdout).group(1)
        assert f"xsweep stop {job_id} --address {cluster.address}" in started.stdout

        # Local storage on a cluster of two nodes: refused before any trial, nothing left behind.
        # (Submitted once the first job has made the demo data and built-in model they share.)
        deadline = time.monotonic() + 120
        while not (root / "remote" / "config.yaml").exists():
            assert time.monotonic() < deadline, _xsweep(["status", job_id, *address], client_env).stdout
            time.sleep(0.5)
        local = tmp_path / "local"
        refused = _xsweep(["submit", *TINY_SWEEP, "name=local", f"storage.root={local}", *address], client_env)
        output = refused.stdout + refused.stderr
        assert refused.returncode == 2, output
        assert "2 nodes" in output and "storage.shared=true" in output and "shared file system" in output
        assert not (local / "local").exists()

        followed = _xsweep(["status", job_id, "--follow", *address], client_env)
        output = followed.stdout + followed.stderr
        assert followed.returncode == 0 and f"job {job_id} succeeded" in output, output + cluster.logs()
        records = read_records(root / "remote")
        assert sorted(r.seed for r in records) == [0, 1]
        assert all(r.status == "completed" and r.test_scores for r in records)
        assert (root / "remote" / "results" / "results.md").is_file()
        status = _xsweep(["status", job_id, *address], client_env, timeout=60)
        assert status.returncode == 0 and "SUCCEEDED" in status.stdout, status.stdout + status.stderr

        # A running job is stopped by id.
        started = _xsweep(["submit", *TINY_SWEEP, "name=stopped", "optim.epochs=50", f"storage.root={tmp_path}",
                           "storage.shared=true", "--no-wait", *address], client_env, timeout=60)
        assert started.returncode == 0, started.stdout + started.stderr
        stopped_id = re.search(r"submitted job (\S+)", started.stdout).group(1)
        stop = _xsweep(["stop", stopped_id, *address], client_env, timeout=60)
        assert stop.returncode == 0 and f"stopping job {stopped_id}" in stop.stdout, stop.stdout + stop.stderr
        deadline = time.monotonic() + 60
        while "STOPPED" not in (status := _xsweep(["status", stopped_id, *address], client_env, timeout=60)).stdout:
            assert time.monotonic() < deadline, status.stdout + status.stderr
            time.sleep(1)
        assert status.returncode == 1

        unknown = _xsweep(["status", "xsweep-no-such-job", *address], client_env, timeout=60)
        assert unknown.returncode == 2 and "xsweep-no-such-job" in unknown.stderr, unknown.stderr

        # No token at all (a fresh home, no token variables): the server's 401 becomes what to do.
        home = tmp_path / "home"
        home.mkdir()
        no_token = {k: v for k, v in client_env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
        missing = _xsweep(["status", job_id, *address], no_token, timeout=60)
        assert missing.returncode == 2, missing.stdout + missing.stderr
        assert "requires an authentication token" in missing.stderr and "ray get-auth-token" in missing.stderr
        assert "Traceback" not in missing.stderr

        wrong_token = home / "wrong_token"
        wrong_token.write_text(secrets.token_hex(32))
        wrong = _xsweep(["status", job_id, *address], no_token | {"RAY_AUTH_TOKEN_PATH": str(wrong_token)},
                        timeout=60)
        assert wrong.returncode == 2 and "refused the authentication token" in wrong.stderr, wrong.stderr
    finally:
        cluster.stop()


def test_submit_to_an_unreachable_address_fails_in_seconds(capsys, monkeypatch, silent_host):
    """A job server that never answers is probed once with a bounded connect timeout, and refused
    before Ray's job client is built (its HTTP calls retry for much longer)."""
    from xsweep.sweep import submit

    def job_client_class():
        raise AssertionError("the job client was built for an address the probe could not reach")

    monkeypatch.setattr(submit, "_job_client_class", job_client_class)
    address = f"http://{silent_host.host}:8265"
    assert main(["submit", QUICKSTART, "storage.root=/tmp/xsweep-runs", "--address", address]) == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and address in err and "timed out" in err and "--address" in err, err
    assert "8265" in err and "Traceback" not in err
    (probed, timeout), = silent_host.probes
    assert probed == (silent_host.host, 8265)
    assert timeout is not None and 0 < timeout <= 10, f"connect timeout {timeout!r} s is not a bound of seconds"

    # A port that refuses at once: the same error, with the OS's reason.
    refused = f"http://127.0.0.1:{_closed_port()}"
    assert main(["submit", QUICKSTART, "storage.root=/tmp/xsweep-runs", "--address", refused]) == 2
    err = capsys.readouterr().err
    assert "cannot reach" in err and refused in err and "refused" in err, err


@pytest.mark.parametrize("address, expected", [
    ("http://127.0.0.1", "not of the form host:port"),
    ("127.0.0.1:notaport", "not of the form host:port"),
    ("ray://127.0.0.1:10001", "not a job server address"),
])
def test_submit_with_a_malformed_address_says_so(capsys, address, expected):
    assert main(["submit", QUICKSTART, "storage.root=/tmp/xsweep-runs", "--address", address]) == 2
    err = capsys.readouterr().err
    assert expected in err and "http://127.0.0.1:8265" in err


def test_status_and_stop_need_an_address(capsys, monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    for command in (["status", "xsweep-x"], ["stop", "xsweep-x"]):
        assert main(command) == 2
        assert "--address" in capsys.readouterr().err


def test_submit_checks_the_config_before_the_cluster(capsys, tmp_path):
    # A bad override, a relative storage.root (the job's copy of the checkout is temporary) and an
    # experiment outside the checkout are refused here; the unreachable address is never tried.
    address = f"http://127.0.0.1:{_closed_port()}"
    assert main(["submit", QUICKSTART, "optim.lr=-1", "--address", address]) == 2
    assert "optim.lr" in capsys.readouterr().err
    assert main(["submit", QUICKSTART, "--address", address]) == 2
    err = capsys.readouterr().err
    assert "storage.root 'runs' is relative" in err and "storage.shared=true" in err
    outside = tmp_path / "exp.yaml"
    shutil.copy(REPO_ROOT / "experiments" / "quickstart.yaml", outside)
    assert main(["submit", str(outside), "storage.root=/tmp/xsweep-runs", "--address", address]) == 2
    assert "outside the checkout" in capsys.readouterr().err
    # A bucket is a storage root (tests/test_storage_bucket.py), but not one that carries credentials.
    assert main(["submit", QUICKSTART, "storage.root=s3://XSWEEPKEY:not-so-secret@bucket/runs", "--address", address]) == 2
    err = capsys.readouterr().err
    assert "carries credentials" in err and "not-so-secret" not in err


def test_submit_without_the_job_client_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as in a minimal Ray install
    with socket.socket() as server:  # something answers, so the address check passes
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"http://127.0.0.1:{server.getsockname()[1]}"
        assert main(["submit", QUICKSTART, "storage.root=/tmp/xsweep-runs",
                     "--address", address]) == 2
    assert "pip install 'xsweep[submit]'" in capsys.readouterr().err


def test_cluster_storage_rule_without_a_cluster(monkeypatch, tmp_path):
    """The rule itself, with Ray's answers stubbed: one node takes any folder; several need
    storage.shared, and then every node must see the sweep's files."""
    from xsweep.config import load_config
    from xsweep.errors import XsweepError
    from xsweep.sweep import cluster
    from xsweep.sweep.prepare import PreparedInputs

    cfg = load_config(QUICKSTART, [f"storage.root={tmp_path}"])
    inputs = PreparedInputs(data_dir=tmp_path, eval_locales=["en-US"], backbone_path="xlm-roberta-base",
                            data_files=[tmp_path / "en-US.jsonl"])
    node = {"Alive": True, "NodeManagerAddress": "10.0.0.2", "NodeID": "ab" * 28}
    monkeypatch.setattr(cluster, "alive_nodes", lambda: [node])
    cluster.check_cluster_storage(cfg, tmp_path / "quickstart", inputs)  # one node: any folder

    monkeypatch.setattr(cluster, "alive_nodes", lambda: [node, node])
    with pytest.raises(XsweepError, match="not declared shared"):
        cluster.check_cluster_storage(cfg, tmp_path / "quickstart", inputs)
    shared = load_config(QUICKSTART, [f"storage.root={tmp_path}", "storage.shared=true"])
    monkeypatch.setattr(cluster, "_paths_unseen_by_node", lambda nodes, paths: {"10.0.0.2 (abababab)": paths[:1]})
    with pytest.raises(XsweepError, match=r"node 10\.0\.0\.2 \(abababab\) cannot see .*config\.yaml"):
        cluster.check_cluster_storage(shared, tmp_path / "quickstart", inputs)
    monkeypatch.setattr(cluster, "_paths_unseen_by_node", lambda nodes, paths: {})
    cluster.check_cluster_storage(shared, tmp_path / "quickstart", inputs)
