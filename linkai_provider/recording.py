"""One recording's way through the API: checks, one decoding pass, then the file as it is or its pieces.

With PyAV installed (the ``audio`` extra) every file is analysed before a byte is sent
(:mod:`linkai_provider.io.analysis`):

* no audio stream, or nothing that decodes: a ``failed`` row, nothing sent;
* no speech energy anywhere: an ``ok`` row with empty text and a warning, nothing sent;
* otherwise the file goes **as it is** when it is plain audio that fits the budget and
  ``max_chunk_seconds``, its header tells the truth, it decodes cleanly, it has no long silence
  and its channels are not to be separated; else as **pieces** (:mod:`linkai_provider.pieces`):
  packets copied or PCM encoded, silences left out, damaged stretches skipped, each channel on its
  own with ``channels="separate"``. Answered pieces are journaled and reused by the next try.

The upload budget is learned: a 413 for an upload of at least 1 MiB under ``max_upload_bytes``
means the API's limit is lower (the limit the 413's message states, else half the refused size),
for the rest of the batch. A 413 for a smaller upload is that file's failure, never a new limit.
"""

from __future__ import annotations

import contextlib
import posixpath
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from linkai_provider.dataset import STATUS_FAILED, STATUS_OK, utcnow
from linkai_provider.exceptions import (
    LinkAIError,
    LinkAIFatalError,
    PayloadTooLargeError,
    UnreadableFileError,
)
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.audio import audio_checks, measure_duration, probe_duration
from linkai_provider.io.sources import AudioFile
from linkai_provider.resume import PiecesSink
from linkai_provider.scheduler import RequestScheduler, SchedulerCancelled
from linkai_provider.uploads import FileSettings, Outcome, UploadBudget

READ_BLOCK_SIZE = 1 << 20  # fsspec read-ahead per open file: bounds memory per upload on S3/GCS


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
        "warnings": None,
    }


_GENERIC_413 = frozenset(
    {"request entity too large", "payload too large", "content too large", PayloadTooLargeError.default_message.lower()}
)


