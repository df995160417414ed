"""One recording's way through the API: checks, a whole upload or pieces cut at silences, one row.

A file goes whole when it fits the upload budget and ``max_chunk_seconds``; otherwise it is split
(:mod:`linkai_provider.io.splitting`) and its pieces are sent concurrently through the same
:class:`~linkai_provider.scheduler.RequestScheduler` as every other upload, pieces first. Their texts
are joined in order into the file's one row, with each piece's span in ``segments``. The row is
``ok`` only if every piece is; otherwise it names the piece and the file goes again, whole, next run.

The upload budget is learned: a 413 for an upload under ``max_upload_bytes`` means the API's limit
is lower, so the budget shrinks for the rest of the batch and the file is split again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.dataset import STATUS_FAILED, STATUS_OK, utcnow
from linkai_provider.exceptions import (
    LinkAIError,
    LinkAIFatalError,
    PayloadTooLargeError,
    UnreadableFileError,
)
from linkai_provider.hooks.linkai import LinkAIHook, Transcription
from linkai_provider.io.audio import measure_duration
from linkai_provider.io.sources import AudioFile
from linkai_provider.scheduler import PRIORITY_PIECE, RequestScheduler, SchedulerCancelled

READ_BLOCK_SIZE = 1 << 20  # fsspec read-ahead per open file: bounds memory per upload on S3/GCS
BUDGET_MARGIN = 0.5  # after a 413 for N bytes, aim at N/2: few passes down to an unknown limit
MIN_BUDGET_BYTES = 64 * 1024
MAX_SPLIT_PASSES = 10


def human_mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class UploadBudget:
    """The most one request may carry: ``max_upload_bytes``, lowered when the API says 413."""

    def __init__(self, max_upload_bytes: int, logger: Any) -> None:
        self.configured = max_upload_bytes
        self._bytes = max_upload_bytes
        self._lock = threading.Lock()
        self.log = logger

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def learned(self) -> bool:
        return self._bytes < self.configured

    def learn(self, refused: int) -> int:
        """An upload of ``refused`` bytes got 413: keep the budget under it for the rest of the batch."""
        with self._lock:
            target = max(MIN_BUDGET_BYTES, int(refused * BUDGET_MARGIN))
            if target < self._bytes and self.learned:
                self.log.info("Another 413 for %s: pieces now at most %s", human_mb(refused), human_mb(target))
                self._bytes = target
            elif target < self._bytes:
                self._bytes = target
                self.log.warning(
                    "The API refused a %s upload as too large (HTTP 413) although max_upload_bytes is %s: its "
                    "limit is lower. Long recordings are now split into pieces of at most %s for the rest of "
                    "this batch (set max_upload_bytes=%d to start there).",
                    human_mb(refused),
                    human_mb(self.configured),
                    human_mb(target),
                    target,
                )
            return self._bytes


DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_CHUNK_SECONDS = 600.0


@dataclass(frozen=True)
class FileSettings:
    """What sending one file needs; validated here, where every caller builds it."""

    max_file_size_bytes: int | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS
    split_long_audio: bool = True
    piece_format: str | None = None
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    row_context: Mapping[str, Any] = field(default_factory=dict)  # constant columns of every row

    def __post_init__(self) -> None:
        if self.max_file_size_bytes is not None and self.max_file_size_bytes < 1:
            raise ValueError(f"max_file_size_bytes must be positive or None, got {self.max_file_size_bytes}")
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_chunk_seconds <= 0:
            raise ValueError(f"max_chunk_seconds must be positive, got {self.max_chunk_seconds}")
        if self.piece_format not in (None, "ogg", "flac", "mp3"):
            raise ValueError(f"piece_format must be 'ogg', 'flac', 'mp3' or None, got {self.piece_format!r}")


@dataclass(frozen=True)
class Outcome:
    row: dict[str, Any] | None  # None: never sent (cancelled); the next run picks the file up
    fatal: LinkAIFatalError | None = None
    split: bool = False  # went through the splitter (cut into pieces, or re-encoded to fit in one)


@dataclass
class _PieceResult:
    piece: Any
    answer: Transcription | None = None
    error: BaseException | None = None
    started: float | None = None
    ended: float | None = None


LOSSLESS_WORST_BYTES_PER_S = 32_000  # 16 kHz mono 16-bit: FLAC never needs much more than raw PCM


def auto_piece_format(budget: int, max_chunk_seconds: float) -> str:
    """FLAC when a whole ``max_chunk_seconds`` piece fits the byte budget even uncompressed (the
    default 600 s is 19.2 MB under 25 MiB): a tenth of Opus's CPU, so pieces are ready as fast as the
    API takes them. Opus otherwise (a learned, lower limit): a sixth of FLAC's bytes."""
    return "flac" if max_chunk_seconds * LOSSLESS_WORST_BYTES_PER_S <= budget else "ogg"


