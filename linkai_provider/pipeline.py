"""The batch engine: bounded concurrent uploads, one row per finished file, checkpointed output.

Listing hands over a plan; a thread pool of ``max_concurrency`` workers streams files to the API
through one pooled HTTP client; the calling thread collects rows into the dataset writer. A
batch-fatal error sets a shared event: no new file is sent, retries stop, sleepers wake, and every
row already finished is written before the error is raised.
"""

from __future__ import annotations

import logging
import posixpath
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.dataset import STATUS_FAILED, STATUS_OK, TranscriptWriter, utcnow
from linkai_provider.exceptions import LinkAIError, LinkAIFatalError, UnreadableFileError
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.audio import probe_duration
from linkai_provider.io.sources import AudioFile

log = logging.getLogger(__name__)

READ_BLOCK_SIZE = 1 << 20  # fsspec read-ahead per open file: bounds memory per upload on S3/GCS


@dataclass
class BatchResult:
    total: int
    ok: int = 0
    failed: int = 0
    not_sent: int = 0
    audio_seconds: float = 0.0
    fatal: LinkAIFatalError | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)  # (uri, reason), first few only

    @property
    def done(self) -> int:
        return self.ok + self.failed


@dataclass(frozen=True)
class _Outcome:
    row: dict[str, Any] | None
    fatal: LinkAIFatalError | None = None


