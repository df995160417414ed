"""The transcript dataset: its Arrow schema, writing part files, and the reader used for planning.

A dataset is a folder (optionally Hive-partitioned, ``dt=YYYY-MM-DD/``) of Parquet part files.
Parts are written whole and atomically: on local disk to a hidden temporary name and then renamed,
on object stores as one PUT. Readers (DuckDB, pandas, Polars, Spark, Athena, BigQuery) never see a
half-written part, and tools that list a dataset skip names starting with ``.`` or ``_``: rows not yet
compacted into a part wait in journals under ``_linkai/`` (see :mod:`linkai_provider.staging`).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from linkai_provider import __version__, keyindex
from linkai_provider.io.storage import is_local
from linkai_provider.staging import scan

log = logging.getLogger(__name__)

# One piece of a recording as sent: its span in the recording, its text, and the channel it was heard on
# (``channels="separate"``; null when the channels were mixed) (DESIGN: ``segments``).
SEGMENT = pa.struct(
    [
        pa.field("start_s", pa.float64()),
        pa.field("end_s", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("channel", pa.int32()),
    ]
)
# Schema versions: 1 the flat columns; 2 added ``chunks`` and ``segments``; 3 added ``segments.channel``
# and ``warnings``. Parts of every version read as one dataset (missing columns and fields are null).
SCHEMA_VERSION = "3"
SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_size_bytes", pa.int64()),
        pa.field("source_fingerprint", pa.string()),
        pa.field("content_sha256", pa.string()),
        pa.field("audio_format", pa.string()),
        pa.field("audio_duration_s", pa.float64()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("error_type", pa.string()),
        pa.field("error_code", pa.int32()),
        pa.field("error_message", pa.string()),
        pa.field("attempts", pa.int32()),
        pa.field("latency_ms", pa.int64()),
        pa.field("transcribed_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("endpoint", pa.string()),
        pa.field("dag_id", pa.string()),
        pa.field("task_id", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field("map_index", pa.int32()),
        pa.field("try_number", pa.int32()),
        pa.field("chunks", pa.int32()),
        pa.field("segments", pa.list_(SEGMENT)),
        pa.field("warnings", pa.list_(pa.string())),
    ],
    metadata={"linkai.schema_version": SCHEMA_VERSION, "linkai.writer": f"airflow-provider-linkai {__version__}"},
)
COLUMNS = tuple(SCHEMA.names)
STATUS_OK = "ok"
STATUS_FAILED = "failed"
PART_SUFFIX = ".parquet"
READ_BATCH = 32  # remote parts fetched at once while planning
COLUMN_READ_BATCH = 8  # remote parts whose columns are fetched at once (their ranges concurrently)
_LIST_ATTEMPTS = 5
ROW_GROUP_ROWS = 64_000  # rows per row group when segments are compacted into a part


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class TranscriptWriter:
    """Buffers rows and writes them as Parquet part files every ``checkpoint_rows`` rows or
    ``checkpoint_seconds`` seconds, whichever comes first: for loading rows in bulk (test fixtures,
    benchmarks, migrations). A task does not use it: it writes through its journal
    (:class:`linkai_provider.journal.Journal`), one part per try. Not thread-safe.

    :param fs: filesystem of the dataset folder.
    :param root: dataset folder (created if missing).
    :param part_prefix: stable part of the part-file names, e.g. ``part-<run>-<map>-<try>``; a random
        suffix and a sequence number keep concurrent writers (mapped shards, reruns) from colliding.
    """

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        *,
        part_prefix: str = "part",
        checkpoint_rows: int = 100,
        checkpoint_seconds: float = 30.0,
    ) -> None:
        if checkpoint_rows < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_rows must be >= 1 and checkpoint_seconds > 0")
        self.fs = fs
        self.root = root.rstrip("/")
        self.part_prefix = f"{part_prefix}-{uuid.uuid4().hex[:12]}"
        self.checkpoint_rows = checkpoint_rows
        self.checkpoint_seconds = checkpoint_seconds
        self.parts: list[str] = []
        self.rows_written = 0
        self._rows: list[Mapping[str, Any]] = []
        self._last_flush = time.monotonic()

    def check_writable(self) -> None:
        """Create the folder and write then delete a probe, so a bad destination fails before any upload."""
        probe = f"{self.root}/.linkai-write-probe-{uuid.uuid4().hex}"
        try:
            self.fs.makedirs(self.root, exist_ok=True)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:
            raise PermissionError(
                f"destination {self.fs.unstrip_protocol(self.root)!r} is not writable: {exc}"
            ) from exc

    def add(self, row: Mapping[str, Any]) -> None:
        self._rows.append(row)
        if self.due():
            self.flush()

    def due(self) -> bool:
        if not self._rows:
            return False
        return len(self._rows) >= self.checkpoint_rows or time.monotonic() - self._last_flush >= self.checkpoint_seconds

    def flush(self) -> str | None:
        """Write the buffered rows as one part file; returns its path (None if nothing was buffered)."""
        self._last_flush = time.monotonic()
        if not self._rows:
            return None
        table = pa.Table.from_pylist(self._rows, schema=SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="snappy")
        path = f"{self.root}/{self.part_prefix}-{len(self.parts):05d}{PART_SUFFIX}"
        _atomic_write(self.fs, path, sink.getvalue().to_pybytes())
        write_index(self.fs, path, row_keys(table))
        self.parts.append(path)
        self.rows_written += len(self._rows)
        log.info("Checkpoint: wrote %d row(s) to %s", len(self._rows), self.fs.unstrip_protocol(path))
        self._rows = []
        return path

    close = flush


def ok_keys(table: pa.Table) -> set[tuple[str, str]]:
    """``(source_uri, source_fingerprint)`` of the ``ok`` rows of ``table``."""
    ok = table.filter(pc.equal(table["status"], STATUS_OK))
    return set(zip(ok["source_uri"].to_pylist(), ok["source_fingerprint"].to_pylist(), strict=True))


def row_keys(table: pa.Table) -> set[tuple[str, str, str]]:
    """``(source_uri, source_fingerprint, status)`` of every row of ``table`` (what the key index holds)."""
    columns = [table[name].to_pylist() for name in ("source_uri", "source_fingerprint", "status")]
    return set(zip(*columns, strict=True))


def write_index(fs: AbstractFileSystem, part: str, keys: Iterable[tuple[str, str, str]]) -> None:
    """Write the key index of ``part`` (:mod:`linkai_provider.keyindex`) once the part is visible: a
    part never counts through an index alone. Idempotent: the same part always gives the same files."""
    for path, data in keyindex.index_files(part, keys).items():
        _atomic_write(fs, path, data, durable=False)  # a cache: one lost in a crash is read as missing


def _atomic_write(fs: AbstractFileSystem, path: str, data: bytes, *, durable: bool = True) -> None:
    """Write ``path`` whole or not at all; ``durable``: also survive a power cut (fsync)."""
    if is_local(fs):
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old state or the whole part
        if durable:
            _fsync_dir(directory)
    else:
        fs.pipe_file(path, data)  # one PUT: an object store shows the whole object or nothing


def _fsync_dir(directory: str) -> None:
    """Make a rename durable (a power cut could otherwise undo it); not possible on every OS."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish_file(fs: AbstractFileSystem, local_path: str, path: str) -> None:
    """Move a finished local file to ``path`` atomically: a rename on local disk (``local_path`` must
    be on the same filesystem), an upload on object stores (one PUT, or a multipart upload, which
    also appears whole when it completes)."""
    if is_local(fs):
        with open(local_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(local_path, path)
        _fsync_dir(os.path.dirname(path))
    else:
        fs.put_file(local_path, path)


def write_part(
    fs: AbstractFileSystem,
    path: str,
    tables: Iterable[pa.Table],
    metadata: Mapping[bytes, bytes] | None = None,
    *,
    before_publish: Callable[[], None] | None = None,
) -> int:
    """Stream ``tables`` (``SCHEMA``) into one part file at ``path``, atomically; returns its rows.
    Nothing is written when there is no row. The file is built locally (beside ``path`` on local
    disk, so the rename is atomic), so memory holds one row group, not the whole part.
    ``before_publish`` runs once every table was read, before the part becomes visible (also when
    there is no row): compaction stores what must outlive the journals there."""
    if is_local(fs):
        directory, name = os.path.split(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex[:8]}.tmp")
    else:
        fd, tmp = tempfile.mkstemp(prefix="linkai-part-", suffix=PART_SUFFIX)
        os.close(fd)
    rows, buffer = 0, []
    try:
        schema = SCHEMA.with_metadata({**(SCHEMA.metadata or {}), **(metadata or {})})
        with pq.ParquetWriter(tmp, schema, compression="snappy") as writer:
            for table in tables:
                buffer.append(table.replace_schema_metadata(None))
                rows += table.num_rows
                if sum(t.num_rows for t in buffer) >= ROW_GROUP_ROWS:  # few, large row groups for readers
                    writer.write_table(pa.concat_tables(buffer))
                    buffer = []
            if buffer:
                writer.write_table(pa.concat_tables(buffer))
        if before_publish is not None:
            before_publish()
        if rows:
            publish_file(fs, tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return rows


def part_files(fs: AbstractFileSystem, root: str) -> list[str]:
    """Every visible ``*.parquet`` under ``root`` (hidden and ``_``-prefixed names skipped)."""
    return sorted(scan(fs, root).parts)


def _tables(
    fs: AbstractFileSystem, files: list[str], columns: list[str] | None, filters: Any = None
) -> Iterator[pa.Table]:
    """The parts (or journal segments) as tables. Remote files are fetched whole, a batch at a time
    (fsspec fetches a batch concurrently), and parsed from memory: pyarrow's own reads through an
    s3fs wrapper left threads behind that could abort the process at exit."""
    if is_local(fs):
        for path in files:
            with open(path, "rb") as fh:
                yield _read_table(fh.read(), columns, filters)
        return
    for start in range(0, len(files), READ_BATCH):
        blobs = fs.cat(files[start : start + READ_BATCH])
        for path in files[start : start + READ_BATCH]:
            yield _read_table(blobs[path], columns, filters)


_FOOTER_GUESS = 64 * 1024


def read_columns(
    fs: AbstractFileSystem, parts: Mapping[str, int], columns: list[str], filters: Any = None
) -> Iterator[tuple[str, pa.Table]]:
    """``(path, table)`` of each part (path -> size, as listed) with only ``columns`` read: on local disk
    by pyarrow, on object stores by fetching the footer and then only those columns' chunks (a batch of
    parts at a time, concurrently, through fsspec), placed at their offsets in an otherwise empty buffer
    of the file's size, which pyarrow then parses. A part's text never crosses the network to answer a
    question about its keys. ``columns`` must include those ``filters`` name."""
    paths = list(parts)
    if is_local(fs):
        for path in paths:
            yield path, pq.read_table(path, columns=columns, filters=filters, schema=SCHEMA, use_threads=False)
        return
    for start in range(0, len(paths), COLUMN_READ_BATCH):
        batch = paths[start : start + COLUMN_READ_BATCH]
        sizes = [int(parts[p]) for p in batch]
        tails = fs.cat_ranges(batch, [max(0, n - _FOOTER_GUESS) for n in sizes], sizes)
        buffers: list[pa.Buffer] = []
        wanted: list[tuple[int, int, int]] = []  # (batch index, start, end)
        for i, (path, size, tail) in enumerate(zip(batch, sizes, tails, strict=True)):
            if isinstance(tail, BaseException):
                raise tail
            tail = bytes(tail)
            footer = int.from_bytes(tail[-8:-4], "little") + 8 if len(tail) >= 8 else size
            if tail[-4:] != b"PAR1":
                raise ValueError(f"{fs.unstrip_protocol(path)} is not a Parquet file")
            if footer > len(tail):
                tail = bytes(fs.cat_file(path, start=size - footer, end=size))
            buffer = pa.allocate_buffer(size)  # Arrow's allocator maps it lazily: unwritten pages cost nothing
            memoryview(buffer).cast("B")[size - len(tail) :] = tail
            buffers.append(buffer)
            meta = pq.read_metadata(pa.BufferReader(b"PAR1" + tail[-footer:]))
            for rg in range(meta.num_row_groups):
                group = meta.row_group(rg)
                for c in range(group.num_columns):
                    chunk = group.column(c)
                    if chunk.path_in_schema.split(".", 1)[0] in columns:
                        first = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
                        wanted.append((i, first, first + chunk.total_compressed_size))
        if wanted:
            blobs = fs.cat_ranges(
                [batch[i] for i, _, _ in wanted], [a for _, a, _ in wanted], [b for _, _, b in wanted]
            )
            for (i, a, b), blob in zip(wanted, blobs, strict=True):
                if isinstance(blob, BaseException):
                    raise blob
                memoryview(buffers[i]).cast("B")[a:b] = blob
        for path, buffer in zip(batch, buffers, strict=True):
            reader = pa.BufferReader(buffer)
            yield path, pq.read_table(reader, columns=columns, filters=filters, schema=SCHEMA, use_threads=False)


def _read_table(data: bytes, columns: list[str] | None, filters: Any = None) -> pa.Table:
    """A part (Parquet) or a journal segment (an Arrow IPC stream: no encoding to pay per write)."""
    if data[:4] == b"PAR1":
        # Small files, parsed in this thread: no pyarrow thread pool left running at interpreter exit.
        return pq.read_table(pa.BufferReader(data), columns=columns, filters=filters, schema=SCHEMA, use_threads=False)
    table = conform(pa.ipc.open_stream(pa.BufferReader(data)).read_all())
    for column, op, value in filters or ():
        assert op == "=", f"unsupported filter {op!r}"  # the only filter this module passes
        table = table.filter(pc.equal(table[column], value))
    return table.select(columns) if columns else table


def conform(table: pa.Table) -> pa.Table:
    """``table`` (rows of any schema version) as :data:`SCHEMA`: columns added since are null, nested
    fields added since (``segments.channel``) are null. Parquet reads get this from ``schema=SCHEMA``;
    journal segments written by an older version before an upgrade come through here."""
    if table.schema.remove_metadata().equals(SCHEMA.remove_metadata()):
        return table
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def encode_segment(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows as a journal segment: an Arrow IPC stream with :data:`SCHEMA`. A few rows encode in about
    15 µs (a Parquet file of the same rows: 0.4 ms, footer and all), while answers wait for the GIL."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(pa.Table.from_pylist(list(rows), schema=SCHEMA))
    return sink.getvalue().to_pybytes()


def completed_keys(fs: AbstractFileSystem, root: str) -> set[tuple[str, str]]:
    """``(source_uri, source_fingerprint)`` of every ``ok`` row under ``root`` (any depth), in visible
    parts and in every journal, alive or dead: a row answered before a kill, or by a writer still
    running, is never sent again. Reads two columns of the ok rows only."""
    ok = [("status", "=", STATUS_OK)]
    for attempt in range(_LIST_ATTEMPTS):
        listing = scan(fs, root)
        keys: set[tuple[str, str]] = set()
        try:
            for table in _tables(fs, [*listing.parts, *listing.segments()], ["source_uri", "source_fingerprint"], ok):
                keys.update(zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True))
        except FileNotFoundError:
            # A journal was compacted and deleted while we read it: its rows are in a part now.
            if attempt == _LIST_ATTEMPTS - 1:
                raise
            continue
        return keys
    raise AssertionError("unreachable")


def read_rows(
    fs: AbstractFileSystem, root: str, columns: Iterable[str] | None = None, *, journals: bool = False
) -> pa.Table:
    """The visible dataset as one table (for tests and small summaries; analytics should use DuckDB).
    ``journals=True`` adds the rows still in journals (what a reader does not see yet)."""
    listing = scan(fs, root)
    files = sorted(listing.parts) + (listing.segments() if journals else [])
    tables = list(_tables(fs, files, list(columns) if columns else None))
    if not tables:
        return SCHEMA.empty_table() if columns is None else SCHEMA.empty_table().select(list(columns))
    return pa.concat_tables(tables)
