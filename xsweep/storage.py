"""Run directories in a bucket (`storage.root: s3://bucket/prefix`), through `pyarrow.fs`.

A local `storage.root` never comes here: its files are written in place, atomically (atomic.py),
as they always were. A URI root (any `pyarrow.fs.FileSystem.from_uri` accepts: `s3://`, `gs://`;
`?endpoint_override=host:port&scheme=http` for S3-compatible stores such as MinIO or Ceph) is used
through a `Mirror`: a local folder holding a copy of one folder of the bucket. What writes a run
(the trial loop, torch.save, safetensors, TensorBoard, the report) writes into the mirror as into a
local run directory; `push` sends each file that changed as one complete object (a single PUT, or
a multipart upload that only becomes visible once whole), so an object in the bucket is the old
one or the new one, never torn; `pull` fetches what other processes wrote.

Credentials come from the environment, as the cloud's own clients read them (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, a profile or an instance role; Google's application
default credentials). A URI that carries one is refused, so none reaches config.yaml, a log or an
error message.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

from xsweep.atomic import atomic_path
from xsweep.errors import XsweepError

CREDENTIAL_PARAMETERS = ("access_key", "secret_key", "session_token", "role_arn", "external_id", "credentials")
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
WRITE_CHECK = ".xsweep-write-check"
"""The object `check_bucket` writes and deletes again to find out whether the root is writable."""
CREDENTIALS_HELP = ("credentials are read from the environment, as the AWS and Google clients read them "
                    "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or an instance role; "
                    "GOOGLE_APPLICATION_CREDENTIALS)")


def is_uri(root: str | os.PathLike) -> bool:
    """Whether a storage root is a URI (a bucket) rather than a folder."""
    return "://" in str(root)


def join(uri: str, *parts: str) -> str:
    """`uri` with path `parts` appended, its query (endpoint_override, ...) kept at the end."""
    head, sep, query = uri.partition("?")
    return "/".join([head.rstrip("/"), *(p.strip("/") for p in parts if p)]) + sep + query


def public(uri: str) -> str:
    """`uri` as it may be shown: without a user or password part."""
    parts = urlsplit(uri)
    return parts._replace(netloc=parts.hostname or "").geturl() if (parts.username or parts.password) else uri


def display(uri: str) -> str:
    """`uri` as a file's location in a listing: no user part, no query (the run's URI has it)."""
    return public(uri).split("?")[0]


def scrub(text: str) -> str:
    """`text` with the values of the environment's credential variables masked, for messages."""
    for name in CREDENTIAL_VARIABLES:
        value = os.environ.get(name)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return text


def check_uri(uri: str, where: str = "storage.root") -> None:
    """A URI xsweep can use: no credentials in it, and one `pyarrow.fs` opens (nothing is contacted)."""
    parts = urlsplit(uri)
    if parts.username or parts.password or set(parse_qs(parts.query)) & set(CREDENTIAL_PARAMETERS):
        raise XsweepError(f"the URI {public(uri).split('?')[0]!r} carries credentials, which would be "
                          "written to the run's config.yaml and logs", where=where,
                          fix=f"remove them from the URI; {CREDENTIALS_HELP}")
    if not parts.netloc:
        raise XsweepError(f"{public(uri)!r} names no bucket", where=where, fix="write it as s3://bucket/prefix")
    try:
        _filesystem(*_base(uri))
    except (ValueError, TypeError, OSError) as exc:  # ArrowInvalid is a ValueError
        raise XsweepError(f"pyarrow.fs cannot open {public(uri)!r}: {scrub(str(exc))}", where=where,
                          fix="use s3://bucket/prefix (or gs://), with ?endpoint_override=host:port&scheme=http "
                              "for an S3-compatible store such as MinIO") from None


def _base(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}", parts.query


