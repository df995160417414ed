"""Shards: one task instance's slice of a large input, with no list of files travelling through XCom.

A shard is ``(index, count)``. Its files come one of two ways (``docs/scaling.md`` has the figures):

* **By hash** (no ``manifest``): the shard lists the source itself and keeps the files whose
  :func:`shard_of` (a stable hash of ``source_uri``) is its index. Nothing to store and no listing
  task, but every shard pays for the whole listing: on S3 one ``ListObjectsV2`` call per 1,000 keys
  and the CPU to parse them, so ``count`` times the listing in all.
* **By manifest**: one task lists the source once and writes a Parquet manifest
  (:func:`write_manifest`), one row group per shard, files dealt round-robin in URI order; each shard
  reads the footer and its own row group (:func:`read_shard`): a few range reads whatever the size
  of the night. Manifests live in the dataset's hidden ``_linkai/manifests/`` folder and are not
  named ``*.parquet``, so no dataset reader or glob ever sees them.

Either way the slices of ``count`` shards are disjoint and together hold every listed file once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import split_protocol

from linkai_provider.io.sources import AudioFile, Entry, Listing, iter_files, list_audio
from linkai_provider.io.storage import resolve

log = logging.getLogger(__name__)

MANIFESTS = "_linkai/manifests"  # under the dataset root, beside the journals (see staging.py)
MANIFEST_SUFFIX = ".manifest"  # Parquet inside; not *.parquet so that no reader's glob picks it up
MANIFEST_KEY = b"linkai.manifest"
MANIFEST_VERSION = 1
MAX_SHARDS = 4096
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("size", pa.int64(), nullable=False),
        pa.field("fingerprint", pa.string(), nullable=False),
        pa.field("audio_format", pa.dictionary(pa.int8(), pa.string())),  # null: not one of the ten formats
    ]
)
_BATCH_ROWS = 65_536
_KEEP_DAYS = 7


class ManifestError(ValueError):
    """A manifest that cannot be read, or that does not fit the shard asked of it."""


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` of ``count`` (0-based)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        check_shard(self.index, self.count)

    def holds(self, uri: str) -> bool:
        return shard_of(uri, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_shard(index: Any, count: Any, *, manifest: bool = False) -> None:
    """Raise ``ValueError`` naming what is wrong with a shard's ``index``/``count`` (None allowed where
    the manifest says the count)."""
    if index is None and count is None:
        if manifest:
            raise ValueError("manifest needs shard_index: which of the manifest's shards this task sends")
        return
    if index is None:
        raise ValueError(f"shard_count={count!r} needs shard_index (0 <= shard_index < shard_count)")
    if count is None and not manifest:
        raise ValueError(f"shard_index={index!r} needs shard_count (or a manifest, which knows it)")
    for name, value in (("shard_index", index), ("shard_count", count)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if count is not None and not 1 <= count <= MAX_SHARDS:
        raise ValueError(f"shard_count must be between 1 and {MAX_SHARDS}, got {count}")
    if index < 0 or (count is not None and index >= count):
        raise ValueError(f"shard_index must be >= 0 and < shard_count ({count}), got {index}")


def as_int(value: Any, name: str) -> int | None:
    """A rendered template (``"3"``) or an int as an int; None stays None; anything else is an error."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    raise ValueError(f"{name} must be an integer, got {value!r}")


def shard_of(uri: str, count: int) -> int:
    """A file's shard by hash: the same for the same ``source_uri`` in every process and release."""
    digest = hashlib.blake2b(uri.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class ShardArgs:
    """The operator's (or the CLI's) shard arguments, rendered and checked."""

    index: int | None
    count: int | None
    manifest: str | None

    @property
    def initial_concurrency(self) -> int | None:
        """Where a shard's slow start begins: at one, climbing by one per clean answer (doubling every
        round trip), since its siblings start at the same moment against the same limit; None (the
        scheduler's default) when the task is not a shard."""
        return None if self.index is None else 1

    @classmethod
    def parse(cls, index: Any, count: Any, manifest: Any) -> ShardArgs:
        manifest = manifest or None
        if manifest is not None and not isinstance(manifest, str):
            raise ValueError(f"manifest must be a URL string, got {manifest!r}")
        args = cls(as_int(index, "shard_index"), as_int(count, "shard_count"), manifest)
        check_shard(args.index, args.count, manifest=manifest is not None)
        return args

    def lister(
        self, source: str | Sequence[str], source_conn_id: str | None, manifest_conn_id: str | None
    ) -> Callable[[], Listing] | None:
        """What lists this shard's files for :class:`~linkai_provider.batch.Batch` (None: the whole source)."""
        index, count, manifest = self.index, self.count, self.manifest
        if index is None:
            return None
        if manifest is not None:
            return lambda: read_shard(
                manifest, index, shard_count=count, conn_id=manifest_conn_id, source_conn_id=source_conn_id
            )
        shard = Shard(index, count or 1)

        def by_hash() -> Listing:
            listing = list_audio(source, source_conn_id, keep=shard.holds)
            listing.shard = str(shard)
            return listing

        return by_hash


def may_be_template(value: Any) -> bool:
    """A value Airflow renders at run time (so it cannot be checked when the DAG is parsed)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


# -- the manifest ---------------------------------------------------------------------------------------
def manifest_url(dataset_root: str, dag_id: str, run_id: str) -> str:
    """Where a run's manifest goes: the dataset's hidden folder, one new name per listing."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dag_id}.{run_id}")[:120].strip("._") or "run"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{dataset_root.rstrip('/')}/{MANIFESTS}/{stamp}-{name}-{uuid.uuid4().hex[:8]}{MANIFEST_SUFFIX}"