def new_row(file: AudioFile, context: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **context,
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
    }


def short_reason(exc: BaseException, size: int | None = None) -> str:
    """The row's ``error_message``: the API's message, but one short sentence for a 413."""
    if isinstance(exc, PayloadTooLargeError):
        what = f"the upload of {size} bytes" if size is not None else "the upload"
        return f"the API refused {what} as too large (HTTP 413)"
    if isinstance(exc, LinkAIError):
        return exc.message or type(exc).__name__
    return str(exc) or type(exc).__name__


class RecordingTranscriber:
    """Turns one listed file into its row; called from the pipeline's worker threads."""

    def __init__(
        self,
        hook: LinkAIHook,
        scheduler: RequestScheduler,
        settings: FileSettings,
        budget: UploadBudget,
        cancel: threading.Event,
        piece_pool: ThreadPoolExecutor,
        logger: Any,
        durations: Mapping[str, float | None] | None = None,
        *,
        answered: Mapping[tuple[str, str], Sequence[Any]] | None = None,
        pieces_sink: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        self.hook, self.scheduler, self.settings, self.budget = hook, scheduler, settings, budget
        self.cancel, self.piece_pool, self.log = cancel, piece_pool, logger
        self.durations = durations or {}  # measured while planning (budgets): not read a second time
        self.answered = answered or {}  # pieces answered in earlier tries, by (source_uri, fingerprint)
        self.pieces_sink = pieces_sink

    def __call__(self, file: AudioFile) -> Outcome:
        if self.cancel.is_set():
            return Outcome(None)
        row = new_row(file, self.settings.row_context)
        started = time.monotonic()
        limit = self.settings.max_file_size_bytes
        if file.size == 0:
            return self._failed(row, UnreadableFileError("file is empty (0 bytes); not uploaded"), started)
        if limit is not None and file.size > limit:
            reason = f"file is {file.size} bytes, over max_file_size_bytes={limit}; not uploaded"
            return self._failed(row, UnreadableFileError(reason), started)
        try:
            fh = file.fs.open(file.path, "rb", block_size=READ_BLOCK_SIZE)
        except Exception as exc:
            return self._failed(row, UnreadableFileError(f"cannot open {file.uri}: {exc}"), started)
        try:
            # Probed while other files are in flight; only the request itself takes a slot.
            if file.uri in self.durations:
                row["audio_duration_s"] = self.durations[file.uri]
            else:
                row["audio_duration_s"] = measure_duration(fh, file.audio_format)
            if self._needs_split(file.size, row["audio_duration_s"]):
                fh.close()
                return self._split(file, row, started)
            if not self.settings.split_long_audio and file.size > self.budget.bytes:
                reason = (
                    f"file is {file.size} bytes, over the upload limit of {self.budget.bytes} bytes "
                    "(max_upload_bytes); split_long_audio=False, so it is not sent"
                )
                return self._failed(row, UnreadableFileError(reason), started)
            try:
                answer = self.hook.transcribe(
                    fh,
                    filename=posixpath.basename(file.path),
                    extra_fields=self.settings.extra_fields,
                    cancel=self.cancel,
                    gate=self.scheduler,
                )
            except PayloadTooLargeError as exc:
                if file.size <= self.settings.max_upload_bytes:
                    self.budget.learn(file.size)  # the API's real limit is lower than configured
                    if self.settings.split_long_audio and file.size > self.budget.bytes:
                        fh.close()
                        return self._split(file, row, started)
                return self._failed(row, exc, started, size=file.size)
        except SchedulerCancelled:
            return Outcome(None)
        except LinkAIFatalError as exc:
            self.cancel.set()  # at once: no waiting file may be sent
            return Outcome(self._failed(row, exc, started).row, fatal=exc)
        except LinkAIError as exc:
            return self._failed(row, exc, started)
        except Exception as exc:  # a bug or an odd filesystem error must not sink the batch
            self.log.exception("Unexpected error on %s", file.uri)
            return self._failed(row, exc, started)
        finally:
            fh.close()
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
        return Outcome(row)

    def _needs_split(self, size: int, duration: float | None) -> bool:
        if not self.settings.split_long_audio:
            return False
        too_long = duration is not None and duration > self.settings.max_chunk_seconds
        return size > self.budget.bytes or too_long

    # -- pieces -----------------------------------------------------------------------------------
    def _split(self, file: AudioFile, row: dict[str, Any], started: float) -> Outcome:
        try:
            from linkai_provider.io import splitting

            splitting.require_av()
        except ImportError as exc:
            reason = (
                f"needs splitting ({file.size} bytes, over {self.budget.bytes}), but {exc}"
                if "airflow-provider-linkai[audio]" in str(exc)
                else f"needs splitting, which needs PyAV and numpy ({exc}): "
                "pip install 'airflow-provider-linkai[audio]'"
            )
            return self._failed(row, UnreadableFileError(reason), started)
        try:
            with splitting.spill_to_local(file.fs, file.path) as local:
                row["content_sha256"] = _sha256_of(local)  # what identifies the recording that was cut
                for _ in range(MAX_SPLIT_PASSES):
                    budget = self.budget.bytes
                    results = self._send_pieces(file, local, budget)
                    refused = [r for r in results if isinstance(r.error, PayloadTooLargeError)]
                    other = [
                        r
                        for r in results
                        if r.error is not None and not isinstance(r.error, (PayloadTooLargeError, SchedulerCancelled))
                    ]
                    if refused and not other and budget > MIN_BUDGET_BYTES:
                        self.budget.learn(min(r.piece.size for r in refused))
                        continue  # split again, smaller
                    return self._assemble(row, results, started)
                return self._assemble(row, results, started)
        except SchedulerCancelled:
            return Outcome(None)
        except ValueError as exc:  # undecodable audio
            return self._failed(row, UnreadableFileError(f"cannot split {file.uri}: {exc}"), started)
        except OSError as exc:
            return self._failed(row, UnreadableFileError(f"cannot read {file.uri}: {exc}"), started)

    def _send_pieces(self, file: AudioFile, local: str, budget: int) -> list[_PieceResult]:
        """Cut and send every piece (one pass); the results in order. A failed piece stops the pass:
        the file goes again whole, so sending its other pieces would waste credits."""
        from linkai_provider.io.splitting import AudioSplitter

        kwargs: dict[str, Any] = {
            "piece_format": self.settings.piece_format or auto_piece_format(budget, self.settings.max_chunk_seconds)
        }
        splitter = AudioSplitter(
            max_piece_bytes=budget, max_piece_seconds=self.settings.max_chunk_seconds, logger=self.log, **kwargs
        )
        stop = threading.Event()
        # At most a level's worth of encoded pieces wait on disk: encoding runs ahead of sending.
        room = threading.Semaphore(self.scheduler.ceiling + 1)
        futures: list[Future[_PieceResult]] = []
        try:
            for piece in splitter.split(local, name=file.uri):
                while not room.acquire(timeout=0.5):
                    if self.cancel.is_set() or stop.is_set():
                        break
                if self.cancel.is_set() or stop.is_set():
                    break
                futures.append(self.piece_pool.submit(self._send_piece, file, piece, stop, room))
            results = [f.result() for f in futures]
        finally:
            stop.set()
            for f in futures:
                f.cancel()
            splitter.cleanup()
        if self.cancel.is_set() and not any(isinstance(r.error, LinkAIFatalError) for r in results):
            raise SchedulerCancelled()
        return results

    def _send_piece(
        self, file: AudioFile, piece: Any, stop: threading.Event, room: threading.Semaphore
    ) -> _PieceResult:
        result = _PieceResult(piece)
        stem = posixpath.splitext(posixpath.basename(file.path))[0]
        try:
            if stop.is_set() or self.cancel.is_set():
                result.error = SchedulerCancelled()
                return result
            result.started = time.monotonic()
            result.answer = self.hook.transcribe(
                piece.path,
                filename=f"{stem}.part{piece.index:04d}.{piece.audio_format}",
                extra_fields=self.settings.extra_fields,
                cancel=self.cancel,
                gate=self.scheduler,
                priority=PRIORITY_PIECE,
            )
        except LinkAIFatalError as exc:
            self.cancel.set()
            result.error = exc
        except BaseException as exc:
            result.error = exc
            stop.set()  # the file goes again whole next run: sending its other pieces would be wasted
        finally:
            result.ended = time.monotonic()
            room.release()
            with contextlib.suppress(OSError):
                os.unlink(piece.path)  # sent (or given up): its temp file is not needed any more
        return result

    def _assemble(self, row: dict[str, Any], results: list[_PieceResult], started: float) -> Outcome:
        attempts = sum(r.answer.attempts if r.answer else getattr(r.error, "attempts", 0) or 0 for r in results)
        sent = [r.started for r in results if r.started is not None]
        first = min(sent) if sent else started
        last = max((r.ended for r in results if r.ended is not None), default=time.monotonic())
        bad = next((r for r in results if r.error is not None and not isinstance(r.error, SchedulerCancelled)), None)
        if bad is not None:
            p = bad.piece
            exc = bad.error
            assert exc is not None
            failed = self._failed(row, exc, started, size=p.size)
            assert failed.row is not None
            failed.row["error_message"] = (
                f"piece {p.index + 1} ({p.start_s:.1f}-{p.end_s:.1f} s): {failed.row['error_message']}"
            )
            failed.row["attempts"] = attempts
            failed.row["chunks"] = len(results)
            return Outcome(failed.row, fatal=exc if isinstance(exc, LinkAIFatalError) else None, split=True)
        texts = [r.answer.text.strip() for r in results if r.answer is not None]
        row.update(
            status=STATUS_OK,
            text=" ".join(t for t in texts if t),
            attempts=attempts,
            latency_ms=int((last - first) * 1000),
            transcribed_at=utcnow(),
            chunks=len(results),
            segments=[
                {"start_s": r.piece.start_s, "end_s": r.piece.end_s, "text": r.answer.text.strip()}
                for r in results
                if r.answer is not None
            ],
        )
        if row["audio_duration_s"] is None and results:
            row["audio_duration_s"] = results[-1].piece.end_s  # decoded to the end: now it is known
        return Outcome(row, split=True)

    # -- failed rows ------------------------------------------------------------------------------
    def _failed(self, row: dict[str, Any], exc: BaseException, started: float, *, size: int | None = None) -> Outcome:
        if isinstance(exc, LinkAIError):
            attempts, code = exc.attempts, exc.code
            if exc.content_sha256:
                row["content_sha256"] = exc.content_sha256
        else:
            attempts, code = 0, None
        row.update(
            status=STATUS_FAILED,
            text=None,
            error_type=type(exc).__name__,
            error_code=code,
            error_message=short_reason(exc, size),
            attempts=attempts,
            latency_ms=int((time.monotonic() - started) * 1000) if attempts else None,
            transcribed_at=utcnow(),
            segments=None,
        )
        self.log.warning("Failed: %s: %s: %s", row["source_uri"], row["error_type"], row["error_message"])
        return Outcome(row)


def _sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
