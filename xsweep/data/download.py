"""Fetch the official archives, check their sha256, unpack atomically into the data root.

`download("massive", root)` leaves `root/massive/1.1/data/<locale>.jsonl`; "sgd" leaves
`root/sgd/{train,dev,test}/`; "tatoeba" leaves `root/tatoeba/v1/`: the layouts the readers take.
URL and hash come from SOURCES and can be overridden (a mirror, a pinned commit). A source without
a pinned hash is refused unless the caller passes one or explicitly accepts an unpinned download,
whose hash is then recorded in `<dest>/.xsweep-source.json` so the run can be pinned afterwards.
The archive is downloaded and unpacked inside a temporary folder of the data root and renamed into
place only when complete: a failure leaves the previous data, or nothing.

XSGD is not downloadable here: its authors host it in the Google Cloud Storage bucket
`multilingual-sgd-data-research` (see XSGD_INSTRUCTIONS).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, BinaryIO

from xsweep.errors import XsweepError

MARKER = ".xsweep-source.json"

XSGD_INSTRUCTIONS = """\
XSGD (SGD translated into 105 languages) is published by its authors in the Google Cloud Storage
bucket multilingual-sgd-data-research
(https://console.cloud.google.com/storage/browser/multilingual-sgd-data-research).
Copy it with the Google Cloud SDK, e.g.
    gsutil -m cp -r gs://multilingual-sgd-data-research/<folder> <data-root>/xsgd
so that <data-root>/xsgd/{train,dev,test}/ each hold schema.json and dialogues_NNN.json
(.json.gz also works). Every turn must carry utterance_<code> fields; xsweep.data.sgd
read_dialogues(folder, lang=code) validates them and names any turn that lacks one.
"""


@dataclass(frozen=True)
class Source:
    """Where an official archive lives and which of its files land where."""

    url: str
    sha256: str | None
    """Pinned hash of the archive; None: not pinned, see `download`."""
    dest: str
    """Folder under the data root the selected files go to."""
    include: tuple[str, ...]
    """Path prefixes (inside the archive, after `strip_top`) of the files kept."""
    strip_top: bool = False
    """Drop the archive's single top folder (GitHub archives: `<repo>-<ref>/`)."""
    remove_prefix: str = ""
    """Prefix removed from kept paths before they go under `dest`."""


SOURCES: dict[str, Source] = {
    # The official MASSIVE 1.1 tarball, as linked from github.com/alexa/massive. The hash is the
    # one pinned by independent public projects that fetch this exact file.
    "massive": Source(
        url="https://amazon-massive-nlu-dataset.s3.amazonaws.com/amazon-massive-dataset-1.1.tar.gz",
        sha256="4cba5faa11c71437928e17cb1b9b3d8b8e727e7ea363a3a9a8045e19c0491577",
        dest="massive", include=("1.1/data/",)),
    # SGD's official repository. GitHub branch archives change with the branch, so no hash is
    # pinned: pass one for a commit archive (.../archive/<commit>.zip) or accept it unpinned.
    "sgd": Source(
        url="https://github.com/google-research-datasets/dstc8-schema-guided-dialogue/archive/"
            "refs/heads/master.zip",
        sha256=None, dest="sgd", include=("train/", "dev/", "test/"), strip_top=True),
    # The Tatoeba test sets as XTREME takes them: data/tatoeba/v1 of the LASER repository.
    "tatoeba": Source(
        url="https://github.com/facebookresearch/LASER/archive/refs/heads/main.zip",
        sha256=None, dest="tatoeba", include=("data/tatoeba/v1/",), strip_top=True,
        remove_prefix="data/tatoeba/"),
}


def _fetch(url: str, path: Path, timeout_s: float) -> str:
    """Stream `url` into `path`; return its sha256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(path, "wb") as out:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise XsweepError(f"download failed: {e}", where=url,
                          fix="check the network, or pass another URL (a mirror) for the same "
                              "file") from None
    return digest.hexdigest()


def _members(archive: Path) -> Iterator[tuple[str, Callable[[], BinaryIO]]]:
    """(path, opener) of every regular file of a .zip or tar archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, lambda info=info: zf.open(info)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf:
                if member.isfile():
                    yield member.name, lambda member=member: tf.extractfile(member)
    else:
        raise XsweepError("the download is neither a zip nor a tar archive", where=str(archive),
                          fix="check the URL points at the archive itself")


def _relative(name: str, source: Source) -> PurePosixPath | None:
    """Where a member goes under `dest`, or None when it is not kept."""
    parts = PurePosixPath(name).parts
    if name.startswith("/") or ".." in parts:
        raise XsweepError(f"unsafe path in archive: {name!r}",
                          fix="the archive is not the official one; do not use it")
    if source.strip_top:
        parts = parts[1:]
    path = "/".join(parts)
    if not any(path.startswith(p) for p in source.include):
        return None
    return PurePosixPath(path[len(source.remove_prefix):] if path.startswith(
        source.remove_prefix) else path)


def _unpack(archive: Path, tree: Path, source: Source) -> int:
    count = 0
    for name, opener in _members(archive):
        rel = _relative(name, source)
        if rel is None:
            continue
        target = tree.joinpath(*rel.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        count += 1
    if count == 0:
        raise XsweepError(f"the archive holds no files under {', '.join(source.include)}",
                          where=str(archive), fix="check the URL points at the official archive")
    return count


def _replace_dir(new: Path, dest: Path) -> None:
    """Move `new` to `dest`, replacing it; `dest` is never left half-written."""
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / "data")
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def download(name: str, data_root: Path, *, url: str | None = None, sha256: str | None = None,
             allow_unpinned: bool = False, force: bool = False, timeout_s: float = 60.0,
             log: Callable[[str], None] = print) -> Path:
    """Download data set `name` ("massive", "sgd", "tatoeba") into `data_root`; return its folder.

    `url`/`sha256` override the table. Skips the download when the folder already holds the
    same source (same URL and hash) unless `force`. With no hash known, refuses unless
    `allow_unpinned`, and then records the hash it saw.
    """
    if name not in SOURCES:
        hint = " (XSGD is a manual download:\n" + XSGD_INSTRUCTIONS + ")" if name == "xsgd" else ""
        raise XsweepError(f"unknown data set {name!r}{hint}",
                          fix=f"use one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    url = url or source.url
    expected = (sha256 or source.sha256 or "").lower() or None
    if expected is None and not allow_unpinned:
        raise XsweepError(f"no sha256 is pinned for {name}", where=url,
                          fix="pass the archive's sha256 (from a copy you trust), or allow an "
                              "unpinned download, whose hash is then recorded")
    data_root = Path(data_root)
    data_root.mkdir(parents=True, exist_ok=True)
    dest = data_root / source.dest
    if not force and (dest / MARKER).is_file():
        info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
        if info.get("url") == url and (expected is None or info.get("sha256") == expected):
            log(f"{name}: already in {dest}")
            return dest
    work = Path(tempfile.mkdtemp(prefix=f".{source.dest}.", suffix=".download", dir=data_root))
    try:
        log(f"{name}: downloading {url}")
        archive = work / "archive"
        got = _fetch(url, archive, timeout_s)
        if expected is not None and got != expected:
            raise XsweepError(f"sha256 mismatch: expected {expected}, got {got}", where=url,
                              fix="the file is corrupt or not the official one; retry, or pass "
                                  "the right URL")
        if expected is None:
            log(f"{name}: unpinned download, sha256 {got} (pass it next time to pin it)")
        tree = work / "tree"
        tree.mkdir()
        count = _unpack(archive, tree, source)
        (tree / MARKER).write_text(json.dumps(
            {"name": name, "url": url, "sha256": got, "pinned": expected is not None,
             "files": count}, indent=2) + "\n", encoding="utf-8")
        _replace_dir(tree, dest)
        log(f"{name}: {count} files in {dest}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest
