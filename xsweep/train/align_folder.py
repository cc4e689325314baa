"""The names in an alignment run's folder, and a finished one read from a folder or a bucket.

The folder's layout is train/align.py's (its docstring lists it). This module needs neither torch
nor the training code, so the driver's bookkeeping and the reports read a stage through it.
"""

from __future__ import annotations

from pathlib import Path

from xsweep.storage import local_folder

RESULT_FILE = "align.json"
"""Written last: its presence means the run finished."""
CHECKPOINTS_DIR = "checkpoints"
"""The epoch states a resumed run starts from; only the run's own workers read them."""


def finished_folder(location: str | Path) -> Path:
    """A finished alignment run's folder, named by its path or, in a bucket run, its URI, as a local
    folder without the epoch checkpoints (a bucket's is pulled once per process)."""
    return local_folder(str(location), skip=(CHECKPOINTS_DIR,))
