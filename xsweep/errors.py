"""One error type for every bad input a user can fix.

Each error says what is wrong, where (file, line, key) and how to fix it; the CLI prints it
without a traceback and exits with status 2.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


class XsweepError(Exception):
    """A problem with the user's input or environment, reported as what / where / how to fix."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None):
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(f"  fix: {self.fix}")
        return "\n".join(parts)

    def __reduce__(self):
        # Keep the error intact when it crosses a Ray process boundary.
        return (_rebuild, (self.what, self.where, self.fix))


def _rebuild(what: str, where: str | None, fix: str | None) -> XsweepError:
    return XsweepError(what, where=where, fix=fix)


# Errors of the machine rather than of xsweep: reported like bad inputs, without a traceback.
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "free disk space (or choose storage.root on a larger disk)",
    errno.EFBIG: "the file-size limit was reached: raise it (`ulimit -f`) or free space",
    errno.EDQUOT: "the disk quota is used up: free space or ask for more",
    errno.EROFS: "the file system is read-only: choose a writable storage.root",
    errno.EACCES: "check the folder's permissions, or choose another storage.root",
    errno.EPERM: "check the folder's permissions, or choose another storage.root",
    errno.EIO: "the disk reported an I/O error: check it, then resume with --resume",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
}

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
"""A write that failed for want of space: retrying it on the same disk fails the same way."""


def real_name(filename: str | None) -> str | None:
    """The file an atomic write was for, not its temporary `.<name>.<random>.tmp` beside it."""
    if not filename:
        return filename
    path = Path(filename)
    if path.name.startswith(".") and path.name.endswith(".tmp") and path.name.count(".") >= 3:
        path = path.with_name(path.name[1:].rsplit(".", 2)[0])
    return str(path)


def environment_error(exc: OSError) -> XsweepError | None:
    """An XsweepError naming the file an OSError of the machine (disk full, read-only, ...) was
    about; None for any other OSError, which is a bug to show with its traceback."""
    if exc.errno in DISK_FULL_ERRNOS and exc.filename:
        return disk_full_error(real_name(exc.filename), exc.strerror)
    if exc.errno not in ENVIRONMENT_ERRNOS:
        return None
    return XsweepError(f"cannot write or read a file: {exc.strerror or exc}", where=real_name(exc.filename),
                       fix=ENVIRONMENT_ERRNOS[exc.errno] + "; nothing half-written was kept "
                       "(files are replaced atomically), so `xsweep run ... --resume` continues a run")


def disk_full_error(path: str, why: str | None = None) -> XsweepError:
    """Writing `path` failed for want of space: say how much the disk holding it has left."""
    free = free_space(path)
    room = f" (the disk holding it has {format_bytes(free[0])} free of {format_bytes(free[1])})" if free else ""
    return XsweepError(f"cannot write a file: {why or 'No space left on device'}{room}", where=path,
                       fix="free space on that disk (or set storage.root to a larger one), then run "
                           "`xsweep run <experiment> --resume`: finished trials are kept, and nothing "
                           "half-written was (files are replaced atomically)")


def free_space(path: str) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding `path` (its nearest existing folder)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return usage.free, usage.total


def format_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"