@dataclass(frozen=True)
class ManifestSummary:
    """What a listing task returns to XCom: counts, never file names."""

    manifest: str
    shards: int
    files_found: int
    audio_files: int
    unsupported: int
    smallest_shard: int
    largest_shard: int
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _batches(entries: Iterator[Entry]) -> Iterator[pa.RecordBatch]:
    """The listing in Arrow batches: a string costs its bytes plus 4, not a Python object each."""
    cols: tuple[list[str], list[int], list[str], list[str | None]] = ([], [], [], [])
    for e in entries:
        cols[0].append(e.uri)
        cols[1].append(e.size)
        cols[2].append(e.fingerprint)
        cols[3].append(e.audio_format)
        if len(cols[0]) >= _BATCH_ROWS:
            yield _batch(cols)
            cols = ([], [], [], [])
    if cols[0]:
        yield _batch(cols)


def _batch(cols: tuple[list[str], list[int], list[str], list[str | None]]) -> pa.RecordBatch:
    fmt = pa.array(cols[3], pa.string()).dictionary_encode().cast(MANIFEST_SCHEMA.field("audio_format").type)
    return pa.RecordBatch.from_arrays(
        [pa.array(cols[0], pa.string()), pa.array(cols[1], pa.int64()), pa.array(cols[2], pa.string()), fmt],
        schema=MANIFEST_SCHEMA,
    )


def _order(table: pa.Table, dedupe: bool) -> pa.Array:
    """Row numbers of ``table`` in URI order, each URI once when ``dedupe`` (overlapping sources list a
    file twice). Indices only: the listing is never copied whole."""
    order = pc.sort_indices(table, sort_keys=[("source_uri", "ascending")])
    if dedupe and len(order) > 1:
        uris = table.column("source_uri").take(order).combine_chunks()
        first = pa.concat_arrays([pa.array([True]), pc.not_equal(uris.slice(1), uris.slice(0, len(uris) - 1))])
        order = order.filter(first)
    return order


def _every(rows: pa.Array, start: int, step: int) -> pa.Array:
    """``rows[start::step]``."""
    return rows.take(pa.array(range(start, len(rows), step), pa.int64()))


def write_manifest(
    sources: str | Sequence[str],
    url: str,
    shard_count: int,
    *,
    source_conn_id: str | None = None,
    manifest_conn_id: str | None = None,
    shrink: bool = True,
) -> ManifestSummary:
    """List ``sources`` once and write the manifest of ``shard_count`` shards to ``url``.

    Row group *i* holds shard *i*'s files: the audio files dealt round-robin in URI order, so shards
    differ by at most one file (other files, counted but never sent, dealt the same way). ``shrink``:
    fewer shards when there are fewer audio files than shards (a shard with nothing to send is a task
    for nothing). Memory: the listing as Arrow columns and its sort order, about 200 bytes a file.
    """
    check_shard(0, shard_count)
    table = pa.Table.from_batches(list(_batches(iter_files(sources, source_conn_id))), MANIFEST_SCHEMA)
    order = _order(table, dedupe=not isinstance(sources, str) and len(sources) > 1)
    is_audio = table.column("audio_format").combine_chunks().is_valid().take(order)
    audio_rows, other_rows = order.filter(is_audio), order.filter(pc.invert(is_audio))
    n, audio = len(order), len(audio_rows)
    if shrink:
        shard_count = max(1, min(shard_count, audio))
    meta = {
        "version": MANIFEST_VERSION,
        "shard_count": shard_count,
        "files": n,
        "audio_files": audio,
        "sources": [sources] if isinstance(sources, str) else [str(s) for s in sources],
        "written_at": datetime.now(timezone.utc).isoformat(),
    }
    schema = MANIFEST_SCHEMA.with_metadata({MANIFEST_KEY: json.dumps(meta).encode()})
    fs, path = resolve(url, manifest_conn_id)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    sizes = []
    with fs.open(path, "wb") as fh, pq.ParquetWriter(fh, schema, compression="zstd") as writer:
        for index in range(shard_count):
            mine = _every(audio_rows, index, shard_count)
            sizes.append(len(mine))
            rows = table.take(pa.concat_arrays([mine, _every(other_rows, index, shard_count)]))
            writer.write_table(rows.replace_schema_metadata(schema.metadata), row_group_size=max(1, rows.num_rows))
    summary = ManifestSummary(
        manifest=fs.unstrip_protocol(path),
        shards=shard_count,
        files_found=n,
        audio_files=audio,
        unsupported=n - audio,
        smallest_shard=min(sizes),
        largest_shard=max(sizes),
        bytes=int(fs.size(path) or 0),
    )
    log.info(
        "Manifest %s: %d file(s) (%d audio) in %d shard(s) of %d-%d audio files, %d bytes",
        summary.manifest,
        n,
        audio,
        shard_count,
        summary.smallest_shard,
        summary.largest_shard,
        summary.bytes,
    )
    return summary


