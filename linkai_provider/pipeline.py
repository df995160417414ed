"""The batch engine: files in listing order, one request scheduler, one row per finished file.

Worker threads take files (``2 × max_concurrency`` at once: as many being sent as the level allows,
the rest opened and probed ahead); each file is sent whole or as pieces by
:class:`~linkai_provider.recording.RecordingTranscriber`, every HTTP attempt taking a slot of the
shared :class:`~linkai_provider.scheduler.RequestScheduler`. Rows that finish together are handed
to the sink (the durable journal) in one call, from the collecting thread, which never waits on a
write. A batch-fatal answer, a sink that cannot store rows, or ``cancel`` (SIGTERM) stops sending at
once; every row already finished is kept.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from linkai_provider.dataset import STATUS_OK
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.sources import AudioFile
from linkai_provider.recording import RecordingTranscriber
from linkai_provider.resume import PiecesSink
from linkai_provider.scheduler import RequestScheduler
from linkai_provider.uploads import (
    DEFAULT_MAX_CHUNK_SECONDS,
    DEFAULT_MAX_UPLOAD_BYTES,
    FileSettings,
    Outcome,
    UploadBudget,
)

log = logging.getLogger(__name__)


class RowSink(Protocol):
    """Where finished rows go (the journal). ``append`` must not block on I/O."""

    def append(self, rows: list[dict[str, Any]]) -> None: ...


@dataclass
class BatchResult:
    total: int
    ok: int = 0
    failed: int = 0
    not_sent: int = 0
    audio_seconds: float = 0.0  # audio the API answered for (what it bills; each channel counted)
    split: int = 0  # files sent as pieces (cut, or repackaged into one), failed ones included
    pieces_reused: int = 0  # pieces answered in an earlier try and joined into this run's rows
    fatal: BaseException | None = None  # a LinkAIFatalError, or the sink's write error
    failures: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason), first few only
    scheduler: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.ok + self.failed


class Progress:
    """Logs done/total, rate, concurrency level and ETA every ``interval`` seconds."""

    def __init__(self, total: int, interval: float, scheduler: RequestScheduler, logger: Any = log) -> None:
        self.total, self.interval, self.scheduler, self.log = total, interval, scheduler, logger
        self.started = self._last = time.monotonic()

    def maybe_log(self, result: BatchResult, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        rate = result.done / max(now - self.started, 1e-9)
        eta = f"{(self.total - result.done) / rate:.0f}s" if rate > 0 else "unknown"
        self.log.info(
            "Progress: %d/%d files (%d ok, %d failed), %.1f files/s, concurrency %d/%d, ETA %s",
            result.done,
            self.total,
            result.ok,
            result.failed,
            rate,
            self.scheduler.current,
            self.scheduler.ceiling,
            eta,
        )


class TranscriptionPipeline:
    """Sends ``files`` through ``hook`` under an adaptive concurrency ceiling; rows go to ``sink``.

    :param settings: what each file needs (limits, splitting, form fields, the rows' constant columns).
    :param max_concurrency: the ceiling of requests in flight (the level adapts below it).
    :param answered: pieces answered in earlier tries, by ``(source_uri, source_fingerprint)``: not sent again.
    :param pieces_sink: called with every piece the moment it is answered (the journal's ``append_pieces``).
    :param hold: while this event (any of these) is clear, no new request is sent (the sink is failing
        and retrying, or its backlog is full).
    """

    def __init__(
        self,
        hook: LinkAIHook,
        sink: RowSink,
        settings: FileSettings,
        *,
        max_concurrency: int = 8,
        progress_interval: float = 10.0,
        hold: threading.Event | Sequence[threading.Event] | None = None,
        adaptive: bool = True,
        initial_concurrency: int | None = None,
        logger: Any = log,
        on_progress: Callable[[BatchResult], None] | None = None,
        answered: Mapping[tuple[str, str], Sequence[Any]] | None = None,
        pieces_sink: PiecesSink | None = None,
    ) -> None:
        self.hook = hook
        self.sink = sink
        self.settings = settings
        self.max_concurrency = max_concurrency
        self.progress_interval = progress_interval
        self.log = logger
        self.on_progress = on_progress
        self.answered = answered or {}
        self.pieces_sink = pieces_sink
        self._hinted = False
        self.cancel = threading.Event()
        self.scheduler = RequestScheduler(
            max_concurrency,
            initial=initial_concurrency,
            adaptive=adaptive,
            hold=hold,
            cancel=self.cancel,
            logger=logger,
        )
        self.budget = UploadBudget(settings.max_upload_bytes, logger)
        self._fatal: BaseException | None = None

    def stop(self, error: BaseException | None = None) -> None:
        """Stop sending at once (SIGTERM, a sink that cannot write); ``error`` fails the batch."""
        if error is not None and self._fatal is None:
            self._fatal = error
        self.cancel.set()
        self.scheduler.wake()

    def run(
        self, files: Iterable[AudioFile], total: int, durations: Mapping[str, float | None] | None = None
    ) -> BatchResult:
        """Send ``files``; ``durations`` (by URI) are those planning already measured."""
        result = BatchResult(total=total)
        progress = Progress(total, self.progress_interval, self.scheduler, self.log)
        todo = iter(files)
        window = self.max_concurrency * 2  # files taken at once: up to K being sent, K more read ahead
        pending: set[Future[Outcome]] = set()
        # Finished futures arrive on a queue: O(1) per file, and the collecting thread sleeps until one does.
        finished: queue.SimpleQueue[Future[Outcome]] = queue.SimpleQueue()
        pool = ThreadPoolExecutor(window, thread_name_prefix="linkai-file")
        piece_pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="linkai-piece")
        worker = RecordingTranscriber(
            self.hook,
            self.scheduler,
            self.settings,
            self.budget,
            self.cancel,
            piece_pool,
            self.log,
            durations,
            answered=self.answered,
            pieces_sink=self.pieces_sink,
        )
        try:
            while True:
                while not self.cancel.is_set() and len(pending) < window:
                    item = next(todo, None)
                    if item is None:
                        break
                    future = pool.submit(worker, item)
                    pending.add(future)
                    future.add_done_callback(finished.put)
                if not pending:
                    break
                done = _drain(finished, timeout=1.0)
                for future in done:
                    pending.discard(future)
                self._collect([f.result() for f in done], result)
                if done and self.on_progress is not None:
                    self.on_progress(result)
                progress.maybe_log(result)
        finally:
            # Also on task timeout or SIGTERM: stop sending, wait for in-flight, keep what finished.
            self.cancel.set()
            self.scheduler.wake()
            pool.shutdown(wait=True)
            piece_pool.shutdown(wait=True)
            self._collect(
                [f.result() for f in pending if f.done() and not f.cancelled() and f.exception() is None], result
            )
            progress.maybe_log(result, force=True)
        result.not_sent = result.total - result.done
        result.scheduler = self.scheduler.summary()
        if self._fatal is not None and result.fatal is None:
            result.fatal = self._fatal
        return result

    def _collect(self, outcomes: list[Outcome], result: BatchResult) -> None:
        rows = [o.row for o in outcomes if o.row is not None]
        if rows:
            self.sink.append(rows)  # one journal write for the rows that finished together
        for outcome in outcomes:
            row = outcome.row
            result.audio_seconds += outcome.billed_s  # paid also when stopped before the row was done
            if row is None:
                continue
            result.pieces_reused += outcome.reused
            if outcome.hint is not None and not self._hinted:
                self._hinted = True
                self.log.warning(
                    "%s: its channels carry different speech (a call with each party on its own channel?) and "
                    "were transcribed mixed; channels='separate' transcribes each channel on its own. "
                    "(Said once per batch.)",
                    outcome.hint,
                )
            if row["status"] == STATUS_OK:
                result.ok += 1
            else:
                result.failed += 1
                if len(result.failures) < 20:
                    result.failures.append((row["source_uri"], row["error_message"]))
            if outcome.split:
                result.split += 1
            if outcome.fatal is not None and result.fatal is None:
                result.fatal = outcome.fatal
                self.stop()
                self.log.error("Batch-fatal error, no further files are sent: %s", outcome.fatal)


def _drain(finished: queue.SimpleQueue[Future[Outcome]], timeout: float) -> list[Future[Outcome]]:
    """Every future finished so far; waits up to ``timeout`` for the first one."""
    try:
        done = [finished.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            done.append(finished.get_nowait())
        except queue.Empty:
            return done


__all__ = [
    "DEFAULT_MAX_CHUNK_SECONDS",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "BatchResult",
    "FileSettings",
    "Progress",
    "RowSink",
    "TranscriptionPipeline",
]
