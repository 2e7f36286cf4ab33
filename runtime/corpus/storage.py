"""INPUT and OUTPUT of ``embed-corpus`` on any filesystem ``pyarrow.fs`` resolves: a local path, s3://, gs://, ...

S3 filesystems are built here from the standard AWS environment rather than by ``pyarrow.fs.FileSystem.from_uri``
or a bare ``S3FileSystem()``: the constructor ignores ``AWS_ENDPOINT_URL`` (pyarrow 26 still sends such a client
to amazonaws.com), and one explicit configuration (endpoint, region, credentials) is what pickles to the Ray
workers. The filesystem is resolved once, in the driver, and travels to the workers, so every process talks to
the same endpoint, with the driver's credentials when they came from ``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` (otherwise each process uses its own default AWS chain: config files, instance
profile). Without an endpoint or a region, the bucket's region is asked of AWS, as ``from_uri`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Temporary names start with this (readers of an OUTPUT skip names that start with "." or "_").
TMP_PREFIX = ".tmp-"
# Filesystems whose rename is atomic and visible at once; on the others (object stores) a file is written once
# under its final name instead, since an object PUT is itself all-or-nothing and a "rename" there is a copy.
_RENAMING_FILESYSTEMS = frozenset({"local", "hdfs"})


@dataclass(frozen=True)
class Location:
    """A file or directory on a pyarrow filesystem: ``fs`` and its ``path``, ``uri`` for messages."""

    fs: Any  # pyarrow.fs.FileSystem
    path: str
    prefix: str = ""  # what the user wrote before the filesystem path ("s3://"), so messages show their URI

    @property
    def uri(self) -> str:
        """The location as the user would write it."""
        return self.prefix + self.path

    @property
    def name(self) -> str:
        """The last component of the path."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def is_local(self) -> bool:
        """Whether this is the local filesystem (OS paths, O_EXCL, rename)."""
        return bool(self.fs.type_name == "local")

    @property
    def renames_atomically(self) -> bool:
        """Whether a temporary file renamed to its final name appears there whole and at once."""
        return self.fs.type_name in _RENAMING_FILESYSTEMS

    def child(self, name: str) -> Location:
        """``name`` inside this directory."""
        return Location(self.fs, f"{self.path.rstrip('/')}/{name}", self.prefix)

    def at(self, path: str) -> Location:
        """Another path on the same filesystem."""
        return Location(self.fs, path, self.prefix)

    def contains(self, other: Location) -> bool:
        """Whether ``other`` is this location or lies below it, on the same filesystem."""
        if not self.fs.equals(other.fs):
            return False
        mine, theirs = self.path.rstrip("/"), other.path.rstrip("/")
        return theirs == mine or theirs.startswith(mine + "/")

    def __str__(self) -> str:
        return self.uri


def resolve(target: str | os.PathLike[str]) -> Location:
    """The Location of a local path or of a URI (``s3://bucket/key``, ``gs://...``, ``hdfs://...``, ``file://``).

    Raises:
        ValueError: a URI that pyarrow cannot resolve (the message names it and pyarrow's reason).

    """
    text = os.fspath(target)
    if "://" not in text:
        return Location(_local_fs(), str(Path(text).resolve()))
    scheme = text.split("://", 1)[0].lower()
    if scheme == "file":
        return Location(_local_fs(), str(Path(text[len("file://") :]).resolve()))
    if scheme == "s3" and "?" not in text:  # with a query string, the user configured S3 themself: pyarrow parses it
        bucket_key = text[len("s3://") :].rstrip("/")
        return Location(s3_filesystem(bucket_key.split("/", 1)[0]), bucket_key, "s3://")
    pafs = _pyarrow_fs()
    try:
        fs, path = pafs.FileSystem.from_uri(text)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{text}: pyarrow.fs cannot open this URI: {exc}") from None
    base = text.split("?", 1)[0].rstrip("/")
    prefix = base[: -len(path)] if path and base.endswith(path) else f"{scheme}://"
    return Location(fs, path.rstrip("/") or path, prefix)


def s3_filesystem(bucket: str) -> Any:
    """An S3FileSystem configured from the standard AWS environment (see the module docstring)."""
    pafs = _pyarrow_fs()
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    if region is None and endpoint is None:
        region = pafs.resolve_s3_region(bucket)  # AWS itself: ask where the bucket lives, as from_uri does
    options: dict[str, Any] = {"region": region, "endpoint_override": endpoint}
    if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
        options.update(
            access_key=env["AWS_ACCESS_KEY_ID"],
            secret_key=env["AWS_SECRET_ACCESS_KEY"],
            session_token=env.get("AWS_SESSION_TOKEN") or None,
        )
    return pafs.S3FileSystem(**options)


def file_info(location: Location) -> Any:
    """The FileInfo of ``location`` (type NotFound when it does not exist)."""
    return location.fs.get_file_info(location.path)


def exists(location: Location) -> bool:
    """Whether a file or directory exists at ``location``."""
    return bool(file_info(location).type != _pyarrow_fs().FileType.NotFound)


def list_dir(location: Location, recursive: bool = False) -> list[Any]:
    """FileInfos below a directory (none when it does not exist)."""
    selector = _pyarrow_fs().FileSelector(location.path, allow_not_found=True, recursive=recursive)
    return list(location.fs.get_file_info(selector))


def read_bytes(location: Location) -> bytes:
    """The whole content of a file."""
    with location.fs.open_input_stream(location.path) as handle:
        return bytes(handle.read())


def write_bytes(location: Location, data: bytes, run_id: str) -> None:
    """Write a whole file so that no reader ever sees part of it (see ``write_whole``)."""

    def write(target: Location) -> None:
        with target.fs.open_output_stream(target.path) as handle:
            handle.write(data)

    write_whole(location, write, run_id)


def write_whole(location: Location, write: Callable[[Location], None], run_id: str) -> None:
    """Call ``write(target)`` so that ``location`` appears only complete.

    Where rename is atomic, ``target`` is a temporary name of this run (``.tmp-<run id>-<name>``), renamed when
    written; on object stores it is the final name, since a PUT is visible only once complete (a killed upload
    leaves nothing, or an incomplete multipart upload that no listing shows).
    """
    if not location.renames_atomically:
        write(location)
        return
    tmp = location.at(location.path.rsplit("/", 1)[0] + f"/{TMP_PREFIX}{run_id}-{location.name}")
    try:
        write(tmp)
        location.fs.move(tmp.path, location.path)  # rename(2) on the local filesystem: atomic, replaces
    except BaseException:
        delete(tmp)
        raise


def delete(location: Location) -> None:
    """Delete a file; nothing when it is already gone."""
    with contextlib.suppress(FileNotFoundError):
        location.fs.delete_file(location.path)


def make_dirs(location: Location) -> None:
    """Create a directory and its parents (a no-op where directories are implicit)."""
    location.fs.create_dir(location.path, recursive=True)


def import_pyarrow() -> Any:
    """pyarrow, or an ImportError that says which extra to install."""
    try:
        import pyarrow
        import pyarrow.parquet  # loads the submodule used as pyarrow.parquet
    except ImportError as exc:
        raise ImportError(
            f"embed-corpus needs pyarrow ({exc}); install it with: pip install 'embedrt[corpus]'"
        ) from None
    return pyarrow


def _local_fs() -> Any:
    return _pyarrow_fs().LocalFileSystem()


def _pyarrow_fs() -> Any:
    import_pyarrow()
    import pyarrow.fs

    return pyarrow.fs
