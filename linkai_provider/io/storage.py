"""From a URL and an optional Airflow connection id to an fsspec filesystem and a path.

Two kinds of connection are understood:

* a connection of a type that an Airflow provider reads (``aws``, ``google_cloud_platform``,
  ``adls``/``azure_data_lake``/``wasb``): that provider's object-storage filesystem builds the
  filesystem (the same one ``ObjectStoragePath(url, conn_id=...)`` uses), credentials included;
* any other connection (``generic``, ``fsspec``, ...): its extra is taken as fsspec storage
  options, e.g. ``{"endpoint_url": "http://127.0.0.1:4443", "token": "anon"}`` for gcsfs, or
  ``{"key": ..., "secret": ..., "client_kwargs": {"endpoint_url": ...}}`` for s3fs. A nested
  ``"storage_options"`` object is used instead when present.

Why the checks: without Airflow's Amazon provider an ``aws`` connection's extra used to reach s3fs
as storage options, and the task failed at its first request with ``AioSession.__init__() got an
unexpected keyword argument 'region_name'`` or ``NoCredentialsError``, naming nothing a user could
act on. Now a connection whose provider is missing, a connection for another store than the URL's,
or a missing fsspec implementation is a :class:`StorageConfigurationError` naming what to install
or change, raised before any request (:func:`preflight` checks every URL of a batch up front).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec import AbstractFileSystem
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

# Connection types whose extra is fsspec storage options, whatever the protocol.
PLAIN_CONN_TYPES = frozenset({"", "generic", "fsspec", "file", "fs"})
LOCAL_PROTOCOLS = frozenset({"file", "local"})


class StorageConfigurationError(ValueError):
    """A storage URL and its connection cannot work together: a provider or fsspec package is
    missing, or the connection is for another store. Raised before any request is sent."""


@dataclass(frozen=True)
class Store:
    """One kind of object store: its URL protocols, its fsspec package, and the Airflow provider that
    reads the credentials of its connection types."""

    name: str
    protocols: frozenset[str]
    fsspec_package: str
    extra: str | None  # this distribution's extra that installs fsspec_package
    conn_types: frozenset[str]
    provider: str  # the distribution
    provider_module: str  # its import package

    @property
    def install_fsspec(self) -> str:
        return (
            f'pip install "airflow-provider-linkai[{self.extra}]"'
            if self.extra
            else f"pip install {self.fsspec_package}"
        )

    def urls(self) -> str:
        return ", ".join(f"{p}://" for p in sorted(self.protocols))


STORES = (
    Store(
        "S3",
        frozenset({"s3", "s3a", "s3n"}),
        "s3fs",
        "s3",
        frozenset({"aws"}),
        "apache-airflow-providers-amazon",
        "airflow.providers.amazon",
    ),
    Store(
        "Google Cloud Storage",
        frozenset({"gs", "gcs"}),
        "gcsfs",
        "gcs",
        frozenset({"google_cloud_platform"}),
        "apache-airflow-providers-google",
        "airflow.providers.google",
    ),
    Store(
        "Azure Data Lake / Blob Storage",
        frozenset({"abfs", "abfss", "adl", "az"}),
        "adlfs",
        None,
        frozenset({"adls", "azure_data_lake", "wasb"}),
        "apache-airflow-providers-microsoft-azure",
        "airflow.providers.microsoft.azure",
    ),
)
# Connection types that hold no storage credentials at all, and what they are for.
NOT_STORAGE = {"linkai": "a LinkAI API connection (it belongs in linkai_conn_id)"}


def store_of_protocol(protocol: str) -> Store | None:
    return next((s for s in STORES if protocol in s.protocols), None)


def store_of_conn_type(conn_type: str) -> Store | None:
    return next((s for s in STORES if conn_type in s.conn_types), None)


def storage_options_of(conn: Any) -> dict[str, Any]:
    extra = conn.extra_dejson or {}
    nested = extra.get("storage_options")
    return dict(nested) if isinstance(nested, dict) else dict(extra)


def protocol_of_url(url: str) -> str:
    return split_protocol(str(url))[0] or "file"


def resolve(url: str, conn_id: str | None = None) -> tuple[AbstractFileSystem, str]:
    """The filesystem and in-filesystem path of ``url``, credentials from ``conn_id`` if given.

    :raises StorageConfigurationError: see :func:`check`; nothing has been sent when it is raised.
    """
    url = str(url)
    protocol = protocol_of_url(url)
    conn = _connection(conn_id) if conn_id else None
    _check(url, protocol, conn_id, conn)
    if conn is None:
        return url_to_fs(url)
    if _conn_type(conn) in PLAIN_CONN_TYPES or not _provider_has_fs(protocol):
        return url_to_fs(url, **storage_options_of(conn))
    from airflow.sdk.io.fs import get_fs

    fs = get_fs(protocol, conn_id)
    return fs, fs._strip_protocol(url)


def check(url: str, conn_id: str | None = None) -> None:
    """Raise :class:`StorageConfigurationError` if ``url`` with ``conn_id`` cannot work: the URL's
    fsspec package is missing, the connection is for another store (an ``aws`` connection for a
    ``gs://`` URL), or the provider that reads the connection is not installed. Sends nothing."""
    _check(str(url), protocol_of_url(str(url)), conn_id, _connection(conn_id) if conn_id else None)


def preflight(pairs: Iterable[tuple[str, str | None]]) -> None:
    """:func:`check` every ``(url, conn_id)`` of a batch before the first request of any of them."""
    for url, conn_id in pairs:
        check(url, conn_id)


def _connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    return BaseHook.get_connection(conn_id)


def _conn_type(conn: Any) -> str:
    return (conn.conn_type or "").lower()


def _check(url: str, protocol: str, conn_id: str | None, conn: Any) -> None:
    store = store_of_protocol(protocol)
    if conn is not None:
        conn_type = _conn_type(conn)
        if conn_type in NOT_STORAGE:
            raise StorageConfigurationError(
                f"connection {conn_id!r} is {NOT_STORAGE[conn_type]}, not storage credentials, but it was given "
                f"for {url}: give the storage's own connection as source_conn_id/destination_conn_id, or none"
            )
        conn_store = store_of_conn_type(conn_type)
        if conn_store is not None:
            if conn_store is not store:
                where = f"a local path ({url})" if protocol in LOCAL_PROTOCOLS else url
                raise StorageConfigurationError(
                    f"connection {conn_id!r} is of type {conn_type!r}, which holds {conn_store.name} credentials "
                    f"({conn_store.urls()} URLs), but it was given for {where}: " + _fix_for(store, protocol)
                )
            _check_fsspec(store, protocol, url)
            _check_provider(conn_store, protocol, conn_id, conn_type)
            return
    if store is not None:
        _check_fsspec(store, protocol, url)


def _fix_for(store: Store | None, protocol: str) -> str:
    if protocol in LOCAL_PROTOCOLS:
        return "a local path needs no connection (leave the conn id empty)"
    if store is not None:
        types = " or ".join(repr(t) for t in sorted(store.conn_types))
        return (
            f"use a connection of type {types} for {protocol}:// URLs, or a 'generic' connection whose extra "
            f"holds {store.fsspec_package} options"
        )
    return f"use a 'generic' connection whose extra holds the fsspec options of {protocol}://"


def _check_fsspec(store: Store, protocol: str, url: str) -> None:
    if importlib.util.find_spec(store.fsspec_package) is None:
        raise StorageConfigurationError(
            f"{url}: {protocol}:// URLs need the {store.fsspec_package} package, which is not installed where "
            f"this runs: {store.install_fsspec}"
        )


def _check_provider(store: Store, protocol: str, conn_id: str | None, conn_type: str) -> None:
    if _provider_has_fs(protocol):
        return
    if not _importable(store.provider_module):
        raise StorageConfigurationError(
            f"connection {conn_id!r} (type {conn_type!r}) needs {store.provider}, which is not installed where "
            f"this runs: only that provider reads the credentials of connections of type {conn_type!r}. Install it on "
            f"every worker (pip install {store.provider}), or use a 'generic' connection whose extra holds "
            f"{store.fsspec_package} options"
        )
    registered = sorted(p for p in store.protocols if _provider_has_fs(p))
    instead = ", ".join(f"{p}://" for p in registered) or f"nothing: upgrade {store.provider}"
    raise StorageConfigurationError(
        f"connection {conn_id!r} is of type {conn_type!r}, but the installed {store.provider} registers no "
        f"filesystem for {protocol}:// URLs in Airflow's object storage (it registers {instead})"
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _provider_has_fs(protocol: str) -> bool:
    try:
        from airflow.sdk.io.fs import has_fs
    except ImportError:  # pragma: no cover
        return False
    return protocol not in LOCAL_PROTOCOLS and has_fs(protocol)


def full_url(fs: AbstractFileSystem, path: str) -> str:
    """``path`` with its protocol, as stored in ``source_uri`` (``file:///...``, ``s3://...``)."""
    return fs.unstrip_protocol(path)


def is_local(fs: AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def protocol_of(fs: AbstractFileSystem) -> str:
    proto = fs.protocol
    return proto[0] if isinstance(proto, (tuple, list)) else proto


__all__ = [
    "STORES",
    "StorageConfigurationError",
    "Store",
    "check",
    "fsspec",
    "full_url",
    "is_local",
    "preflight",
    "protocol_of",
    "resolve",
    "storage_options_of",
]