def short_reason(exc: BaseException, size: int | None = None) -> str:
    """The row's ``error_message``: the API's message; for a 413 one short sentence, with the
    server's own words when it gave some (never a proxy's HTML page)."""
    if isinstance(exc, PayloadTooLargeError):
        what = f"the upload of {size} bytes" if size is not None else "the upload"
        reason = f"the API refused {what} as too large (HTTP 413)"
        said = " ".join((exc.message or "").split())
        if said and "<" not in said and said.lower().removeprefix("413 ") not in _GENERIC_413:
            reason += f": {said[:200]}"
        return reason
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
        pieces_sink: PiecesSink | None = None,
    ) -> None:
        self.hook, self.scheduler, self.settings, self.budget = hook, scheduler, settings, budget
        self.cancel, self.piece_pool, self.log = cancel, piece_pool, logger
        self.durations = durations or {}  # measured while planning (budgets): not read a second time
        self.answered = answered or {}  # pieces answered in earlier tries, by (source_uri, fingerprint)
        self.pieces_sink = pieces_sink
        self._audio: bool | None = None

    @property
    def audio_available(self) -> bool:
        if self._audio is None:
            self._audio = audio_checks()
            if not self._audio:
                self.log.warning(
                    "PyAV is not installed: files are sent as they are, without checks for audio streams, "
                    "damage, silence or channels, and long ones cannot be split "
                    "(pip install 'airflow-provider-linkai[audio]')"
                )
        return self._audio

    def __call__(self, file: AudioFile) -> Outcome:
        if self.cancel.is_set():
            return Outcome(None)
        row = new_row(file, self.settings.row_context)
        started = time.monotonic()
        limit = self.settings.max_file_size_bytes
        if file.size == 0:
            return self.failed(row, UnreadableFileError("file is empty (0 bytes); not uploaded"), started)
        if limit is not None and file.size > limit:
            reason = f"file is {file.size} bytes, over max_file_size_bytes={limit}; not uploaded"
            return self.failed(row, UnreadableFileError(reason), started)
        if not self.audio_available:
            return self._as_it_is(file, row, started)
        from linkai_provider.io.workdirs import spill_to_local
        from linkai_provider.pieces import Recording

        try:
            with spill_to_local(file.fs, file.path) as local:
                return Recording(self, file, local, row, started).transcribe()
        except SchedulerCancelled:
            return Outcome(None)
        except OSError as exc:
            return self.failed(row, UnreadableFileError(f"cannot read {file.uri}: {exc}"), started)
        except Exception as exc:  # a bug or an odd decoder error must not sink the batch
            self.log.exception("Unexpected error on %s", file.uri)
            return self.failed(row, exc, started)

    def header_seconds(self, file: AudioFile, local: str) -> float | None:
        """The duration the file's header claims (what an API that trusts headers bills): a few KB of
        the local copy, read again even when planning measured the file, since planning's figure is
        the truthful one (demuxed when the header lies)."""
        with open(local, "rb") as fh:
            return probe_duration(fh, file.audio_format)

    # -- a file sent as it is ---------------------------------------------------------------------
    def send_whole(self, file: AudioFile, source: Any, row: dict[str, Any], started: float) -> Outcome:
        """Upload ``source`` (a path or an open file) as the file itself: one request, one row.

        Raises :class:`PayloadTooLargeError` (the caller decides: learn and split, or fail),
        :class:`SchedulerCancelled`; any other error is the row's.
        """
        try:
            answer = self.hook.transcribe(
                source,
                filename=posixpath.basename(file.path),
                extra_fields=self.settings.extra_fields,
                cancel=self.cancel,
                gate=self.scheduler,
            )
        except (PayloadTooLargeError, SchedulerCancelled):
            raise
        except LinkAIFatalError as exc:
            self.cancel.set()  # at once: no waiting file may be sent
            return Outcome(self.failed(row, exc, started).row, fatal=exc)
        except LinkAIError as exc:
            return self.failed(row, exc, started)
        except Exception as exc:  # a bug or an odd filesystem error must not sink the batch
            self.log.exception("Unexpected error on %s", file.uri)
            return self.failed(row, exc, started)
        row.update(
            status=STATUS_OK,
            text=answer.text,
            content_sha256=answer.content_sha256,  # source_size_bytes stays the listed size (docs/dataset.md)
            attempts=answer.attempts,
            latency_ms=answer.latency_ms,
            transcribed_at=utcnow(),
            chunks=1,
            segments=[{"start_s": 0.0, "end_s": row["audio_duration_s"], "text": answer.text, "channel": None}],
        )
        return Outcome(row, billed_s=row["audio_duration_s"] or 0.0)

    def _as_it_is(self, file: AudioFile, row: dict[str, Any], started: float) -> Outcome:
        """Without PyAV: the header's duration, and the file as it is (or a failed row if too large)."""
        try:
            fh = file.fs.open(file.path, "rb", block_size=READ_BLOCK_SIZE)
        except Exception as exc:
            return self.failed(row, UnreadableFileError(f"cannot open {file.uri}: {exc}"), started)
        try:
            row["audio_duration_s"] = (
                self.durations[file.uri] if file.uri in self.durations else measure_duration(fh, file.audio_format)
            )
            too_long = (row["audio_duration_s"] or 0.0) > self.settings.max_chunk_seconds
            if file.size > self.budget.bytes or (self.settings.split_long_audio and too_long):
                if self.settings.split_long_audio:
                    reason = (
                        f"needs splitting ({file.size} bytes, over {self.budget.bytes}, or longer than "
                        "max_chunk_seconds), but splitting long recordings needs PyAV: "
                        "pip install 'airflow-provider-linkai[audio]'"
                    )
                else:
                    reason = (
                        f"file is {file.size} bytes, over the upload limit of {self.budget.bytes} bytes "
                        "(max_upload_bytes); split_long_audio=False, so it is not sent"
                    )
                return self.failed(row, UnreadableFileError(reason), started)
            try:
                return self.send_whole(file, fh, row, started)
            except PayloadTooLargeError as exc:
                self.budget.learn(file.size, exc.limit_bytes)
                return self.failed(row, exc, started, size=file.size)
            except SchedulerCancelled:
                return Outcome(None)
        finally:
            with contextlib.suppress(Exception):
                fh.close()

    # -- rows -------------------------------------------------------------------------------------
    def failed(
        self, row: dict[str, Any], exc: BaseException, started: float, *, size: int | None = None, attempts: int = 0
    ) -> Outcome:
        if isinstance(exc, LinkAIError):
            attempts, code = attempts + (exc.attempts or 0), exc.code
            if exc.content_sha256 and row.get("content_sha256") is None:
                row["content_sha256"] = exc.content_sha256
        else:
            code = None
        row.update(
            status=STATUS_FAILED,
            text=None,
            error_type=type(exc).__name__,
            error_code=code,
            error_message=short_reason(exc, size),
            attempts=attempts,
            latency_ms=row.get("latency_ms")
            if row.get("latency_ms") is not None
            else (int((time.monotonic() - started) * 1000) if attempts else None),
            transcribed_at=utcnow(),
            segments=None,
        )
        self.log.warning("Failed: %s: %s: %s", row["source_uri"], row["error_type"], row["error_message"])
        return Outcome(row)
