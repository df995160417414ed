"""Listing the audio files a ``source`` names: a file, a folder or prefix, a glob, or a list of them.

Listings are kept compact because a night can hold a million files: an S3 prefix is read page by page
(one ``ListObjectsV2`` call per 1,000 keys, nothing left in s3fs's listing cache), each entry becomes an
:class:`AudioFile` with ``__slots__`` as soon as it is read, and the store's info dicts are dropped with
their page. ``keep`` (e.g. one shard's slice) is applied before anything is kept.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import stringify_path

from linkai_provider.formats import audio_format
from linkai_provider.io.storage import full_url, resolve
from linkai_provider.io.symlinks import glob_local, walk_local

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


class SourceNotFoundError(FileNotFoundError):
    """A source that is neither an existing file or folder nor a glob."""


@dataclass(frozen=True, slots=True)
class AudioFile:
    """One input file as listed: where it is and which version of it this is (about 400 bytes each)."""

    uri: str
    path: str
    size: int
    fingerprint: str
    audio_format: str
    fs: AbstractFileSystem = field(compare=False, repr=False, hash=False)


@dataclass
class Listing:
    files: list[AudioFile]
    unsupported: list[str]  # URLs seen but not of the ten formats: counted, never sent
    shard: str | None = None  # "index/count" when this is one shard's slice of the source

    @property
    def found(self) -> int:
        return len(self.files) + len(self.unsupported)


def fingerprint(info: dict[str, Any]) -> str:
    """What identifies this version of an object: its ETag where the store has one, else size+mtime."""
    for key in ("ETag", "etag", "md5Hash", "md5"):
        value = info.get(key)
        if value:
            return "etag:" + str(value).strip('"')
    size = info.get("size")
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
    if isinstance(mtime, datetime):
        mtime = mtime.isoformat()
    elif isinstance(mtime, (int, float)):
        mtime = f"{mtime:.6f}"
    return f"size:{size};mtime:{mtime}"


def _entries(fs: AbstractFileSystem, path: str, original: str) -> Iterable[tuple[str, dict[str, Any]]]:
    # An existing path wins over glob syntax, so names with '?' or '[' are still found as files.
    try:
        info = fs.info(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:  # e.g. a bucket that does not exist or denies access
        raise SourceNotFoundError(f"source {original!r} cannot be read: {exc}") from exc
    if info is not None and info.get("type") == "file":
        return [(info.get("name", path), info)]
    if info is not None:
        if isinstance(fs, LocalFileSystem):  # fsspec's find skips symbolic links: follow them, loops caught
            return walk_local(fs, path)
        return _find(fs, path)
    if _GLOB_CHARS & set(path):
        if isinstance(fs, LocalFileSystem):  # the same glob, with links followed as in a folder
            return glob_local(fs, path)
        return fs.glob(path, detail=True).items()
    raise SourceNotFoundError(f"source {original!r} does not exist (no such file, folder or prefix)")


def _find(fs: AbstractFileSystem, path: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """Every file under the folder or prefix ``path``; S3 page by page, other stores through ``find``."""
    if _is_plain_s3(fs):
        return _s3_pages(fs, path)
    return fs.find(path, detail=True).items()


def _is_plain_s3(fs: AbstractFileSystem) -> bool:
    # s3fs (also behind Airflow's `aws` connections); a version-aware one lists versions: leave it to s3fs
    return (
        type(fs).__module__.startswith("s3fs") and hasattr(fs, "_call_s3") and not getattr(fs, "version_aware", False)
    )


def _s3_pages(fs: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``ListObjectsV2`` page by page (1,000 keys a call), without s3fs's listing cache: ``fs.find``
    keeps every key's dict twice (its result and the cache), about 1.1 KB a key."""
    from fsspec.asyn import sync

    bucket, key, _ = fs.split_path(path)
    prefix = key.rstrip("/") + "/" if key else ""
    request = {"Bucket": bucket, "Prefix": prefix, **getattr(fs, "req_kw", {})}
    while True:
        page = sync(fs.loop, fs._call_s3, "list_objects_v2", **request)
        for obj in page.get("Contents", ()):
            name = obj["Key"]
            if name.endswith("/"):
                continue  # a folder placeholder, not a file
            yield (
                f"{bucket}/{name}",
                {
                    "type": "file",
                    "size": obj.get("Size"),
                    "ETag": obj.get("ETag"),
                    "LastModified": obj.get("LastModified"),
                },
            )
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        request["ContinuationToken"] = token


@dataclass(frozen=True, slots=True)
class Entry:
    """A file as listed, before it is known to be audio: ``audio_format`` is None for other files."""

    uri: str
    path: str
    size: int
    fingerprint: str
    audio_format: str | None
    fs: AbstractFileSystem


def iter_files(sources: str | Sequence[str], conn_id: str | None = None) -> Iterator[Entry]:
    """Every file under ``sources`` as it is listed (in the store's order; duplicates possible when
    sources overlap). Raises :class:`SourceNotFoundError` for a source that names nothing."""
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
        sources = [sources]  # type: ignore[list-item]
    if not sources:
        raise SourceNotFoundError("source is empty: give a file, folder, prefix or glob URL")
    for source in sources:
        source = stringify_path(source)
        fs, path = resolve(source, conn_id)
        for name, info in _entries(fs, path, source):
            if info.get("type", "file") != "file":
                continue
            fmt = audio_format(name)
            yield Entry(
                uri=full_url(fs, name),
                path=name,
                size=int(info.get("size") or 0),
                fingerprint=fingerprint(info),
                audio_format=sys.intern(fmt) if fmt else None,
                fs=fs,
            )


def list_audio(
    sources: str | Sequence[str], conn_id: str | None = None, *, keep: Callable[[str], bool] | None = None
) -> Listing:
    """List every file under ``sources``; the ten formats (any case) are kept, others counted.
    ``keep(uri)`` False: the file is not this listing's business (another shard's), neither kept nor counted."""
    files: dict[str, AudioFile] = {}
    unsupported: dict[str, None] = {}
    for entry in iter_files(sources, conn_id):
        if keep is not None and not keep(entry.uri):
            continue
        if entry.audio_format is None:
            unsupported[entry.uri] = None
            continue
        files[entry.uri] = AudioFile(
            uri=entry.uri,
            path=entry.path,
            size=entry.size,
            fingerprint=entry.fingerprint,
            audio_format=entry.audio_format,
            fs=entry.fs,
        )
    if unsupported:
        log.info("Ignoring %d file(s) that are not one of the ten audio formats", len(unsupported))
    return Listing(files=sorted(files.values(), key=lambda f: f.uri), unsupported=sorted(unsupported))
