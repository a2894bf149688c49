"""Where a store lives: a local path, a shared mount, or an fsspec URL (``s3://bucket/prefix``).

:func:`open_root` turns a store root into a :class:`StoreLocation` (an fsspec filesystem and the
root inside it) and, for an object store, checks once that the bucket exists and that the
credentials are accepted, so a typo or a bad key fails at ``BarStore(url)`` with a message
naming the URL and the bucket, not deep inside a query.

S3-compatible stores take their settings from the usual places: ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` (or ``~/.aws``), and ``SPARK_S3_ENDPOINT`` for a non-AWS endpoint
(MinIO, Ceph, moto). ``storage_options`` passed to ``BarStore`` win over both.

DuckDB reads remote stores through the same fsspec filesystem (``register_filesystem``), so
no DuckDB extension has to be downloaded (``httpfs`` needs network the first time).

Example::

    >>> loc = open_root("/tmp/spark-store-example")
    >>> loc.is_local, loc.url
    (True, '/tmp/spark-store-example')
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


class StoreAccessError(OSError):
    """The store cannot be reached: missing bucket, rejected credentials, unknown protocol."""


def is_url(root: object) -> bool:
    """True for ``scheme://...`` roots (``file://`` included), False for plain paths."""
    return isinstance(root, str) and "://" in root


def s3_options_from_env() -> dict[str, Any]:
    """fsspec/s3fs options from ``SPARK_S3_ENDPOINT`` (and ``AWS_REGION``), empty if unset."""
    opts: dict[str, Any] = {}
    client: dict[str, Any] = {}
    if endpoint := os.environ.get("SPARK_S3_ENDPOINT"):
        client["endpoint_url"] = endpoint
    if region := os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"):
        client["region_name"] = region
    if client:
        opts["client_kwargs"] = client
    return opts


@dataclass(frozen=True)
class StoreLocation:
    """A store root resolved to a filesystem: ``fs`` and ``path`` (no protocol) inside it."""

    fs: fsspec.AbstractFileSystem
    path: str  #: root inside ``fs`` (``bucket/prefix`` for S3, an absolute path locally)
    url: str  #: root as DuckDB and fsspec take it (``s3://bucket/prefix`` or ``/abs/path``)
    is_local: bool

    def join(self, *parts: str) -> str:
        """``path/part/...`` inside ``fs``."""
        return "/".join([self.path.rstrip("/"), *parts])

    def to_url(self, path: str) -> str:
        """A path inside ``fs`` as a URL DuckDB can open (through the registered filesystem)."""
        return path if self.is_local else self.fs.unstrip_protocol(path)


def open_root(root: str | os.PathLike[str], storage_options: dict[str, Any] | None = None,
              check: bool = True) -> StoreLocation:
    """Resolve ``root`` to a :class:`StoreLocation`; with ``check``, verify a remote bucket.

    Raises :class:`StoreAccessError` naming the URL and bucket when the bucket is missing or
    the credentials are refused.
    """
    if not is_url(root) or str(root).startswith("file://"):
        path = str(root)[len("file://"):] if str(root).startswith("file://") else os.fspath(root)
        path = str(Path(path).expanduser().absolute())
        return StoreLocation(LocalFileSystem(), path, path, True)
    url = str(root).rstrip("/")
    protocol = url.split("://", 1)[0]
    opts = dict(storage_options or {})
    if protocol in ("s3", "s3a") and not storage_options:
        opts = s3_options_from_env()
    try:
        fs, path = fsspec.core.url_to_fs(url, **opts)
    except (ImportError, ValueError) as exc:
        raise StoreAccessError(f"store URL {url!r}: protocol {protocol!r} is not available ({exc})") from exc
    loc = StoreLocation(fs, path.rstrip("/"), url, False)
    if check:
        check_access(loc)
    return loc


def _bucket(loc: StoreLocation) -> str:
    return loc.path.split("/", 1)[0]


def check_access(loc: StoreLocation) -> None:
    """One cheap request against the bucket of ``loc``: missing bucket or bad credentials raise
    :class:`StoreAccessError` with the URL, the bucket and what to check."""
    bucket = _bucket(loc)
    try:
        loc.fs.ls(bucket, detail=False, refresh=True)
    except FileNotFoundError as exc:
        raise StoreAccessError(f"store {loc.url}: bucket {bucket!r} does not exist (create it, or fix "
                               f"SPARK_STORE)") from exc
    except PermissionError as exc:
        raise StoreAccessError(f"store {loc.url}: access to bucket {bucket!r} denied: check the credentials "
                               f"(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or storage_options) and the "
                               f"endpoint ({exc})") from exc
    except OSError as exc:
        raise StoreAccessError(f"store {loc.url}: bucket {bucket!r} unreachable: {exc}") from exc


def describe_error(loc: StoreLocation, path: str, exc: BaseException) -> StoreAccessError:
    """Wrap an fsspec error raised while touching ``path`` with the store URL and bucket."""
    where = loc.to_url(path)
    if isinstance(exc, PermissionError):
        return StoreAccessError(f"store {loc.url}: access denied to {where} (bucket {_bucket(loc)!r}): "
                                f"check the credentials: {exc}")
    return StoreAccessError(f"store {loc.url}: {where}: {exc}")


def write_atomic(loc: StoreLocation, path: str, data: bytes) -> None:
    """Make ``path`` hold ``data`` all at once: readers see the old object or the new one.

    Locally: write ``.tmp-<pid>-<n>.partial`` beside it, then ``os.replace`` (a rename within a
    directory is atomic; the temp name matches no reader's glob). On an object store a single PUT
    is atomic already: the object appears complete or not at all.
    """
    if loc.is_local:
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.urandom(6).hex()}.partial")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        return
    try:
        loc.fs.pipe_file(path, data)
    except OSError as exc:
        raise describe_error(loc, path, exc) from exc


__all__ = ["StoreAccessError", "StoreLocation", "open_root", "check_access", "write_atomic", "is_url",
           "s3_options_from_env", "describe_error"]