class Progress:
    """Logs done/total, rate and ETA every ``interval`` seconds."""

    def __init__(self, total: int, interval: float, logger: Any = log) -> None:
        self.total, self.interval, self.log = total, interval, logger
        self.started = self._last = time.monotonic()

    def maybe_log(self, result: BatchResult, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = result.done / elapsed
        eta = (self.total - result.done) / rate if rate > 0 else float("inf")
        self.log.info(
            "Progress: %d/%d files (%d ok, %d failed), %.1f files/s, ETA %s",
            result.done,
            self.total,
            result.ok,
            result.failed,
            rate,
            f"{eta:.0f}s" if eta != float("inf") else "unknown",
        )


def _drain(finished: queue.SimpleQueue[Future[_Outcome]], timeout: float) -> list[Future[_Outcome]]:
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


class TranscriptionPipeline:
    """Sends ``files`` through ``hook`` with at most ``max_concurrency`` in flight, rows to ``writer``.

    :param row_context: constant columns of every row (endpoint, dag_id, task_id, run_id, ...).
    """

    def __init__(
        self,
        hook: LinkAIHook,
        writer: TranscriptWriter,
        *,
        max_concurrency: int = 8,
        max_file_size_bytes: int | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        row_context: Mapping[str, Any] | None = None,
        progress_interval: float = 10.0,
        logger: Any = log,  # a stdlib logger or the task's structlog logger
        on_progress: Callable[[BatchResult], None] | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.hook = hook
        self.writer = writer
        self.max_concurrency = max_concurrency
        self.max_file_size_bytes = max_file_size_bytes
        self.extra_fields = dict(extra_fields or {})
        self.row_context = dict(row_context or {})
        self.progress_interval = progress_interval
        self.log = logger
        self.on_progress = on_progress
        self.cancel = threading.Event()
        self._slots = threading.BoundedSemaphore(max_concurrency)  # requests in flight

    def run(self, files: Iterable[AudioFile], total: int) -> BatchResult:
        result = BatchResult(total=total)
        progress = Progress(total, self.progress_interval, self.log)
        todo = iter(files)
        window = self.max_concurrency * 2  # files taken at once: K being sent, K more read ahead
        pending: set[Future[_Outcome]] = set()
        # Finished futures arrive on a queue (O(1) per file); ``wait(pending, FIRST_COMPLETED)``
        # re-armed a waiter on every pending future each time and held the GIL the workers need.
        finished: queue.SimpleQueue[Future[_Outcome]] = queue.SimpleQueue()
        # Twice as many workers as requests in flight: while ``max_concurrency`` files are being sent,
        # as many more are opened and read ahead (object stores: one GET each), so a freed slot is
        # taken at once. ``self._slots`` keeps the requests in flight at ``max_concurrency``.
        pool = ThreadPoolExecutor(window, thread_name_prefix="linkai-upload")
        try:
            while True:
                while not self.cancel.is_set() and len(pending) < window:
                    item = next(todo, None)
                    if item is None:
                        break
                    future = pool.submit(self._process, item)
                    pending.add(future)
                    future.add_done_callback(finished.put)
                if not pending:
                    break
                done = _drain(finished, timeout=1.0)
                for future in done:
                    pending.discard(future)
                    self._collect(future.result(), result)
                if done and self.on_progress is not None:
                    self.on_progress(result)
                if self.writer.due():
                    self.writer.flush()
                progress.maybe_log(result)
        finally:
            # Also on task timeout or SIGTERM: stop sending, wait for in-flight, keep what finished.
            self.cancel.set()
            pool.shutdown(wait=True)
            for future in pending:
                if future.done() and not future.cancelled() and future.exception() is None:
                    self._collect(future.result(), result)
            self.writer.close()
            progress.maybe_log(result, force=True)
        result.not_sent = result.total - result.done
        return result

    def _collect(self, outcome: _Outcome, result: BatchResult) -> None:
        if outcome.row is None:
            return
        self.writer.add(outcome.row)
        if outcome.row["status"] == STATUS_OK:
            result.ok += 1
            result.audio_seconds += outcome.row["audio_duration_s"] or 0.0
        else:
            result.failed += 1
            if len(result.failures) < 20:
                result.failures.append((outcome.row["source_uri"], outcome.row["error_message"]))
        if outcome.fatal is not None and result.fatal is None:
            result.fatal = outcome.fatal
            self.cancel.set()
            self.log.error("Batch-fatal error, no further files are sent: %s", outcome.fatal)

    # -- one file (worker thread) ------------------------------------------------------------------
    def _process(self, file: AudioFile) -> _Outcome:
        if self.cancel.is_set():
            return _Outcome(None)  # never sent: the next run picks it up
        row = self._row(file)
        if file.size == 0:
            return self._failed(row, UnreadableFileError("file is empty (0 bytes); not uploaded"))
        if self.max_file_size_bytes is not None and file.size > self.max_file_size_bytes:
            return self._failed(
                row,
                UnreadableFileError(
                    f"file is {file.size} bytes, over max_file_size_bytes={self.max_file_size_bytes}; not uploaded"
                ),
            )
        try:
            fh = file.fs.open(file.path, "rb", block_size=READ_BLOCK_SIZE)
        except Exception as exc:
            return self._failed(row, UnreadableFileError(f"cannot open {file.uri}: {exc}"))
        slot = False
        try:
            # Opened and probed (its first block read) while other files are in flight; only the
            # request itself needs one of the ``max_concurrency`` slots.
            row["audio_duration_s"] = probe_duration(fh, file.audio_format)
            self._slots.acquire()
            slot = True
            if self.cancel.is_set():
                return _Outcome(None)  # never sent: the next run picks it up
            row["_started"] = time.monotonic()
            answer = self.hook.transcribe(
                fh, filename=posixpath.basename(file.path), extra_fields=self.extra_fields, cancel=self.cancel
            )
        except LinkAIFatalError as exc:
            self.cancel.set()  # at once, before the slot is freed: no waiting file may be sent
            return _Outcome(self._failed(row, exc).row, fatal=exc)
        except LinkAIError as exc:
            return self._failed(row, exc)
        except Exception as exc:  # a bug or an odd filesystem error must not sink the batch
            self.log.exception("Unexpected error on %s", file.uri)
            return self._failed(row, exc)
        finally:
            if slot:
                self._slots.release()
            fh.close()
        row.pop("_started", None)
        row.update(
            status=STATUS_OK,
            text=answer.text,
            content_sha256=answer.content_sha256,
            source_size_bytes=answer.size_bytes,
            attempts=answer.attempts,
            latency_ms=answer.latency_ms,
            transcribed_at=utcnow(),
            chunks=1,
            segments=[{"start_s": 0.0, "end_s": row["audio_duration_s"], "text": answer.text}],
        )
        return _Outcome(row)

    def _row(self, file: AudioFile) -> dict[str, Any]:
        return {
            **self.row_context,
            "source_uri": file.uri,
            "source_size_bytes": file.size,
            "source_fingerprint": file.fingerprint,
            "content_sha256": None,
            "audio_format": file.audio_format,
            "audio_duration_s": None,
            "text": None,
            "error_type": None,
            "error_code": None,
            "error_message": None,
            "attempts": 0,
            "latency_ms": None,
            "chunks": None,
            "segments": None,
            "_started": time.monotonic(),
        }

    def _failed(self, row: dict[str, Any], exc: BaseException) -> _Outcome:
        started = row.pop("_started")
        if isinstance(exc, LinkAIError):
            attempts, code, message = exc.attempts, exc.code, exc.message
            row["content_sha256"] = exc.content_sha256
        else:
            attempts, code, message = 0, None, str(exc)
        row.update(
            status=STATUS_FAILED,
            text=None,
            error_type=type(exc).__name__,
            error_code=code,
            error_message=message or type(exc).__name__,
            attempts=attempts,
            latency_ms=int((time.monotonic() - started) * 1000) if attempts else None,
            transcribed_at=utcnow(),
        )
        self.log.warning("Failed: %s: %s: %s", row["source_uri"], row["error_type"], row["error_message"])
        return _Outcome(row)
