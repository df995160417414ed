"""Planning a batch: what is already done, what this run sends within its budgets, and the summary.

**What is done** (:func:`done_keys`) is asked of the key index (:mod:`linkai_provider.keyindex`) for
this run's listed keys only: the index groups whose folder prefix is an ancestor of a listed file, the
parts that have no index yet (read by column, then indexed), and every journal. Its cost follows the
listing and the folders it touches, not the dataset's history.

Budgets (``max_files``, ``max_audio_seconds``) take files in listing order until the next one would
pass the budget; the rest are *held back* for the next run (incremental). A budget by audio seconds
needs each file's duration before anything is sent: the header tells for nine formats, PyAV's demuxer
for MPEG program streams and for headers that claim more than the file holds. A file whose duration
still cannot be read holds no audio PyAV can read: it is sent on (refused before any request, a failed
row); without PyAV it is held back (it cannot be priced), named in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from linkai_provider import dataset, keyindex
from linkai_provider.io.audio import audio_checks, measure_duration
from linkai_provider.io.sources import AudioFile, Listing
from linkai_provider.pipeline import BatchResult
from linkai_provider.staging import Listing as StoreListing
from linkai_provider.staging import scan

log = logging.getLogger(__name__)

PROBE_THREADS = 16
Key = tuple[str, str]
_KEY_COLUMNS = ["source_uri", "source_fingerprint", "status"]
_OK = [("status", "=", dataset.STATUS_OK)]


@dataclass(frozen=True)
class Budget:
    max_files: int | None = None
    max_audio_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_files is not None and self.max_files < 0:
            raise ValueError(f"max_files must be >= 0 or None, got {self.max_files}")
        if self.max_audio_seconds is not None and self.max_audio_seconds < 0:
            raise ValueError(f"max_audio_seconds must be >= 0 or None, got {self.max_audio_seconds}")

    @property
    def active(self) -> bool:
        return self.max_files is not None or self.max_audio_seconds is not None


@dataclass
class Plan:
    listing: Listing
    todo: list[AudioFile]  # sent this run, in listing order
    already_done: int = 0
    held_back: list[AudioFile] = field(default_factory=list)
    unpriced: list[AudioFile] = field(default_factory=list)  # held back: duration unknown under a seconds budget
    durations: dict[str, float | None] = field(default_factory=dict)  # by uri, when probed

    @property
    def audio_seconds(self) -> float:
        """Audio seconds of ``todo`` whose duration is known (probed plans only)."""
        return sum(self.durations.get(f.uri) or 0.0 for f in self.todo)


@dataclass
class KeyCheck:
    """What one check read: figures for logs and benchmarks."""

    parts: int = 0
    index_files_read: int = 0
    parts_read: int = 0  # no index: read by column (and indexed, when allowed)
    indexed: int = 0
    segments_read: int = 0


class KeyIndex:
    """The index of every part one listing shows, and the journals beside them."""

    def __init__(self, fs: AbstractFileSystem, listing: StoreListing) -> None:
        self.fs, self.listing = fs, listing
        self.stats = KeyCheck(parts=len(listing.parts))
        self._parts = keyindex.parse(listing)
        self._cache: dict[str, pa.Table] = {}  # index files read (they never change): asked again, not read

    def done(
        self,
        keys: Collection[Key],
        *,
        build: bool = False,
        found: set[Key] | None = None,
        checked: set[str] | None = None,
    ) -> set[Key]:
        """The ``keys`` with an ``ok`` row in a listed part or in a journal. ``build``: write the index of
        every part read without one, so the next check need not read it. To resume a check whose
        journal vanished: ``found``, the keys known done already, is added to as parts are read, and
        ``checked``, the parts matched already (parts never change), is skipped and then added to."""
        done = found if found is not None else set()
        wanted = set(keys) - done
        if not wanted:
            return done
        uris = pa.array(sorted({u for u, _ in wanted}), pa.string())
        todo = {p: n for p, n in self.listing.parts.items() if checked is None or p not in checked}
        for _, table in self._tables(todo, uris, build=build, groups=keyindex.wanted_hashes):
            done |= _matches(table, uris, wanted)
        if checked is not None:
            checked.update(todo)
        segments = self.listing.segments()
        for table in dataset._tables(self.fs, segments, _KEY_COLUMNS, _OK):
            done |= _matches(table, uris, wanted)
        self.stats.segments_read += len(segments)
        return done

    def parts_holding(self, uris: Collection[str], *, build: bool = False) -> dict[str, set[str]]:
        """Visible part -> the ``uris`` it holds a row of (any status): where a file's rows are."""
        wanted = pa.array(sorted(set(uris)), pa.string())
        found: dict[str, set[str]] = {}
        if len(wanted):
            for part, table in self._tables(self.listing.parts, wanted, build=build, groups=keyindex.wanted_hashes):
                hits = table.filter(pc.is_in(table["source_uri"], value_set=wanted))["source_uri"].to_pylist()
                if hits:
                    found.setdefault(part, set()).update(hits)
        return found

    def uris_in(self, parts: Collection[str], *, build: bool = False) -> set[str]:
        """Every ``source_uri`` with a row in ``parts`` (listed part paths)."""
        chosen = {p: self.listing.parts[p] for p in parts}
        uris: set[str] = set()
        for _, table in self._tables(chosen, None, build=build, groups=None):
            uris.update(table["source_uri"].to_pylist())
        return uris

    def _tables(
        self,
        parts: dict[str, int],
        uris: pa.Array | None,
        *,
        build: bool,
        groups: Callable[[Iterable[str]], set[str]] | None,
    ) -> Iterator[tuple[str, pa.Table]]:
        """``(part, table of (source_uri, source_fingerprint, status))`` for every part of ``parts``: from
        its index (only the groups ``groups(uris)`` names; every group when ``groups`` is None), or read
        by column when it has none."""
        hashes = groups(uris.to_pylist()) if groups is not None and uris is not None else None
        to_read: list[tuple[str, str]] = []
        unindexed: dict[str, int] = {}
        for part, size in parts.items():
            folder, name = part.rsplit("/", 1)
            entry = self._parts.get((folder, name[: -len(dataset.PART_SUFFIX)]))
            found = entry.complete() if entry is not None else None
            if found is None:
                unindexed[part] = size
            else:
                to_read += [(part, path) for h, path in found.items() if hashes is None or h in hashes]
        for part, table in self._read_index(to_read):
            if table is None:  # unreadable (a crash while it was written): read the part instead
                unindexed[part] = parts[part]
            else:
                yield part, table
        for part, table in dataset.read_columns(self.fs, unindexed, _KEY_COLUMNS):
            self.stats.parts_read += 1
            if build:
                self._build(part, table)
            yield part, table

    def _read_index(self, files: list[tuple[str, str]]) -> Iterator[tuple[str, pa.Table | None]]:
        for part, path in files:
            if path in self._cache:
                yield part, self._cache[path]
        files = [(part, path) for part, path in files if path not in self._cache]
        broken: set[str] = set()
        for start in range(0, len(files), dataset.READ_BATCH):
            batch = files[start : start + dataset.READ_BATCH]
            blobs = self.fs.cat([path for _, path in batch], on_error="return")
            for part, path in batch:
                blob = blobs.get(path)
                if isinstance(blob, BaseException) or blob is None:
                    raise blob if isinstance(blob, BaseException) else FileNotFoundError(path)
                self.stats.index_files_read += 1
                if part in broken:
                    continue
                try:
                    table = pq.read_table(pa.BufferReader(blob), use_threads=False)
                except (pa.ArrowException, OSError) as exc:
                    log.warning("Key index %s is unreadable (%s): reading its part instead", path, exc)
                    broken.add(part)
                    yield part, None
                    continue
                if len(self._cache) < 256:
                    self._cache[path] = table
                yield part, table

    def _build(self, part: str, table: pa.Table) -> None:
        try:
            dataset.write_index(self.fs, part, dataset.row_keys(table))
            self.stats.indexed += 1
        except Exception as exc:  # a read-only scope: the check still answers, the next one reads again
            log.debug("Cannot index %s: %s", part, exc)


