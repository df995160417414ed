"""A recording analysed, routed and sent: as it is, or as pieces that are journaled as they are answered.

:class:`Recording` is one file's job inside :class:`~linkai_provider.recording.RecordingTranscriber`:

1. **Analyse** (:func:`~linkai_provider.io.analysis.analyze`): no audio stream or nothing decodable
   is a failed row; the truthful duration and the warnings (damaged tail, gaps, a header that lies)
   are known before anything is sent.
2. **Route**: nothing to hear is an ``ok`` row without a request; a clean, plain audio file within
   the limits goes as it is; everything else goes as pieces.
3. **Pieces**: planned (:func:`~linkai_provider.io.splitting.plan_pieces`) around the spans answered
   in earlier tries, written (packets copied or PCM encoded) while earlier ones are in flight, sent
   through the batch's scheduler, and each answered one handed to the pieces sink at once. A 413
   teaches a lower budget and the rest is planned again; a failed piece stops the file's pass and
   makes the row ``failed``, but its answered pieces stay journaled for the next try.
4. **Row**: segments in time order (with their ``channel`` when separated), the text (joined, or
   one line per turn ``[chN] ...`` for separated channels), warnings, true counts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from linkai_provider.dataset import STATUS_OK, utcnow
from linkai_provider.exceptions import LinkAIFatalError, PayloadTooLargeError, UnreadableFileError
from linkai_provider.hooks.linkai import Transcription
from linkai_provider.io.analysis import Analysis, analyze
from linkai_provider.io.pcm import UndecodableAudioError
from linkai_provider.io.render import CopyRenderer, PcmRenderer, Piece, PieceSpec
from linkai_provider.io.splitting import (
    PieceTooLargeError,
    PlanLimits,
    encoded_bytes_per_second,
    frame_costs,
    plan_pieces,
)
from linkai_provider.resume import PieceRecord, PiecesSink, plan_for, reusable
from linkai_provider.routing import Assessment
from linkai_provider.scheduler import PRIORITY_PIECE, SchedulerCancelled
from linkai_provider.uploads import (
    MAX_SPLIT_PASSES,
    MIN_BUDGET_BYTES,
    Outcome,
    clock,
    sha256_of,
)

if TYPE_CHECKING:
    from linkai_provider.hooks.linkai import LinkAIHook
    from linkai_provider.io.sources import AudioFile
    from linkai_provider.scheduler import RequestScheduler
    from linkai_provider.uploads import FileSettings, UploadBudget


class Sender(Protocol):
    """What a :class:`Recording` needs of the transcriber that owns it
    (:class:`~linkai_provider.recording.RecordingTranscriber`, which imports this module lazily)."""

    hook: LinkAIHook
    scheduler: RequestScheduler
    settings: FileSettings
    budget: UploadBudget
    cancel: threading.Event
    piece_pool: ThreadPoolExecutor
    log: Any
    answered: Mapping[tuple[str, str], Sequence[Any]]
    pieces_sink: PiecesSink | None

    def failed(
        self, row: dict[str, Any], exc: BaseException, started: float, *, size: int | None = None, attempts: int = 0
    ) -> Outcome: ...

    def header_seconds(self, file: AudioFile, local: str) -> float | None: ...

    def send_whole(self, file: AudioFile, source: Any, row: dict[str, Any], started: float) -> Outcome: ...


__all__ = ["Recording"]


@dataclass
class _Sent:
    piece: Piece
    answer: Transcription | None = None
    error: BaseException | None = None
    started: float | None = None
    ended: float | None = None


class Recording:
    """One file on local disk, from analysis to its row (see the module docstring)."""

    def __init__(self, owner: Sender, file: AudioFile, local: str, row: dict[str, Any], started: float):
        self.t, self.file, self.local, self.row, self.started = owner, file, local, row, started
        self.settings, self.log = owner.settings, owner.log
        self.warnings: list[str] = []
        self.sent: list[_Sent] = []  # every piece sent in this try, answered or not
        self.attempts = 0
        self.next_index = 0
        self.analysis: Analysis
        self.channels: list[int | None] = [None]
        self.reused: dict[int | None, list[Any]] = {None: []}
        self.a: Assessment

    # -- 1 and 2: analyse and route -------------------------------------------------------------------
    def transcribe(self) -> Outcome:
        file, row = self.file, self.row
        try:
            analysis = analyze(self.local, name=file.uri)
        except UndecodableAudioError as exc:  # no audio stream, or nothing that decodes
            return self.t.failed(row, UnreadableFileError(f"{exc}; not uploaded"), self.started)
        except Exception as exc:  # a decoder's surprise is this file's failure, never the batch's
            self.log.exception("Unexpected error analysing %s", file.uri)
            reason = f"cannot decode {file.uri!r}: {type(exc).__name__}: {exc}; not uploaded"
            return self.t.failed(row, UnreadableFileError(reason), self.started)
        self.analysis = analysis
        header = analysis.header_seconds
        self.a = a = Assessment(analysis, self.settings, header if header is not None else self.t.header_seconds(
            file, self.local))  # fmt: skip
        row["audio_duration_s"] = a.duration
        self.warnings = a.warnings()
        self.channels = a.channels
        hint = file.uri if a.hint else None
        if not a.anything_to_hear():
            self.warnings.append(
                f"no speech energy in the recording ({clock(analysis.seconds)} of silence): nothing was sent"
            )
            return self._ok_without_request(hint)
        prior = self.t.answered.get((file.uri, file.fingerprint), ())
        self.reused = reusable(prior, self.channels, self.settings.extra_fields)
        why_not = a.why_not_as_it_is(file.size, self.t.budget.bytes, any(self.reused.values()))
        if why_not is None:
            try:
                outcome = self.t.send_whole(file, self.local, row, self.started)
                return Outcome(outcome.row, outcome.fatal, billed_s=outcome.billed_s, hint=hint)
            except PayloadTooLargeError as exc:
                if not (self.settings.split_long_audio and self.t.budget.learn(file.size, exc.limit_bytes)):
                    return self.t.failed(row, exc, self.started, size=file.size)
                self.attempts += exc.attempts or 0
        else:
            self.log.debug("%s goes as pieces: %s", file.uri, why_not)
        try:
            outcome = self._pieces()
        except SchedulerCancelled:  # stopped (SIGTERM): no row; what was answered is journaled and billed
            return Outcome(None, split=True, billed_s=self._counts()[2])
        return Outcome(outcome.row, outcome.fatal, True, outcome.billed_s, outcome.reused, hint)

    def _ok_without_request(self, hint: str | None) -> Outcome:
        self.row.update(
            status=STATUS_OK,
            text="",
            content_sha256=None,
            transcribed_at=utcnow(),
            segments=[],
            warnings=self.warnings or None,
        )
        self.log.info("%s: %s", self.file.uri, self.warnings[-1])
        return Outcome(self.row, hint=hint)

    # -- 3: pieces ------------------------------------------------------------------------------------
    def _pieces(self) -> Outcome:
        row, a = self.row, self.analysis
        with contextlib.suppress(OSError):
            row["content_sha256"] = sha256_of(self.local)  # what identifies the recording that was cut
        try:
            for _ in range(MAX_SPLIT_PASSES):
                budget = self.t.budget.bytes
                copy, fmt, bit_rate = self.a.piece_route(budget)
                longest = self.settings.max_chunk_seconds if self.settings.split_long_audio else a.seconds + 1.0
                limits = PlanLimits(longest, budget)
                rate = 0.0 if copy else encoded_bytes_per_second(fmt, a.rate, bit_rate)
                costs = frame_costs(a, copy=copy, bytes_per_second=rate)
                specs = plan_pieces(
                    a,
                    limits=limits,
                    costs=costs,
                    channels=self.channels,
                    skip_silence=self.settings.skip_silence,
                    done=self._done_spans(),
                    first_index=self.next_index,
                    label=self.file.uri,
                )
                if not self.settings.split_long_audio and len(specs) + self._answered_count() > 1:
                    reason = (
                        f"file is {self.file.size} bytes ({a.seconds:.0f} s), over the upload limit of {budget} "
                        "bytes (max_upload_bytes); split_long_audio=False, so it is not sent"
                    )
                    return self.t.failed(row, UnreadableFileError(reason), self.started)
                if not specs:
                    break
                self.next_index += len(specs)
                self._send(specs, copy, fmt, bit_rate)
                bad = self._first_failure()
                refused = [r for r in self.sent if isinstance(r.error, PayloadTooLargeError)]
                if refused and (bad is None or isinstance(bad.error, PayloadTooLargeError)):
                    smallest = min(refused, key=lambda r: r.piece.size)
                    error = smallest.error
                    assert isinstance(error, PayloadTooLargeError)
                    if smallest.piece.size >= MIN_BUDGET_BYTES and self.t.budget.learn(
                        smallest.piece.size, error.limit_bytes
                    ):
                        # Taught the budget: planned again, smaller. The refused attempts stay counted.
                        self.attempts += sum(getattr(r.error, "attempts", 0) or 0 for r in refused)
                        self.sent = [r for r in self.sent if r.answer is not None]
                        continue
                if bad is not None:
                    return self._failed_row(bad)
            else:
                bad = self._first_failure()
                if bad is not None:
                    return self._failed_row(bad)
        except SchedulerCancelled:
            raise
        except PieceTooLargeError as exc:
            return self.t.failed(row, UnreadableFileError(f"cannot split {self.file.uri}: {exc}"), self.started)
        except (UndecodableAudioError, ValueError) as exc:
            return self.t.failed(row, UnreadableFileError(f"cannot cut {self.file.uri}: {exc}"), self.started)
        return self._ok_row()

    def _reused_count(self) -> int:
        return sum(len(v) for v in self.reused.values())

    def _answered_count(self) -> int:
        return self._reused_count() + sum(1 for r in self.sent if r.answer is not None)

    def _done_spans(self) -> dict[int | None, list[tuple[float, float]]]:
        done: dict[int | None, list[tuple[float, float]]] = {ch: [] for ch in self.channels}
        for ch, records in self.reused.items():
            done[ch].extend((r.start_s, r.end_s) for r in records)
        for r in self.sent:
            if r.answer is not None:
                done[r.piece.channel].append((r.piece.start_s, r.piece.end_s))
        return done

    def _first_failure(self) -> _Sent | None:
        failures = [r for r in self.sent if r.error is not None and not isinstance(r.error, SchedulerCancelled)]
        return min(failures, key=lambda r: r.piece.index) if failures else None

    def _send(self, specs: list[PieceSpec], copy: bool, fmt: str, bit_rate: int | None) -> None:
        """Write and send every piece (one pass). A failed piece stops the pass: the pieces in flight
        finish (and are journaled); the rest wait for the next try."""
        from linkai_provider.io.splitting import AudioSplitter

        t = self.t
        splitter = AudioSplitter(max_piece_bytes=1 << 40, piece_format="flac", logger=self.log)
        prefix = splitter.prefix(self.file.uri)
        renderer = (
            CopyRenderer(self.local, self.analysis, prefix)
            if copy
            else PcmRenderer(self.local, self.analysis, prefix, fmt, bit_rate=bit_rate, name=self.file.uri)
        )
        stop = threading.Event()
        room = threading.Semaphore(t.scheduler.ceiling + 1)  # pieces written ahead of sending
        futures: list[Future[_Sent]] = []
        try:
            for piece in renderer.pieces(specs):
                while not room.acquire(timeout=0.5):
                    if t.cancel.is_set() or stop.is_set():
                        break
                if t.cancel.is_set() or stop.is_set():
                    with contextlib.suppress(OSError):
                        os.unlink(piece.path)
                    break
                futures.append(t.piece_pool.submit(self._send_piece, piece, stop, room))
            self.sent.extend(f.result() for f in futures)
        finally:
            stop.set()
            for f in futures:
                f.cancel()
            splitter.cleanup()
        if t.cancel.is_set() and not any(isinstance(r.error, LinkAIFatalError) for r in self.sent):
            raise SchedulerCancelled()

    def _send_piece(self, piece: Piece, stop: threading.Event, room: threading.Semaphore) -> _Sent:
        t, result = self.t, _Sent(piece)
        stem = os.path.splitext(os.path.basename(self.file.path))[0]
        channel = "" if piece.channel is None else f".ch{piece.channel}"
        try:
            if stop.is_set() or t.cancel.is_set():
                result.error = SchedulerCancelled()
                return result
            result.started = time.monotonic()
            result.answer = t.hook.transcribe(
                piece.path,
                filename=f"{stem}{channel}.part{piece.index:04d}.{piece.audio_format}",
                extra_fields=self.settings.extra_fields,
                cancel=t.cancel,
                gate=t.scheduler,
                priority=PRIORITY_PIECE,
            )
            self._journal(result)
        except LinkAIFatalError as exc:
            t.cancel.set()
            result.error = exc
        except BaseException as exc:
            result.error = exc
            stop.set()  # the rest of the file waits for the next try; its answered pieces are kept
        finally:
            result.ended = time.monotonic()
            room.release()
            with contextlib.suppress(OSError):
                os.unlink(piece.path)  # sent (or given up): its temp file is not needed any more
        return result

    def _journal(self, result: _Sent) -> None:
        sink, answer, piece = self.t.pieces_sink, result.answer, result.piece
        if sink is None or answer is None:
            return
        record = PieceRecord(
            source_uri=self.file.uri,
            source_fingerprint=self.file.fingerprint,
            plan=plan_for(piece.channel, self.settings.extra_fields),
            channel=piece.channel,
            start_s=piece.start_s,
            end_s=piece.end_s,
            text=answer.text.strip(),
            attempts=answer.attempts,
            latency_ms=answer.latency_ms,
            bytes_sent=answer.size_bytes,
            audio_seconds=round(piece.seconds, 3),
            answered_at=utcnow(),
        )
        try:
            sink([record])
        except Exception:  # the row still carries the text; only resumability is lost
            self.log.exception("Could not journal an answered piece of %s", self.file.uri)

    # -- 4: the row -----------------------------------------------------------------------------------
    def _counts(self) -> tuple[int, int | None, float]:
        attempts = self.attempts + sum(
            r.answer.attempts if r.answer else getattr(r.error, "attempts", 0) or 0 for r in self.sent
        )
        began = [r.started for r in self.sent if r.started is not None]
        ended = [r.ended for r in self.sent if r.ended is not None and r.started is not None]
        latency = int((max(ended) - min(began)) * 1000) if began and ended else None
        billed = sum(r.piece.seconds for r in self.sent if r.answer is not None)
        return attempts, latency, billed

    def _failed_row(self, bad: _Sent) -> Outcome:
        p, exc = bad.piece, bad.error
        assert exc is not None
        attempts, latency, billed = self._counts()
        self.row["latency_ms"] = latency
        self.row["chunks"] = self._answered_count()
        failed = self.t.failed(self.row, exc, self.started, size=p.size)
        assert failed.row is not None
        where = "" if p.channel is None else f" of channel {p.channel}"
        failed.row["error_message"] = (
            f"piece {p.index + 1}{where} ({p.start_s:.1f}-{p.end_s:.1f} s): {failed.row['error_message']}"
        )
        failed.row["attempts"] = attempts
        failed.row["chunks"] = failed.row["chunks"] or None
        fatal = exc if isinstance(exc, LinkAIFatalError) else None
        return Outcome(failed.row, fatal=fatal, split=True, billed_s=billed, reused=self._reused_count())

    def _ok_row(self) -> Outcome:
        parts: list[tuple[float, float, int | None, str]] = [
            (r.start_s, r.end_s, r.channel, r.text) for records in self.reused.values() for r in records
        ]
        parts += [
            (r.piece.start_s, r.piece.end_s, r.piece.channel, r.answer.text.strip()) for r in self.sent if r.answer
        ]
        parts.sort(key=lambda p: (p[0], -1 if p[2] is None else p[2]))
        if not parts:  # every channel's sound was the other party's echo: nothing was worth sending
            self.warnings.append("no speech energy in any channel: nothing was sent")
        attempts, latency, billed = self._counts()
        if self.channels == [None]:
            text = " ".join(t for *_, t in parts if t)
        else:
            text = "\n".join(f"[ch{ch}] {t}" for _, _, ch, t in parts if t)
        self.row.update(
            status=STATUS_OK,
            text=text,
            attempts=attempts,
            latency_ms=latency,
            transcribed_at=utcnow(),
            chunks=len(parts) or None,
            segments=[{"start_s": s, "end_s": e, "text": t, "channel": ch} for s, e, ch, t in parts],
            warnings=self.warnings or None,
        )
        return Outcome(self.row, split=True, billed_s=billed, reused=self._reused_count())
