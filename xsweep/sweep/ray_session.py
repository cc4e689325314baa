"""Connecting to Ray: a cluster at an address, or a local Ray started in this process.

Every part of xsweep that needs Ray (the sweep, the alignment stages, the evaluation stage, the
tests' shared session) starts it here, so workers always get the same environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xsweep.errors import XsweepError

# Ray Train polls its workers every few seconds by default; for a short Ray Train run (an alignment
# stage) that polling is most of its start-up time (measured: ~25 s -> ~9 s per run on 2 cores).
RAY_TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S": "0.5",
}


def start_ray(address: str | None = None) -> None:
    """Connect to `address` (or RAY_ADDRESS), or start a local Ray with the CPUs of this machine.

    Without an address this always starts its own Ray ("local"): Ray's own default would join
    whatever cluster `ray start` last started on this machine (/tmp/ray/ray_current_cluster),
    someone else's, with its own authentication."""
    import ray

    if ray.is_initialized():
        return
    env = {**RAY_TRAIN_ENV, "PYTHONPATH": _pythonpath()}
    os.environ.update(RAY_TRAIN_ENV)
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise XsweepError(f"cannot reach the Ray cluster at {address!r}: {first_line(exc)}",
                              where="--address / RAY_ADDRESS",
                              fix="start the cluster (`ray up cluster.yaml`) and pass its address, e.g. "
                                  "--address=127.0.0.1:6379, or leave it unset to run locally") from None
        return
    try:
        ray.init(address="local", include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env},
                 configure_logging=True, logging_level="ERROR")
    except Exception as exc:  # Ray raises a bare Exception when its node does not come up in time
        raise XsweepError(f"cannot start a local Ray: {first_line(exc)}", where="local Ray (no --address)",
                          fix="see Ray's logs under /tmp/ray/session_latest/logs; check free disk space "
                              "and shared memory (/dev/shm)") from None

def _pythonpath() -> str:
    """Ray's worker processes must import xsweep even when it runs from a source checkout."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(paths))


def first_line(error: Any) -> str:
    """The line of an error (or of a Ray traceback) that says what went wrong: its last one."""
    text = str(error).strip().splitlines()
    return text[-1] if text else repr(error)
