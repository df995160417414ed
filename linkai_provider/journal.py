"""A durable row journal per task try, compacted into exactly one part file when the task ends.

Finished rows are handed to :meth:`Journal.append`, which never waits on I/O: a background thread
writes every row waiting as one segment as soon as the previous write finished, so a kill loses at
most the rows of the write in progress and those answered while it ran. Answered pieces of long
recordings (:meth:`Journal.append_pieces`) go the same way, in piece segments. The same thread rewrites
``writer.json`` (the heartbeat) every ``heartbeat_seconds``. :meth:`Journal.close` writes the journal,
plus those of gone writers it adopted, as one part ``part-<writer_id>.parquet``, keeps the pieces of
files without an ``ok`` row in ``_linkai/pieces/<writer_id>.pieces`` (written first: a kill after
the part is visible must not lose them), indexes the part's ``ok`` keys, then deletes the journals.
Layout, staleness and claims: :mod:`linkai_provider.staging`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import pyarrow as pa
import tenacity
from fsspec import AbstractFileSystem

from linkai_provider import dataset, piece_store
from linkai_provider.io.storage import is_local
from linkai_provider.piece_store import PieceRecord, answered_pieces
from linkai_provider.staging import (
    JOURNALS_KEY,
    STAGING,
    WRITER_FILE,
    WriterIdentity,
    adopt_dead,
    compacted_ids,
    journal_dir,
    list_journal,
    remove_journal,
    scan,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class DestinationWriteError(OSError):
    """The dataset destination kept refusing writes for ``write_retry_seconds``."""

    def __init__(
        self, destination: str, cause: BaseException | str, *, what: str = "write", tries: int = 1,
        seconds: float = 0.0, rows_safe: int = 0, rows_unstored: int = 0,
    ) -> None:  # fmt: skip
        self.destination, self.cause, self.what = destination, cause, what
        self.tries, self.seconds, self.rows_safe, self.rows_unstored = tries, seconds, rows_safe, rows_unstored
        self.reason = reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else cause
        message = f"cannot write to {destination} ({what}): {reason} (after {tries} tries over {seconds:.0f} s)"
        if rows_safe:
            message += f"; {rows_safe} row(s) are safe in the journal, the next run makes them visible"
        if rows_unstored:
            message += f"; {rows_unstored} finished row(s) could not be stored and will be sent again"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> Any:  # keep the message across pickling; the cause may not pickle
        return (_rebuild, (self.destination, self.reason, self.what, self.tries, self.seconds,
                           self.rows_safe, self.rows_unstored))  # fmt: skip


def _rebuild(destination: str, cause: str, what: str, tries: int, seconds: float, safe: int, unstored: int) -> Any:
    return DestinationWriteError(
        destination, cause, what=what, tries=tries, seconds=seconds, rows_safe=safe, rows_unstored=unstored
    )


class CompactionResult(NamedTuple):
    part_url: str | None  # None when there was no row
    rows: int
    adopted: tuple[str, ...]  # journal ids of gone writers whose rows the part holds


@dataclass
class JournalStats:
    rows_appended: int = 0
    rows_durable: int = 0
    pieces_appended: int = 0
    pieces_durable: int = 0
    writes: int = 0  # segments written
    max_rows_per_write: int = 0
    write_failures: int = 0  # failed attempts of any write, retried or not


class Journal:
    """The journal of one writer (task try) under the dataset folder ``root``.

    :param write_retry_seconds: keep retrying a failing write this long (exponential backoff with
        jitter, ``healthy`` clear meanwhile), then set ``error`` and call ``on_fatal``.
    :param stale_after_seconds: a journal whose heartbeat is older is taken for gone. Must exceed
        twice ``heartbeat_seconds + write_retry_seconds``, so a writer that is merely retrying is never
        taken for gone.
    :param linger_seconds: after the first waiting row, wait this long for others to share its write.
    """

    def __init__(
        self,
        fs: AbstractFileSystem,
        root: str,
        identity: WriterIdentity,
        *,
        heartbeat_seconds: float = 10.0,
        stale_after_seconds: float = 120.0,
        write_retry_seconds: float = 30.0,
        claim_settle_seconds: float = 1.0,
        linger_seconds: float = 0.01,
        logger: Any = log,
    ) -> None:
        if min(heartbeat_seconds, stale_after_seconds, write_retry_seconds) <= 0 or claim_settle_seconds < 0:
            raise ValueError("heartbeat, staleness and retry periods must be > 0, claim_settle_seconds >= 0")
        if 2 * (heartbeat_seconds + write_retry_seconds) >= stale_after_seconds:
            raise ValueError(
                f"stale_after_seconds ({stale_after_seconds}) must exceed 2 × (heartbeat_seconds + "
                f"write_retry_seconds) = {2 * (heartbeat_seconds + write_retry_seconds)}: a live writer "
                "that is retrying would otherwise be taken for gone and its journal adopted"
            )
        self.fs, self.root, self.identity = fs, root.rstrip("/"), identity
        self.heartbeat_seconds, self.stale_after_seconds = heartbeat_seconds, stale_after_seconds
        self.write_retry_seconds, self.claim_settle_seconds = write_retry_seconds, claim_settle_seconds
        self.linger_seconds = linger_seconds
        self.log = logger
        self.destination = fs.unstrip_protocol(self.root)
        self.healthy = threading.Event()
        self.healthy.set()
        # Backpressure: while ``backlog_limit`` finished rows wait to be stored (a slow or unreachable
        # store), ``room`` is clear and the pipeline sends nothing new: unstorable answers are not paid for.
        self.backlog_limit: int | None = None
        self.room = threading.Event()
        self.room.set()
        self.error: DestinationWriteError | None = None
        self.on_fatal: Callable[[DestinationWriteError], None] | None = None
        self.stats = JournalStats()
        self.adopted: list[str] = []
        self.forfeited: list[str] = []  # own journals left for adoption (see _rotate)
        self._cond = threading.Condition()
        self._pending: list[Mapping[str, Any]] = []
        self._busy = 0  # rows taken by the thread, not yet durable
        self._pending_pieces: list[PieceRecord] = []
        self._busy_pieces = 0
        self._state = "new"  # new -> open -> closing -> closed
        self._stopping = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0
        self._last_beat = 0.0  # monotonic time of the last heartbeat that reached the store
        self._footers: dict[str, list[str]] = {}
        self._result: CompactionResult | None = None

    @property
    def dir(self) -> str:
        return journal_dir(self.root, self.identity.writer_id)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """Write then delete a probe in the staging area, so a bad destination fails before any upload."""
        probe = f"{self.root}/{STAGING}/.probe-{uuid.uuid4().hex}"
        try:
            if is_local(self.fs):  # object stores have no folders; makedirs there could create a bucket
                self.fs.makedirs(f"{self.root}/{STAGING}", exist_ok=True)
            self.fs.pipe_file(probe, b"")
            self.fs.rm_file(probe)
        except Exception as exc:
            raise PermissionError(f"destination {self.destination!r} is not writable: {exc}") from exc

    def open(self) -> None:
        """Write ``writer.json``, start the writer thread, adopt the journals of gone writers."""
        if self._state != "new":
            raise RuntimeError(f"journal {self.identity.writer_id} was already opened")
        self._retry("writer.json", self._write_heartbeat)  # first: a journal is never without its writer
        _encode_segment([_WARM_UP_ROW])  # pyarrow's first encode takes ~200 ms (imports): not while rows wait
        self._state = "open"
        self._thread = threading.Thread(target=self._run, name=f"linkai-journal-{self.identity.writer_id}", daemon=True)
        self._thread.start()
        try:
            self.adopted = self._retry("adopting journals", self._adopt)
        except BaseException:
            self._halt()
            raise

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Hand finished rows to the writer thread; never waits on I/O."""
        if not rows:
            return
        with self._cond:
            if self._state != "open":
                raise RuntimeError(f"journal {self.identity.writer_id} is {self._state}, cannot append")
            self._pending.extend(rows)
            self.stats.rows_appended += len(rows)
            if self.backlog_limit and len(self._pending) + self._busy >= self.backlog_limit:
                self.room.clear()
            self._cond.notify_all()

    def append_pieces(self, records: Sequence[PieceRecord]) -> None:
        """Hand answered pieces to the writer thread; never waits on I/O. Durable within moments, with
        the guarantees of rows: a kill loses at most those of the write in progress."""
        if not records:
            return
        with self._cond:
            if self._state != "open":
                raise RuntimeError(f"journal {self.identity.writer_id} is {self._state}, cannot append pieces")
            self._pending_pieces.extend(records)
            self.stats.pieces_appended += len(records)
            self._cond.notify_all()

    def _waiting(self) -> bool:
        return bool(self._pending or self._busy or self._pending_pieces or self._busy_pieces)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every appended row and piece is durable; raises ``error`` if writes failed for good."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._waiting() and self.error is None:
                left = None if deadline is None else deadline - time.monotonic()
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError(f"journal {self.identity.writer_id} is {self._state}: rows cannot be flushed")
                if left is not None and left <= 0:
                    raise TimeoutError(
                        f"{len(self._pending) + self._busy} row(s) and {len(self._pending_pieces) + self._busy_pieces} "
                        f"piece(s) not yet durable in {self.dir}"
                    )
                self._cond.wait(left)
        if self.error is not None:
            raise self.error

    def close(self) -> CompactionResult:
        """Compact the own journal and every adopted one into one part, then delete them."""
        if self._result is not None:
            return self._result
        try:
            self.flush()
            with self._cond:
                self._state = "closing"  # the thread keeps the heartbeat going while we compact
            self.adopted += self._retry("adopting journals", self._adopt)
            result, compacted = self._retry("compacting into a part", self._compact)
        except BaseException:
            self._halt()  # the journal stays; with no heartbeat it is adopted by the next run
            raise
        self._halt()
        for wid in compacted:
            try:
                remove_journal(self.fs, self.root, wid)
            except Exception as exc:  # the part lists it: the next writer deletes it as garbage
                self.log.warning("Journal %s is in %s but could not be deleted: %s", wid, result.part_url, exc)
        self._result = result
        return result

    def abort(self) -> None:
        """Stop the writer thread without compacting; rows not yet durable are dropped."""
        self._abort.set()
        self._halt()

    def _halt(self) -> None:
        with self._cond:
            self._stopping = True
            self._state = "closed"
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # -- the writer thread -------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                with self._cond:
                    while not self._pending and not self._pending_pieces and not self._stopping:
                        left = self._last_beat + self.heartbeat_seconds - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    if (self._pending or self._pending_pieces) and not self._stopping and self.linger_seconds > 0:
                        # Rows that finish together share a write: a few ms here spares the GIL (and the
                        # store) one Parquet encode per answer, for a few rows more at risk in a crash.
                        self._cond.wait(self.linger_seconds)
                    rows, self._pending = self._pending, []
                    pieces, self._pending_pieces = self._pending_pieces, []
                    self._busy, self._busy_pieces = len(rows), len(pieces)
                    closing = self._state == "closing"
                if pieces:  # before the rows: a kill between the two leaves a file's pieces, never a row alone
                    try:
                        self._write_pieces(pieces)
                    except BaseException:
                        with self._cond:
                            self._pending[:0] = rows
                        raise
                if rows:
                    self._write_segment(rows)
                if time.monotonic() - self._last_beat >= self.heartbeat_seconds and not self._abort.is_set():
                    self._heartbeat(closing)
                with self._cond:
                    self._busy = self._busy_pieces = 0
                    if not self.backlog_limit or len(self._pending) < self.backlog_limit:
                        self.room.set()
                    self._cond.notify_all()
                    if self._stopping and not self._pending and not self._pending_pieces:
                        return
        except DestinationWriteError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must not leave the pipeline waiting for rows forever
            self._fail(DestinationWriteError(self.destination, exc, what="journal thread"))

    def _fail(self, exc: DestinationWriteError) -> None:
        self.healthy.clear()
        self.log.error("%s", exc)
        try:
            if self.on_fatal is not None:
                self.on_fatal(exc)  # before waking flush(): the batch is cancelled by the time it raises
        finally:
            with self._cond:
                self.error = exc
                self._busy = self._busy_pieces = 0
                self._cond.notify_all()

    def _write_segment(self, rows: list[Mapping[str, Any]]) -> None:
        try:
            self._write_file("seg-{:08d}.rows", _encode_segment(rows))
        except BaseException:
            with self._cond:
                self._pending[:0] = rows  # kept in memory: counted as unstored in the error
            raise
        with self._cond:
            self.stats.rows_durable += len(rows)
            self.stats.writes += 1
            self.stats.max_rows_per_write = max(self.stats.max_rows_per_write, len(rows))

    def _write_pieces(self, records: list[PieceRecord]) -> None:
        try:
            self._write_file("pcs-{:08d}.pieces", piece_store.encode(records))
        except BaseException:
            with self._cond:
                self._pending_pieces[:0] = records
            raise
        with self._cond:
            self.stats.pieces_durable += len(records)

    def _write_file(self, pattern: str, data: bytes) -> None:
        if time.monotonic() - self._last_beat > self.stale_after_seconds / 2:
            self._rotate("no heartbeat reached the store for half the staleness period")
        self._seq += 1
        path = f"{self.dir}/{pattern.format(self._seq)}"
        self._retry(f"journal segment {path.rsplit('/', 1)[-1]}", lambda: dataset._atomic_write(self.fs, path, data))

    def _heartbeat(self, closing: bool) -> None:
        # While closing, close() itself checks that the journal is still its own before compacting.
        if not closing and time.monotonic() - self._last_beat > self.stale_after_seconds / 2:
            self._rotate("no heartbeat reached the store for half the staleness period")
            return
        self._retry("heartbeat", self._write_heartbeat)
        if not closing and self._retry("listing claims", self._foreign_claims):
            self._rotate("another writer claimed it")

    def _write_heartbeat(self) -> None:
        dataset._atomic_write(self.fs, f"{self.dir}/{WRITER_FILE}", self.identity.to_json(time.time()))
        self._last_beat = time.monotonic()

    def _foreign_claims(self) -> list[str]:
        return list_journal(self.fs, self.root, self.identity.writer_id, prefix="claim-").claimants

    def _rotate(self, reason: str) -> None:
        """Leave the current journal to whoever adopts it and go on in a new one. Another writer
        may take this writer for gone (it was frozen, or a later try of it runs): writing on would
        put the same rows in two parts."""
        old = self.identity.writer_id
        self.forfeited.append(old)
        self.identity = self.identity.renewed()
        self._seq = 0
        self._retry("writer.json", self._write_heartbeat)
        self.log.warning("Journal %s left for adoption (%s); continuing in %s", old, reason, self.identity.writer_id)

    # -- retries -------------------------------------------------------------------------------------------
    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        started = time.monotonic()

        def failed(state: tenacity.RetryCallState) -> None:
            self.stats.write_failures += 1
            if self.healthy.is_set():
                self.healthy.clear()
                exc = state.outcome.exception() if state.outcome else None
                self.log.warning("Writing to %s failed (%s: %s); retrying, no new requests meanwhile",
                                 self.destination, what, exc)  # fmt: skip

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_delay(self.write_retry_seconds) | tenacity.stop_when_event_set(self._abort),
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.3),
            sleep=self._pause,
            before_sleep=failed,
            reraise=True,
        )
        try:
            result = retrying(fn)
        except Exception as exc:
            self.stats.write_failures += 1
            with self._cond:
                unstored = len(self._pending) + self._busy
            raise DestinationWriteError(
                self.destination, exc, what=what, tries=int(retrying.statistics.get("attempt_number", 1)),
                seconds=time.monotonic() - started, rows_safe=self.stats.rows_durable, rows_unstored=unstored,
            ) from exc  # fmt: skip
        if not self.healthy.is_set() and self.error is None:
            self.healthy.set()
            self.log.info("Writing to %s works again after %.1f s", self.destination, time.monotonic() - started)
        return result

    def _pause(self, seconds: float) -> None:
        self._abort.wait(seconds)  # abort() ends a backoff at once

    # -- adoption and compaction ---------------------------------------------------------------------------
    def _adopt(self) -> list[str]:
        return adopt_dead(
            self.fs, self.root, self.identity, stale_after=self.stale_after_seconds, settle=self.claim_settle_seconds,
            write=lambda path, data: dataset._atomic_write(self.fs, path, data), cache=self._footers,
            exclude=self.adopted, logger=self.log,
        )  # fmt: skip

    def _compact(self) -> tuple[CompactionResult, list[str]]:
        """Write own + adopted rows as one part; returns it and the journals it holds."""
        me = self.identity.writer_id
        done = compacted_ids(self.fs, scan(self.fs, self.root).parts, self._footers)
        journals = [j for j in [me, *self.adopted] if j not in done]  # another writer compacted these
        stale = time.monotonic() - self._last_beat > self.stale_after_seconds / 2
        if me in journals and (stale or self._foreign_claims()):
            self.log.warning("Journal %s may be adopted by another writer: left out of this part", me)
            self.forfeited.append(me)
            journals.remove(me)
        path = f"{self.root}/part-{me}{dataset.PART_SUFFIX}"
        while True:
            reading: list[str] = []
            keys: set[tuple[str, str, str]] = set()  # (uri, fingerprint, status) of the part's rows
            found: list[pa.Table] = []
            try:
                meta = {JOURNALS_KEY: json.dumps(journals).encode()}
                rows = dataset.write_part(
                    self.fs, path, self._segments(journals, reading, keys, found), meta,
                    before_publish=functools.partial(self._keep_pieces, found, keys),
                )  # fmt: skip
                break
            except FileNotFoundError:
                if not reading or reading[-1] in ("", me):
                    raise
                # Another writer compacted and deleted it meanwhile (its part lists it): leave it out.
                self.log.warning("Journal %s vanished while compacting: left out", reading[-1])
                journals.remove(reading[-1])
        adopted = tuple(j for j in journals if j != me)
        if rows == 0:
            return CompactionResult(None, 0, adopted), journals
        try:  # before the journals go, so a check never has to read this part; a planner indexes it otherwise
            dataset.write_index(self.fs, path, keys)
        except Exception as exc:
            self.log.warning("Could not index %s (the next run indexes it): %s", path, exc)
        url = self.fs.unstrip_protocol(path)
        self.log.info("Wrote %d row(s) to %s (%d adopted journal(s))", rows, url, len(adopted))
        return CompactionResult(url, rows, adopted), journals

    def _segments(
        self, journals: list[str], reading: list[str], keys: set[tuple[str, str, str]], pieces: list[pa.Table]
    ) -> Iterator[pa.Table]:
        """Every segment of ``journals`` as a table; ``reading`` ends with the journal being read. The
        rows' keys are added to ``keys`` (for the part's index), the journals' pieces to ``pieces``."""
        for wid in journals:
            reading.append(wid)
            listed = list_journal(self.fs, self.root, wid)
            for table in dataset._tables(self.fs, listed.segments, None):
                keys.update(dataset.row_keys(table))
                yield table
            for segment in listed.piece_segments:
                pieces.append(piece_store.decode(self.fs.cat_file(segment)))
        reading.append("")  # all read: a FileNotFoundError now is the destination's, not a journal's

    def _keep_pieces(self, found: list[pa.Table], keys: set[tuple[str, str, str]]) -> None:
        """Store the pieces of files this part has no ``ok`` row for, before the part (and so the
        journals' deletion) makes the journals garbage."""
        if not found:
            return
        ok = {(uri, fp) for uri, fp, status in keys if status == dataset.STATUS_OK}
        kept = piece_store.drop(pa.concat_tables(found), ok)
        if kept.num_rows:
            path = piece_store.pieces_path(self.root, self.identity.writer_id)
            dataset._atomic_write(self.fs, path, piece_store.encode(kept))
            self.log.info("Kept %d answered piece(s) of files without an ok row in %s", kept.num_rows, path)


__all__ = [
    "CompactionResult",
    "DestinationWriteError",
    "Journal",
    "JournalStats",
    "PieceRecord",
    "WriterIdentity",
    "answered_pieces",
]


_WARM_UP_ROW: dict[str, Any] = {
    **{name: None for name in dataset.SCHEMA.names},
    "source_uri": "warm-up",
    "status": dataset.STATUS_OK,
    "transcribed_at": dataset.utcnow(),
    "segments": [{"start_s": 0.0, "end_s": 1.0, "text": ""}],
}


_encode_segment = dataset.encode_segment
