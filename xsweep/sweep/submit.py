"""Send a sweep to a Ray cluster as a Ray job; follow, query and stop it.

`xsweep submit` checks the experiment here first (every key, every grid point, where its results
will go), so a bad config never reaches the cluster. The job then runs `python -m xsweep run ...`
on the head node in a copy of this checkout (Ray's runtime_env `working_dir`), so the cluster runs
the code you have here; that run checks the rest (data, backbone, shared storage) before any trial.

The job client comes with `ray[default]` (`pip install 'xsweep[submit]'`). It talks HTTP to the
dashboard's job server (`http://HOST:8265`; `ray dashboard cluster.yaml` forwards it to
127.0.0.1). Clusters started with `ray start` use token authentication: the client sends the token
from ~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH, RAY_AUTH_TOKEN) when RAY_AUTH_MODE=token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlparse

from xsweep.errors import XsweepError
from xsweep.paths import REPO_ROOT

Log = Callable[[str], None]

INSTALL_HINT = "pip install 'xsweep[submit]' (Ray's job client and dashboard, ray[default])"
ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"  # the variable `ray job submit` reads too
ADDRESS_EXAMPLE = "--address http://127.0.0.1:8265"

# What a job does not need from the checkout: environments, results, caches, history.
WORKING_DIR_EXCLUDES = [".venv", "venv", "runs", "demo-data", ".git", ".pytest_cache", "__pycache__",
                        "*.pyc", "*.egg-info", "build", "dist", ".cache", ".mypy_cache", ".ruff_cache"]

FINAL_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def submit_sweep(config: str, overrides: list[str], address: str | None, *, wait: bool = True,
                 resume: bool = False, log: Log = print) -> int:
    """Submit `xsweep run config overrides` as a Ray job; with `wait`, stream its logs until it ends.
    Returns the exit status for the CLI: 0 when the job succeeded (or was left running), else the
    run's own status (1 failed trials, 2 a bad input found on the cluster) or 1."""
    entrypoint, name = _checked_entrypoint(config, overrides, resume)
    address = job_server_address(address)
    job_id = f"xsweep-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}-{secrets.token_hex(3)}"  # used in URLs
    with _job_server(address) as client:
        client.submit_job(entrypoint=entrypoint, submission_id=job_id,
                          runtime_env={"working_dir": str(REPO_ROOT), "excludes": WORKING_DIR_EXCLUDES},
                          metadata={"xsweep_config": config})
        log(f"submitted job {job_id} to {address}: {entrypoint}")
        log(f"  follow: xsweep status {job_id} --follow --address {address}")
        log(f"  stop:   xsweep stop {job_id} --address {address}")
        if not wait:
            return 0
        return _follow(client, job_id, address, log)


def job_status(job_id: str, address: str | None, *, follow: bool = False, log: Log = print) -> int:
    """Print a job's state (and with `follow`, its logs until it ends); 0 unless it failed."""
    address = job_server_address(address)
    with _job_server(address) as client:
        if follow:
            return _follow(client, job_id, address, log)
        info = _job_info(client, job_id, address)
        status = str(info.status.value)
        log(f"{job_id}: {status}" + (f" ({info.message})" if info.message else ""))
        log(f"  entrypoint: {info.entrypoint}")
        return 1 if status in ("FAILED", "STOPPED") else 0


def stop_job(job_id: str, address: str | None, *, log: Log = print) -> int:
    """Ask the cluster to stop a job (its trials end; finished trials are kept: `--resume` continues)."""
    address = job_server_address(address)
    with _job_server(address) as client:
        _job_info(client, job_id, address)  # an unknown id is an error, not a silent no-op
        if client.stop_job(job_id):
            log(f"stopping job {job_id}; `xsweep status {job_id} --address {address}` shows when it has ended")
        else:
            log(f"job {job_id} had already ended: {client.get_job_status(job_id).value}")
        return 0


def job_server_address(address: str | None) -> str:
    """The job server's URL (`http://host:port`), checked to accept connections within seconds."""
    from xsweep.sweep.preflight import check_address

    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        raise XsweepError("no cluster address given", where="--address",
                          fix=f"pass the job server of the cluster's dashboard, e.g. {ADDRESS_EXAMPLE} "
                              f"(`ray dashboard cluster.yaml` forwards it there), or set {ADDRESS_ENV}")
    address = address.rstrip("/")
    url = address if "://" in address else f"http://{address}"
    if urlparse(url).scheme not in ("http", "https"):
        raise XsweepError(f"{address!r} is not a job server address", where="--address",
                          fix=f"xsweep submit talks to the dashboard's job server, e.g. {ADDRESS_EXAMPLE}; "
                              "a ray:// or GCS address (port 6379) is for `xsweep run --address`")
    try:
        check_address(url)
    except XsweepError as exc:
        raise XsweepError(exc.what, where="--address",
                          fix=f"pass the job server of the cluster's dashboard, e.g. {ADDRESS_EXAMPLE}: "
                              "start the cluster with `ray up cluster.yaml` and forward the dashboard "
                              "with `ray dashboard cluster.yaml`") from None
    return url