def _matches(table: pa.Table, uris: pa.Array, wanted: set[Key]) -> set[Key]:
    """The keys of ``ok`` rows of ``table`` in ``wanted``: URIs filtered in Arrow first, so only
    matches become Python objects."""
    if table.num_rows == 0:
        return set()
    mask = pc.and_(pc.is_in(table["source_uri"], value_set=uris), pc.equal(table["status"], dataset.STATUS_OK))
    hits = table.filter(mask)
    found = zip(hits["source_uri"].to_pylist(), hits["source_fingerprint"].to_pylist(), strict=True)
    return {k for k in found if k in wanted}


def check_done(
    fs: AbstractFileSystem, root: str, keys: Collection[Key], *, build: bool = False, attempts: int = 10
) -> tuple[set[Key], KeyIndex]:
    """:func:`done_keys`, and the index it used (its listing, and figures of what it read)."""
    found: set[Key] = set()
    checked: set[str] = set()
    for attempt in range(attempts):
        index = KeyIndex(fs, scan(fs, root))
        try:
            return index.done(keys, build=build, found=found, checked=checked), index
        except FileNotFoundError:
            # A journal was compacted and deleted while we read it: its rows are in a part now, which a
            # new listing shows. Parts never change: those read already are not read again.
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def done_keys(fs: AbstractFileSystem, root: str, keys: Collection[Key], *, build: bool = False) -> set[Key]:
    """The ``keys`` already done under ``root`` (any depth): an ``ok`` row in a visible part or in a
    journal, alive or dead. Memory and reads follow ``keys`` and the history of the folders they are
    in, never the dataset's. ``build``: index the parts that have none yet (never in a dry run)."""
    return check_done(fs, root, keys, build=build)[0]


