"""From a URL and an optional Airflow connection id to an fsspec filesystem and a path.

Two kinds of connection are understood:

* a connection of the type a provider registers a filesystem for (``aws`` for ``s3://``,
  ``google_cloud_platform`` for ``gs://``): Airflow's own object-storage registry builds the
  filesystem (the same one ``ObjectStoragePath(url, conn_id=...)`` uses), credentials included;
* any other connection (``generic``, ``fsspec``, ...): its extra is taken as fsspec storage
  options, e.g. ``{"endpoint_url": "http://127.0.0.1:4443", "token": "anon"}`` for gcsfs, or
  ``{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}`` for s3fs. A nested
  ``"storage_options"`` object is used instead when present.
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

PLAIN_CONN_TYPES = frozenset({"generic", "fsspec", "file", "fs"})


def storage_options_of(conn: Any) -> dict[str, Any]:
    extra = conn.extra_dejson or {}
    nested = extra.get("storage_options")
    return dict(nested) if isinstance(nested, dict) else dict(extra)


def resolve(url: str, conn_id: str | None = None) -> tuple[AbstractFileSystem, str]:
    """The filesystem and in-filesystem path of ``url``, credentials from ``conn_id`` if given."""
    url = str(url)
    protocol = split_protocol(url)[0] or "file"
    if not conn_id:
        return url_to_fs(url)
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if (conn.conn_type or "") in PLAIN_CONN_TYPES or not _provider_has_fs(protocol):
        return url_to_fs(url, **storage_options_of(conn))
    from airflow.sdk.io.fs import get_fs

    fs = get_fs(protocol, conn_id)
    return fs, fs._strip_protocol(url)


def _provider_has_fs(protocol: str) -> bool:
    try:
        from airflow.sdk.io.fs import has_fs
    except ImportError:  # pragma: no cover
        return False
    return protocol not in ("file", "local") and has_fs(protocol)


def full_url(fs: AbstractFileSystem, path: str) -> str:
    """``path`` with its protocol, as stored in ``source_uri`` (``file:///...``, ``s3://...``)."""
    return fs.unstrip_protocol(path)


def is_local(fs: AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def protocol_of(fs: AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto


__all__ = ["fsspec", "full_url", "is_local", "protocol_of", "resolve", "storage_options_of"]