def _checked_entrypoint(config: str, overrides: list[str], resume: bool) -> tuple[str, str]:
    """The job's command line and the run's name, after the checks that need no cluster."""
    from xsweep.config import load_config
    from xsweep.storage import is_uri
    from xsweep.sweep.cluster import check_storage_root
    from xsweep.sweep.preflight import trial_configs

    cfg = load_config(config, overrides)
    trial_configs(cfg)  # every grid point resolves to a valid config
    check_storage_root(cfg)
    if not is_uri(cfg.storage.root) and not Path(cfg.storage.root).expanduser().is_absolute():
        raise XsweepError(f"storage.root {cfg.storage.root!r} is relative, but the job runs in a temporary "
                          "copy of this checkout on the cluster: its results would be written there and "
                          "lost", where="storage.root",
                          fix="set an absolute folder on the cluster's shared storage, e.g. "
                              "storage.root=/mnt/shared/runs storage.shared=true")
    if not (REPO_ROOT / "pyproject.toml").is_file():
        raise XsweepError(f"xsweep is not installed from a source checkout ({REPO_ROOT} holds no "
                          "pyproject.toml), and the job ships the checkout to the cluster",
                          fix="clone xsweep and `pip install -e '.[submit]'` in it, then submit from there")
    path = Path(config).resolve()
    try:
        shipped = path.relative_to(REPO_ROOT)
    except ValueError:
        raise XsweepError(f"the experiment file {config!r} is outside the checkout {str(REPO_ROOT)!r}, which "
                          "is what the job ships to the cluster", where=config,
                          fix=f"put it under {REPO_ROOT / 'experiments'} and submit it from there") from None
    # `python -m` puts the job's working directory first on sys.path: the shipped xsweep runs.
    command = ["python", "-m", "xsweep", "run", shipped.as_posix(), *overrides] + (["--resume"] if resume else [])
    return shlex.join(command), cfg.run_name


@contextmanager
def _job_server(address: str) -> Iterator:
    """A JobSubmissionClient for `address`; Ray's errors become XsweepErrors saying what to do.

    RAY_AUTH_MODE, which `_job_client_class` may set, is put back as it was afterwards: left set,
    a local Ray started later in the same process (a sweep, a test session) would have a cluster
    requiring the token and a driver that Ray had already configured without it."""
    previous = os.environ.get("RAY_AUTH_MODE")
    try:
        client_class = _job_client_class()
        yield client_class(address)
    except XsweepError:
        raise
    except Exception as exc:  # the SDK raises plain RuntimeError/ConnectionError; sort them by kind
        raise _job_server_error(exc, address) from None
    finally:
        if previous is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = previous


def _job_client_class():
    _enable_token_auth_if_token_exists()  # read when Ray's C++ config loads: before the import
    try:
        import aiohttp  # noqa: F401  (log streaming; absent from a minimal Ray install)
        import requests  # noqa: F401
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise XsweepError(f"xsweep submit needs Ray's job client, which is not installed ({exc})",
                          fix=INSTALL_HINT) from None
    # Ray logs each file it leaves out of the upload and each socket it closes; errors still show.
    logging.getLogger("ray").setLevel(logging.ERROR)
    return JobSubmissionClient


def _enable_token_auth_if_token_exists() -> None:
    """Send the token when one is here and the user has not chosen an auth mode themselves."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token").expanduser()
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _job_server_error(exc: Exception, address: str) -> XsweepError:
    text = str(exc)
    token_fix = ("copy the cluster's token (`ray get-auth-token` on the head node) into ~/.ray/auth_token "
                 "(or point RAY_AUTH_TOKEN_PATH at it), and run with RAY_AUTH_MODE=token")
    if "Missing authentication token" in text or "status code 401" in text or "Authentication required" in text:
        return XsweepError(f"the cluster at {address} requires an authentication token and none was sent",
                           where="--address", fix=token_fix)
    if "Invalid authentication token" in text or "Authentication failed" in text:
        return XsweepError(f"the cluster at {address} refused the authentication token sent "
                           f"(RAY_AUTH_TOKEN_PATH={os.environ.get('RAY_AUTH_TOKEN_PATH', '~/.ray/auth_token')})",
                           where="--address", fix=token_fix)
    if isinstance(exc, ConnectionError) or "Failed to connect" in text:
        return XsweepError(f"no Ray job server answers at {address}", where="--address",
                           fix=f"pass the dashboard's address (port 8265, not the GCS port 6379), e.g. "
                               f"{ADDRESS_EXAMPLE}; the cluster needs ray[default] for its job server")
    if "does not exist" in text:
        return XsweepError(f"{text.split(': ', 1)[-1].rstrip('.')} on the cluster at {address}",
                           where="JOB_ID", fix=f"list the cluster's jobs with `ray job list --address {address}`")
    return XsweepError(f"the job server at {address} answered: {text.strip().splitlines()[-1]}",
                       where="--address", fix="check the cluster's dashboard (`ray dashboard cluster.yaml`)")


def _job_info(client, job_id: str, address: str):
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:
        raise _job_server_error(exc, address) from None


def _follow(client, job_id: str, address: str, log: Log) -> int:
    """Stream a job's logs until it ends; its exit status as the CLI's (see `submit_sweep`)."""
    _job_info(client, job_id, address)

    async def stream() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    try:
        asyncio.run(stream())
    except KeyboardInterrupt:
        log(f"stopped following; job {job_id} keeps running: `xsweep stop {job_id} --address {address}` "
            "stops it")
        return 130
    info = _job_info(client, job_id, address)
    status = str(info.status.value)
    if status == "SUCCEEDED":
        log(f"job {job_id} succeeded")
        return 0
    if status not in FINAL_STATES:  # the log stream closed early (e.g. the head restarted)
        log(f"job {job_id} is {status}; follow it again with `xsweep status {job_id} --follow --address {address}`")
        return 1
    print(f"xsweep: error: job {job_id} {status}: {info.message or 'no message'}", file=sys.stderr)
    # `xsweep run` exits 1 for failed trials and 2 for a bad input: keep that distinction.
    return info.driver_exit_code if info.driver_exit_code in (1, 2) else 1