def probe_durations(files: Iterable[AudioFile], threads: int = PROBE_THREADS) -> dict[str, float | None]:
    """Each file's duration (header, or demuxing for MPEG), read concurrently (object stores: a GET each)."""

    def one(file: AudioFile) -> tuple[str, float | None]:
        try:
            with file.fs.open(file.path, "rb") as fh:
                return file.uri, measure_duration(fh, file.audio_format)
        except Exception as exc:  # unreadable now: the send will say why, the plan just can't price it
            log.debug("cannot probe %s: %s", file.uri, exc)
            return file.uri, None

    files = list(files)
    if not files:
        return {}
    with ThreadPoolExecutor(min(threads, len(files)), thread_name_prefix="linkai-probe") as pool:
        return dict(pool.map(one, files))


def plan_batch(
    listing: Listing,
    done: set[tuple[str, str]] | None,
    budget: Budget = Budget(),
    *,
    probe: bool = False,
    prober: Callable[[Iterable[AudioFile]], dict[str, float | None]] = probe_durations,
) -> Plan:
    """Drop every file whose ``(source_uri, source_fingerprint)`` is in ``done`` (``ok`` rows; failed rows
    don't count, so failed files go again), then apply the budget. ``probe`` reads every duration
    (dry runs); a seconds budget always does."""
    candidates = (
        list(listing.files) if done is None else [f for f in listing.files if (f.uri, f.fingerprint) not in done]
    )
    plan = Plan(listing, candidates, already_done=len(listing.files) - len(candidates))
    if probe or budget.max_audio_seconds is not None:
        plan.durations = prober(candidates)
    if not budget.active:
        return plan
    todo: list[AudioFile] = []
    free: list[AudioFile] = []
    seconds = 0.0
    for i, file in enumerate(candidates):
        if budget.max_files is not None and len(todo) >= budget.max_files:
            plan.held_back.extend(candidates[i:])
            break
        if budget.max_audio_seconds is not None:
            duration = plan.durations.get(file.uri)
            if duration is None and audio_checks():
                # Nothing in it demuxes as audio: it is refused before any request (a failed row,
                # free), so the budget never holds it back forever.
                free.append(file)
                todo.append(file)
                continue
            if duration is None:
                plan.unpriced.append(file)
                plan.held_back.append(file)
                continue
            if seconds + duration > budget.max_audio_seconds:
                held = {f.uri for f in plan.held_back}
                plan.held_back.extend(f for f in candidates[i:] if f.uri not in held)
                break
            seconds += duration
        todo.append(file)
    plan.todo = todo
    for file in free:
        log.warning(
            "Sending %s although max_audio_seconds cannot price it: nothing in it reads as audio, so it "
            "will be refused before any request (a failed row, nothing paid)",
            file.uri,
        )
    for file in plan.unpriced:
        log.warning(
            "Held back %s: its duration cannot be read, so max_audio_seconds cannot price it "
            "(send it in a run without max_audio_seconds)",
            file.uri,
        )
    return plan


def dry_run_report(plan: Plan, *, max_upload_bytes: int, max_chunk_seconds: float, split: bool) -> dict[str, Any]:
    """What a run would send: files, bytes, audio seconds, unknown durations, files to be split."""
    would_split = [
        f
        for f in plan.todo
        if split and (f.size > max_upload_bytes or (plan.durations.get(f.uri) or 0.0) > max_chunk_seconds)
    ]
    unknown = [f for f in plan.todo if plan.durations.get(f.uri) is None]
    return {
        "would_send": len(plan.todo),
        "would_send_bytes": sum(f.size for f in plan.todo),
        "would_send_audio_seconds": round(plan.audio_seconds, 3),
        "unknown_duration": len(unknown),
        "would_split": len(would_split),
        "would_split_files": [f.uri for f in would_split[:20]],
        "unknown_duration_files": [f.uri for f in unknown[:20]],
    }


def summarize(plan: Plan, result: BatchResult | None, destination: str, **extra: Any) -> dict[str, Any]:
    """The small summary returned to XCom (and printed by the CLI)."""
    unsupported = len(plan.listing.unsupported)
    summary: dict[str, Any] = {
        "destination": destination,
        "files_found": plan.listing.found,
        "transcribed": result.ok if result else 0,
        "skipped": plan.already_done + unsupported,
        "skipped_existing": plan.already_done,
        "skipped_unsupported": unsupported,
        "failed": result.failed if result else 0,
        "not_sent": result.not_sent if result else 0,
        "held_back": len(plan.held_back),
        "audio_seconds": round(result.audio_seconds, 3) if result else 0.0,
        "split": result.split if result else 0,
        "pieces_reused": result.pieces_reused if result else 0,
    }
    figures = result.scheduler if result is not None else {}
    for key in ("requests", "rate_limited", "concurrency", "concurrency_min"):
        summary[key] = figures.get(key, 0)
    summary.update(extra)
    return summary
