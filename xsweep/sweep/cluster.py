"""Where a sweep's files must live when its trials run on more than one machine.

Trials write their records, checkpoints and TensorBoard logs as plain files under `storage.root`,
and read the data and the backbone from paths the driver resolved. On one machine any folder
works. On a cluster of several nodes a trial may land on any node, so each of those paths must be
the same folder on every node: a shared file system mounted at the same path (NFS, EFS, Lustre, or
a bucket through a FUSE mount such as mountpoint-s3 or gcsfuse). A path does not say whether it is
such a mount, so a multi-node run needs `storage.shared: true`, and xsweep then checks the claim
from every node before the first trial starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from xsweep.config import ExperimentConfig
from xsweep.errors import XsweepError
from xsweep.storage import check_uri, is_uri

if TYPE_CHECKING:
    from xsweep.sweep.prepare import PreparedInputs

PROBE_TIMEOUT_S = 120.0
"""How long the driver waits for every node to report which of the sweep's paths it can see
(each node starts a Ray worker for it: seconds on a loaded machine)."""

SHARED_STORAGE_HELP = (
    "trials write their records and checkpoints under storage.root from whichever node runs them, "
    "and the report reads them all from the driver, so storage.root must be one folder that every "
    "node sees at the same path: a shared file system (NFS, EFS, Lustre, or an s3:// / gs:// bucket "
    "mounted with mountpoint-s3 or gcsfuse); the data (data.path), a local backbone folder and "
    "xsweep's cache (XSWEEP_CACHE: demo data, built-in models) must be visible there too"
)


def check_storage_root(cfg: ExperimentConfig) -> None:
    """storage.root is a folder path, or a bucket URI that pyarrow.fs opens and that carries no
    credentials (xsweep/storage.py); nothing is contacted here."""
    if is_uri(cfg.storage.root):
        check_uri(cfg.storage.root)


def alive_nodes() -> list[dict]:
    """The alive nodes of the Ray cluster this process is connected to (`ray.nodes()` entries)."""
    import ray

    return [node for node in ray.nodes() if node.get("Alive")]


def check_cluster_storage(cfg: ExperimentConfig, run_dir: Path, inputs: PreparedInputs) -> None:
    """On a cluster of several nodes, refuse storage that is not declared shared; when it is,
    check that every node sees the run directory, the data files and a local backbone folder.

    Call it connected to Ray, after the run directory holds its config.yaml, before any trial.
    """
    check_storage_root(cfg)
    nodes = alive_nodes()
    if len(nodes) <= 1:
        return
    bucket = is_uri(cfg.storage.root)  # the same for every node; the inputs must still be
    root = cfg.storage.root if bucket else str(Path(cfg.storage.root).expanduser().resolve())
    if not bucket and not cfg.storage.shared:
        raise XsweepError(f"this Ray cluster has {len(nodes)} nodes, but storage.root {root!r} is not "
                          f"declared shared: {SHARED_STORAGE_HELP}", where="storage.root",
                          fix="set storage.root to a shared mount and add storage.shared=true "
                              "(storage.shared=true also fits several Ray nodes on one machine, which "
                              "share its disk)")
    paths = ([] if bucket else [run_dir / "config.yaml"]) + list(inputs.data_files)
    if Path(inputs.backbone_path).is_dir():
        paths.append(Path(inputs.backbone_path) / "config.json")
    unseen = _paths_unseen_by_node(nodes, [str(p) for p in paths])
    if unseen:
        lines = "; ".join(f"node {ip} cannot see {', '.join(missing)}" for ip, missing in unseen.items())
        raise XsweepError(f"storage.shared is true, but not every node sees the sweep's files: {lines}",
                          where="storage.root",
                          fix=f"mount the shared folder at the same path on every node; {SHARED_STORAGE_HELP}")


def _paths_unseen_by_node(nodes: list[dict], paths: list[str]) -> dict[str, list[str]]:
    """Node address -> the `paths` that node cannot see; asked of every node by a zero-CPU task
    pinned to it, so a busy cluster still answers."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def missing_here(paths: list[str]) -> list[str]:
        return [p for p in paths if not os.path.exists(p)]

    pending = {
        node["NodeManagerAddress"] + f" ({node['NodeID'][:8]})":
            missing_here.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False))
            .remote(paths)
        for node in nodes
    }
    try:
        answers = ray.get(list(pending.values()), timeout=PROBE_TIMEOUT_S)
    except ray.exceptions.GetTimeoutError:
        raise XsweepError(f"not every node of the cluster answered within {PROBE_TIMEOUT_S:.0f} s whether it "
                          "sees the sweep's files", where="storage.shared",
                          fix="check the nodes with `ray status`, then run again") from None
    return {name: missing for name, missing in zip(pending, answers, strict=True) if missing}
