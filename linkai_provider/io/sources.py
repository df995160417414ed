"""Listing the audio files a ``source`` names: a file, a folder or prefix, a glob, or a list of them."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import stringify_path

from linkai_provider.formats import audio_format
from linkai_provider.io.storage import full_url, resolve
from linkai_provider.io.symlinks import walk_local

log = logging.getLogger(__name__)

_GLOB_CHARS = frozenset("*?[")


class SourceNotFoundError(FileNotFoundError):
    """A source that is neither an existing file or folder nor a glob."""


@dataclass(frozen=True)
class AudioFile:
    """One input file as listed: where it is and which version of it this is."""

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
        return fs.find(path, detail=True).items()
    if _GLOB_CHARS & set(path):
        return fs.glob(path, detail=True).items()
    raise SourceNotFoundError(f"source {original!r} does not exist (no such file, folder or prefix)")


def list_audio(sources: str | Sequence[str], conn_id: str | None = None) -> Listing:
    """List every file under ``sources``; the ten formats (any case) are kept, others counted."""
    if isinstance(sources, (str, bytes)) or not isinstance(sources, Sequence):
        sources = [sources]  # type: ignore[list-item]
    if not sources:
        raise SourceNotFoundError("source is empty: give a file, folder, prefix or glob URL")
    files: dict[str, AudioFile] = {}
    unsupported: dict[str, None] = {}
    for source in sources:
        source = stringify_path(source)
        fs, path = resolve(source, conn_id)
        for name, info in _entries(fs, path, source):
            if info.get("type", "file") != "file":
                continue
            uri = full_url(fs, name)
            fmt = audio_format(name)
            if fmt is None:
                unsupported[uri] = None
                continue
            files[uri] = AudioFile(
                uri=uri,
                path=name,
                size=int(info.get("size") or 0),
                fingerprint=fingerprint(info),
                audio_format=fmt,
                fs=fs,
            )
    if unsupported:
        log.info("Ignoring %d file(s) that are not one of the ten audio formats", len(unsupported))
    return Listing(files=sorted(files.values(), key=lambda f: f.uri), unsupported=sorted(unsupported))