@functools.lru_cache(maxsize=8)
def _filesystem(base: str, query: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(f"{base}?{query}" if query else base)[0]


def locate(uri: str):
    """(pyarrow file system, path within it) of `uri`; the path starts with the bucket."""
    parts = urlsplit(uri)
    return _filesystem(*_base(uri)), f"{parts.netloc}{parts.path}".rstrip("/")


def _reason(exc: BaseException) -> str:
    return scrub(" ".join(str(exc).split())) or type(exc).__name__


def check_bucket(uri: str, where: str = "storage.root", *, write: bool = True) -> None:
    """The bucket exists, answers, and (with `write`) takes a write under `uri`: checked before
    anything runs, each failure as xsweep's error (what, where, fix)."""
    check_uri(uri, where)
    fs, path = locate(uri)
    bucket = path.split("/")[0]
    shown = public(uri)
    try:
        found = fs.get_file_info(bucket)
    except OSError as exc:
        raise access_error(f"the bucket of {shown!r}", "read", exc, where) from None
    if found.type.name == "NotFound":
        raise XsweepError(f"the bucket {bucket!r} of {shown!r} does not exist", where=where,
                          fix=f"create it (e.g. `aws s3 mb s3://{bucket}`), or correct storage.root")
    if not write:
        return
    probe = join(uri, WRITE_CHECK)
    try:
        write_bytes(probe, b"")
        fs.delete_file(locate(probe)[1])
    except OSError as exc:
        raise access_error(shown, "write under", exc, where) from None


def access_error(place: str, verb: str, exc: OSError, where: str) -> XsweepError:
    """A failed request as xsweep's error: an endpoint that does not answer, or credentials that
    may not do what the run needs (the store's own reason is kept; it names no secret)."""
    reason = _reason(exc)
    if "NETWORK_CONNECTION" in reason or "curlCode" in reason:
        return XsweepError(f"cannot reach {place}: {reason}", where=where,
                           fix="check the endpoint: is the store running and reachable from here (host, port, "
                               "and scheme=http or https in ?endpoint_override=host:port&scheme=http)?")
    return XsweepError(f"cannot {verb} {place}: {reason}", where=where,
                       fix="give these credentials list, read, write and delete rights on the bucket "
                           f"(s3:ListBucket, s3:GetObject, s3:PutObject, s3:DeleteObject); {CREDENTIALS_HELP}")


def write_bytes(uri: str, data: bytes) -> None:
    """One object, whole: it appears only once the upload completes."""
    fs, path = locate(uri)
    with fs.open_output_stream(path) as out:
        out.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = locate(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def exists(uri: str) -> bool:
    fs, path = locate(uri)
    return fs.get_file_info(path).type.name == "File"


def listing(uri: str) -> list[str]:
    """Paths, relative to `uri`, of every object under it (none when it does not exist)."""
    from pyarrow.fs import FileSelector

    fs, root = locate(uri)
    infos = fs.get_file_info(FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(info.path[len(root) + 1:] for info in infos if info.type.name == "File")


def tensorboard_source(uri: str) -> tuple[str, dict[str, str]]:
    """(logdir, environment) for TensorBoard to read event files under `uri`: TensorBoard reads
    `s3://` itself, through boto3 (credentials from the environment), and learns an S3-compatible
    endpoint from S3_ENDPOINT, not from the URI's query."""
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise XsweepError(f"TensorBoard reads event files from s3:// and local folders, not {parts.scheme}://",
                          where=public(uri),
                          fix=f"copy the run's tensorboard/ folder here (e.g. `gcloud storage cp -r "
                              f"{public(uri).split('?')[0]} .`) and run `xsweep tensorboard` on the copy")
    try:
        import boto3  # noqa: F401 - TensorBoard's S3 reader needs it
    except ImportError:
        raise XsweepError("TensorBoard reads s3:// through boto3, which is not installed", where=public(uri),
                          fix="pip install boto3") from None
    query = parse_qs(parts.query)
    env = {}
    if "endpoint_override" in query:
        scheme = query.get("scheme", ["https"])[0]
        env["S3_ENDPOINT"] = f"{scheme}://{query['endpoint_override'][0]}"
    return f"s3://{parts.netloc}{parts.path}".rstrip("/"), env


@functools.lru_cache(maxsize=64)
def local_folder(location: str, skip: tuple[str, ...] = ()) -> Path:
    """A finished folder (an alignment run's prompt, its align.json), named by a path or a URI, as
    a local folder: a path is itself; a bucket folder is pulled into a temporary folder, once per
    process (it no longer changes), and removed when the process exits."""
    if not is_uri(location):
        return Path(location)
    local = Path(tempfile.mkdtemp(prefix="xsweep-copy-"))
    atexit.register(shutil.rmtree, local, ignore_errors=True)
    Mirror(location, local).pull(skip=skip)
    return local


def _skipped(rel: str, skip: Iterable[str]) -> bool:
    parts = rel.split("/")
    return any(part in skip for part in parts) or (parts[-1].startswith(".") and parts[-1].endswith(".tmp"))


class Mirror:
    """A local folder kept as a copy of the folder `uri` of a bucket.

    `pull` and `push` copy what changed since this mirror last copied it (by size and modification
    time), so a trial that reports at each evaluation uploads its record and checkpoint, not every
    file it ever wrote. `skip`: names of folders or files to leave out, anywhere in a path.
    """

    def __init__(self, uri: str, local: str | os.PathLike):
        self.uri = uri
        self.local = Path(local)
        self._copied: dict[str, tuple[int, int]] = {}

    def pull(self, sub: str = "", skip: Iterable[str] = ()) -> None:
        from pyarrow.fs import LocalFileSystem, copy_files

        fs, root = locate(self.uri)
        for rel in listing(join(self.uri, sub)):
            rel = f"{sub}/{rel}".strip("/")
            if _skipped(rel, skip):
                continue
            with atomic_path(self.local / rel) as tmp:
                copy_files(f"{root}/{rel}", str(tmp), source_filesystem=fs, destination_filesystem=LocalFileSystem())
            self._remember(rel)

    def push(self, sub: str = "", skip: Iterable[str] = (), delete: bool = False) -> None:
        """Upload what changed under `sub`; with `delete`, also delete objects under `sub` whose file
        is gone here (a trial's checkpoint once the trial ended)."""
        from pyarrow.fs import LocalFileSystem, copy_files

        fs, root = locate(self.uri)
        folder = self.local / sub  # a folder, or one file
        here = set()
        for path in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
            rel = path.relative_to(self.local).as_posix()
            if not path.is_file() or _skipped(rel, skip):
                continue
            here.add(rel)
            stat = path.stat()
            if self._copied.get(rel) != (stat.st_size, stat.st_mtime_ns):
                copy_files(str(path), f"{root}/{rel}", source_filesystem=LocalFileSystem(), destination_filesystem=fs)
                self._copied[rel] = (stat.st_size, stat.st_mtime_ns)
        if delete:
            for rel in listing(join(self.uri, sub)):
                rel = f"{sub}/{rel}".strip("/")
                if rel not in here and not _skipped(rel, skip):
                    fs.delete_file(f"{root}/{rel}")
                    self._copied.pop(rel, None)

    def _remember(self, rel: str) -> None:
        stat = (self.local / rel).stat()
        self._copied[rel] = (stat.st_size, stat.st_mtime_ns)
