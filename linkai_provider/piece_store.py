"""Durable pieces: what the API already answered for a piece of a recording whose row is not written yet.

A long recording is sent as pieces; when its row cannot be ``ok`` (a piece failed, the task was killed,
the budget ran out), the pieces already answered were paid for. They are journaled as they are answered
(:meth:`linkai_provider.journal.Journal.append_pieces`, the same writer thread and guarantees as rows),
so the next attempt of the file sends only the pieces still missing (:func:`answered_pieces`).

Where pieces live, under a dataset folder (never seen by readers: ``_``-prefixed, not ``*.parquet``)::

    folder/_linkai/journal/<writer_id>/pcs-00000001.pieces   a live or dead writer's pieces (Arrow IPC stream)
    folder/_linkai/pieces/<writer_id>.pieces                 what compaction kept (same format)

Lifecycle: compaction (of a writer's own journal and the journals it adopted) keeps the pieces of every
file that has no ``ok`` row in the part it writes and drops the others; planning drops the pieces of
files that are done anywhere in the scope (:func:`prune_pieces`). So the store holds only pieces of
files still waiting for their ``ok`` row, and a lookup costs the pieces held plus one listing, never
the dataset's history.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from fsspec import AbstractFileSystem

from linkai_provider.staging import PIECES_DIR, Listing, scan

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (source_uri, source_fingerprint)
PIECES_SUFFIX = ".pieces"
_READ_BATCH = 32
_ATTEMPTS = 5


@dataclass(frozen=True)
class PieceRecord:
    """One answered piece of one version of a recording (fixed interface: ``audio`` produces them)."""

    source_uri: str
    source_fingerprint: str
    plan: str  # opaque to the store: what cut the piece (e.g. "v1;mix", "v1;ch1")
    channel: int | None  # None when mixed
    start_s: float
    end_s: float
    text: str
    attempts: int
    latency_ms: int
    bytes_sent: int
    audio_seconds: float  # what the API billed for this piece
    answered_at: datetime  # UTC

    @property
    def key(self) -> Key:
        return (self.source_uri, self.source_fingerprint)


PIECE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_fingerprint", pa.string(), nullable=False),
        pa.field("plan", pa.string()),
        pa.field("channel", pa.int32()),
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("latency_ms", pa.int64()),
        pa.field("bytes_sent", pa.int64()),
        pa.field("audio_seconds", pa.float64()),
        pa.field("answered_at", pa.timestamp("us", tz="UTC")),
    ],
    metadata={"linkai.pieces_version": "1"},
)
_FIELDS = tuple(PIECE_SCHEMA.names)


def to_table(records: Iterable[PieceRecord]) -> pa.Table:
    rows = [{name: getattr(r, name) for name in _FIELDS} for r in records]
    return pa.Table.from_pylist(rows, schema=PIECE_SCHEMA)


def encode(table_or_records: pa.Table | Iterable[PieceRecord]) -> bytes:
    """Pieces as an Arrow IPC stream (cheap to write from the journal thread, like row segments)."""
    table = table_or_records if isinstance(table_or_records, pa.Table) else to_table(table_or_records)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, PIECE_SCHEMA) as writer:
        writer.write_table(table.cast(PIECE_SCHEMA))
    return sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in PIECE_SCHEMA
    ]  # a later version's extra columns are dropped, missing ones are null
    return pa.Table.from_arrays(columns, schema=PIECE_SCHEMA)


def records(table: pa.Table) -> list[PieceRecord]:
    out = []
    for row in table.to_pylist():
        at = row["answered_at"]
        if at is not None and at.tzinfo is None:
            row["answered_at"] = at.replace(tzinfo=timezone.utc)
        out.append(PieceRecord(**row))
    return out


def keys_of(table: pa.Table) -> set[Key]:
    return set(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))


def select(table: pa.Table, keys: Collection[Key]) -> pa.Table:
    """The rows of ``table`` whose (source_uri, source_fingerprint) is in ``keys`` (filtered in Arrow)."""
    if not keys or table.num_rows == 0:
        return table.slice(0, 0)
    uris = pa.array(sorted({k[0] for k in keys}), pa.string())
    table = table.filter(pc.is_in(table["source_uri"], value_set=uris))
    if table.num_rows == 0:
        return table
    wanted = set(keys)
    mask = [k in wanted for k in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)]
    return table.filter(pa.array(mask, pa.bool_()))


def drop(table: pa.Table, keys: Collection[Key]) -> pa.Table:
    """The rows of ``table`` whose key is *not* in ``keys``."""
    if not keys or table.num_rows == 0:
        return table
    wanted = set(keys)
    mask = [k not in wanted for k in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)]
    return table.filter(pa.array(mask, pa.bool_()))


def group(tables: Iterable[pa.Table]) -> dict[Key, list[PieceRecord]]:
    """Pieces by key, each piece once (the same piece may be in a journal and a compacted file for a
    moment, or in two files after concurrent pruning), in (plan, channel, start) order."""
    found: dict[Key, dict[tuple[Any, ...], PieceRecord]] = {}
    for table in tables:
        for rec in records(table):
            ident = (rec.plan, rec.channel, rec.start_s, rec.end_s)
            seen = found.setdefault(rec.key, {})
            if ident not in seen or rec.answered_at < seen[ident].answered_at:
                seen[ident] = rec
    return {
        key: sorted(by.values(), key=lambda r: (r.plan, -1 if r.channel is None else r.channel, r.start_s, r.end_s))
        for key, by in found.items()
    }


def pieces_path(folder: str, name: str) -> str:
    return f"{folder.rstrip('/')}/{PIECES_DIR}/{name}{PIECES_SUFFIX}"


def _read_all(fs: AbstractFileSystem, paths: Sequence[str]) -> Iterable[tuple[str, pa.Table]]:
    for start in range(0, len(paths), _READ_BATCH):
        batch = list(paths[start : start + _READ_BATCH])
        blobs = fs.cat(batch, on_error="return")
        for path in batch:
            blob = blobs.get(path)
            if isinstance(blob, FileNotFoundError) or blob is None:
                raise FileNotFoundError(path)
            if isinstance(blob, BaseException):
                raise blob
            yield path, decode(blob)


class PieceStore:
    """The pieces under one scope, as one listing shows them: compacted files and journal segments."""

    def __init__(self, fs: AbstractFileSystem, listing: Listing) -> None:
        self.fs = fs
        self.listing = listing
        self.files = sorted(listing.pieces)  # compacted
        self.segments = [s for j in listing.journals.values() for s in j.piece_segments]

    def lookup(self, keys: Collection[Key]) -> tuple[dict[Key, list[PieceRecord]], dict[str, pa.Table]]:
        """Pieces of ``keys``, and every compacted file as read (for pruning)."""
        tables: list[pa.Table] = []
        files: dict[str, pa.Table] = {}
        for path, table in _read_all(self.fs, [*self.files, *self.segments]):
            if path in self.listing.pieces:
                files[path] = table
            tables.append(select(table, keys))
        return group(tables), files


def answered_pieces(
    fs: AbstractFileSystem, root: str, keys: Collection[tuple[str, str]]
) -> dict[Key, list[PieceRecord]]:
    """Every answered piece of these ``(source_uri, source_fingerprint)`` keys under ``root`` (any depth):
    in live and dead journals and in what compaction kept. Costs one listing of ``root`` and a read of
    the pieces held (only files still waiting for an ``ok`` row have any), never the dataset's rows."""
    if not keys:
        return {}
    for attempt in range(_ATTEMPTS):
        try:
            return PieceStore(fs, scan(fs, root)).lookup(keys)[0]
        except FileNotFoundError:
            # A journal was compacted (its pieces moved to a compacted file) or a file pruned meanwhile.
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def prune_pieces(
    fs: AbstractFileSystem,
    files: Mapping[str, pa.Table],
    done: Callable[[Collection[Key]], set[Key]],
    write: Callable[[str, bytes], None],
    logger: Any = log,
) -> int:
    """Drop, from compacted piece files, the pieces of files that are done (an ``ok`` row anywhere in
    the scope: ``done`` answers for a set of keys). A file left empty is deleted; one partly done is
    rewritten under a new name, then the old one deleted. Safe under concurrency: only pieces of done
    files are ever dropped, so two planners pruning the same file at once leave duplicates (read once),
    never a loss. Returns the pieces dropped."""
    dropped = 0
    held = {path: keys_of(table) for path, table in files.items()}
    every = set().union(*held.values()) if held else set()
    finished = done(every) if every else set()  # one check for every file's keys
    for path, table in files.items():
        gone = held[path] & finished
        if not gone:
            continue
        kept = drop(table, gone)
        if kept.num_rows:
            folder, name = path.rsplit("/", 1)
            stem = name[: -len(PIECES_SUFFIX)].split("~", 1)[0]
            write(f"{folder}/{stem}~{uuid.uuid4().hex[:8]}{PIECES_SUFFIX}", encode(kept))
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass
        dropped += table.num_rows - kept.num_rows
        logger.debug("Pieces: dropped %d of %s (their files are done)", table.num_rows - kept.num_rows, path)
    return dropped


__all__ = [
    "PIECE_SCHEMA",
    "PIECES_SUFFIX",
    "PieceRecord",
    "PieceStore",
    "answered_pieces",
    "decode",
    "encode",
    "group",
    "prune_pieces",
    "to_table",
]
