"""Reading data files byte-safely: one place that turns encoding and compression faults into
xsweep's error.

Downloads arrive truncated (a `.gz` cut short), corrupt (a flipped byte in the compressed
stream) or in the wrong encoding (one Latin-1 byte in a UTF-8 file). Each reader goes through
these functions, so every such fault names the file, the line where it can be known, and the fix,
instead of a `UnicodeDecodeError` or `zlib.error` traceback.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import IO, Iterator

from xsweep.errors import XsweepError

_REDOWNLOAD = "re-download the file (it is damaged), or re-save it as UTF-8"
_COMPRESSED_FAULTS = (OSError, EOFError, zlib.error)  # gzip.BadGzipFile is an OSError


def _bad_bytes(exc: UnicodeDecodeError, where: str) -> XsweepError:
    byte = exc.object[exc.start:exc.start + 1].hex()
    return XsweepError(f"not valid UTF-8 (byte 0x{byte} at column {exc.start + 1})", where=where,
                       fix=_REDOWNLOAD)


def _broken(path: str, exc: BaseException) -> XsweepError:
    return XsweepError(f"cannot read the file: the compressed data is truncated or corrupt ({exc})",
                       where=path, fix="re-download the file; the .gz is incomplete or damaged")


def iter_binary_lines(raw: IO[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of an open binary stream, decoded as UTF-8 line by line."""
    lineno = 0
    try:
        for lineno, data in enumerate(raw, start=1):
            try:
                yield lineno, data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _bad_bytes(exc, f"{name}:{lineno}") from None
    except _COMPRESSED_FAULTS as exc:
        raise _broken(f"{name}:{lineno + 1}" if lineno else name, exc) from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 text file, `.gz` read transparently."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        raw = opener(path, "rb")
    except OSError as exc:
        raise XsweepError(f"cannot open the file: {exc.strerror or exc}", where=str(path),
                          fix="check the path and its permissions") from None
    with raw:
        yield from iter_binary_lines(raw, str(path))


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (`.gz` too), without their line ends, like `splitlines()`
    for `\\n` and `\\r\\n` ends."""
    return [text.rstrip("\r\n") for _, text in iter_lines(path)]


def read_text(path: Path) -> str:
    """A whole UTF-8 text file (`.gz` read transparently); faults name the file and line."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except _COMPRESSED_FAULTS as exc:
        raise _broken(str(path), exc) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        byte = data[exc.start:exc.start + 1].hex()
        raise XsweepError(f"not valid UTF-8 (byte 0x{byte} at column {column + 1})",
                          where=f"{path}:{line}", fix=_REDOWNLOAD) from None