def read_shard(
    url: str,
    index: int,
    *,
    shard_count: int | None = None,
    conn_id: str | None = None,
    source_conn_id: str | None = None,
) -> Listing:
    """Shard ``index``'s files from the manifest at ``url``: the footer and one row group, read as byte
    ranges (no read-ahead of the rest of the file). Source files get their filesystem from ``source_conn_id``."""
    fs, path = resolve(url, conn_id)
    try:
        fh = fs.open(path, "rb", cache_type="none")
    except FileNotFoundError:
        raise ManifestError(
            f"manifest {url!r} does not exist (removed after its run finished?): list the input again"
        ) from None
    with fh:
        try:
            pf = pq.ParquetFile(fh)
            meta = json.loads((pf.schema_arrow.metadata or {})[MANIFEST_KEY])
        except (pa.ArrowException, KeyError, ValueError) as exc:
            raise ManifestError(f"{url!r} is not a LinkAI manifest: {exc}") from exc
        count = int(meta["shard_count"])
        if shard_count is not None and shard_count != count:
            raise ManifestError(f"manifest {url!r} has {count} shard(s), but shard_count={shard_count}")
        check_shard(index, count)
        if pf.num_row_groups != count:
            raise ManifestError(f"manifest {url!r} has {pf.num_row_groups} row groups for {count} shards")
        table = pf.read_row_group(index, use_threads=False)
    listing = _listing(table, source_conn_id)
    listing.shard = f"{index}/{count}"
    return listing


def _listing(table: pa.Table, source_conn_id: str | None) -> Listing:
    filesystems: dict[str, AbstractFileSystem] = {}
    files: list[AudioFile] = []
    unsupported: list[str] = []
    formats = table.column("audio_format").cast(pa.string()).to_pylist()
    uris = table.column("source_uri").to_pylist()
    for uri, size, fingerprint, fmt in zip(
        uris, table.column("size").to_pylist(), table.column("fingerprint").to_pylist(), formats, strict=True
    ):
        if fmt is None:
            unsupported.append(uri)
            continue
        protocol = split_protocol(uri)[0] or "file"
        fs = filesystems.get(protocol)
        if fs is None:
            fs = filesystems[protocol] = resolve(uri, source_conn_id)[0]
        files.append(AudioFile(uri, fs._strip_protocol(uri), size, fingerprint, fmt, fs))
    return Listing(files=files, unsupported=unsupported)


def remove_manifest(url: str, conn_id: str | None = None) -> bool:
    """Delete a manifest whose shards are all done; True if it was there."""
    fs, path = resolve(url, conn_id)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return False
    return True


def sweep_manifests(dataset_root: str, conn_id: str | None = None, keep_days: float = _KEEP_DAYS) -> int:
    """Remove manifests older than ``keep_days`` (runs whose shards failed and were never retried)."""
    fs, root = resolve(f"{dataset_root.rstrip('/')}/{MANIFESTS}", conn_id)
    try:
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        return 0
    cutoff = (datetime.now(timezone.utc) - timedelta(days=keep_days)).strftime("%Y%m%dT%H%M%S")
    removed = 0
    for info in entries:
        name = info["name"].rsplit("/", 1)[-1]
        if name.endswith(MANIFEST_SUFFIX) and name[:15] < cutoff:
            try:
                fs.rm_file(info["name"])
                removed += 1
            except FileNotFoundError:
                pass
    return removed


__all__ = [
    "MANIFESTS",
    "ManifestError",
    "ManifestSummary",
    "Shard",
    "ShardArgs",
    "as_int",
    "check_shard",
    "manifest_url",
    "may_be_template",
    "read_shard",
    "remove_manifest",
    "shard_of",
    "sweep_manifests",
    "write_manifest",
]
