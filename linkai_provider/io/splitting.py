"""Split a long recording into pieces at silences, each piece encoded compactly and under a byte limit.

How (docs/long-recordings.md has the figures):

1. The file is decoded as a stream to 16 kHz mono ``int16`` (:mod:`linkai_provider.io.pcm`). Only
   the samples not yet in a piece are kept: at most one piece's worth (600 s is 19 MB).
2. Every 20 ms frame gets its energy in dBFS. The recording's speech level is the 90th percentile
   of the non-silent frames seen so far, the noise floor their 10th percentile. A frame is quiet
   when it is ``SILENCE_BELOW_SPEECH_DB`` under the speech level, or within ``NOISE_MARGIN_DB`` of
   the floor, or under ``ABSOLUTE_SILENCE_DB``; but never less than ``MIN_CONTRAST_DB`` under the
   speech level, so steady noise or music has no silence at all.
3. When a piece's budget (``max_piece_seconds``, or fewer seconds if the format's byte rate says
   ``max_piece_bytes`` would not hold them) is decoded, the last part of it (the search window) is
   searched backwards for runs of quiet frames at least ``MIN_SILENCE_S`` long. The longest run
   (runs over ``PREFERRED_SILENCE_S`` count alike, the latest wins) is cut in its middle. Without
   any such run the cut is in the middle of the quietest ``MIN_SILENCE_S`` stretch, with a WARNING
   and ``cut_in_silence=False``.
4. The piece is encoded; if the file is still over ``max_piece_bytes`` the span is searched again
   with a proportionally shorter budget and re-encoded, and the higher byte rate is remembered.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from linkai_provider.io.pcm import (
    PIECE_ENCODINGS,
    SAMPLE_RATE,
    AudioUnavailableError,
    UndecodableAudioError,
    decode_pcm,
    encode_pcm,
    require_av,
)
from linkai_provider.io.workdirs import make_workdir, spill_to_local, sweep_stale_workdirs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PIECE_FORMAT",
    "PIECE_FORMATS",
    "AudioSplitter",
    "AudioUnavailableError",
    "Piece",
    "PieceTooLargeError",
    "UndecodableAudioError",
    "require_av",
    "spill_to_local",
    "sweep_stale_workdirs",
]

PIECE_FORMATS: tuple[str, ...] = ("flac", "ogg", "mp3")
# Opus: a sixth of FLAC's bytes and the same recognition on speech (measured, docs/long-recordings.md).
DEFAULT_PIECE_FORMAT = "ogg"

FRAME = SAMPLE_RATE // 50  # 20 ms
MIN_SILENCE_S = 0.25
PREFERRED_SILENCE_S = 1.0
SILENCE_BELOW_SPEECH_DB = 30.0
ABSOLUTE_SILENCE_DB = -60.0
NOISE_MARGIN_DB = 6.0
MIN_CONTRAST_DB = 12.0
SEARCH_FRACTION = 0.2
MIN_SEARCH_S = 20.0
MIN_PIECE_S = 1.0
# Container headers and the last partial frame: kept out of the byte budget.
HEADER_ALLOWANCE = 4096

_MIN_RUN = round(MIN_SILENCE_S * 50)
_PREFERRED_RUN = round(PREFERRED_SILENCE_S * 50)


class PieceTooLargeError(ValueError):
    """Even a ``MIN_PIECE_S`` piece does not fit ``max_piece_bytes`` in the chosen format."""


@dataclass(frozen=True)
class Piece:
    """One encoded piece of a recording."""

    index: int  # 0-based, in order
    start_s: float  # span in the original recording, seconds
    end_s: float
    path: str  # local temp file; the caller deletes it, or AudioSplitter.cleanup() does
    size: int  # bytes of that file
    audio_format: str  # "flac" | "ogg" | "mp3": the extension to upload with
    cut_in_silence: bool  # False if the cut ending this piece found no silence

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class _Levels:
    """Histogram of frame levels (1 dB bins) for a running speech level in constant memory."""

    def __init__(self) -> None:
        self.counts = np.zeros(121, dtype=np.int64)  # -120 .. 0 dBFS

    def add(self, db: np.ndarray) -> None:
        bins = np.clip(np.rint(db), -120, 0).astype(np.int64) + 120
        self.counts += np.bincount(bins, minlength=121)

    def threshold(self) -> float:
        """dBFS under which a frame counts as quiet."""
        loud = self.counts.copy()
        loud[: int(ABSOLUTE_SILENCE_DB) + 120] = 0
        if loud.sum() == 0:
            return ABSOLUTE_SILENCE_DB
        speech = float(np.searchsorted(np.cumsum(loud), 0.9 * loud.sum())) - 120.0
        floor = float(np.searchsorted(np.cumsum(self.counts), 0.1 * self.counts.sum())) - 120.0
        # A room's noise floor counts as silence too; but a pause must be clearly quieter than
        # speech, so steady noise or music (floor close to the level) has none.
        quiet = max(speech - SILENCE_BELOW_SPEECH_DB, floor + NOISE_MARGIN_DB, ABSOLUTE_SILENCE_DB)
        return min(quiet, speech - MIN_CONTRAST_DB)


class _Pending:
    """Decoded samples not yet in a piece, with the dBFS of each complete 20 ms frame."""

    def __init__(self, capacity: int) -> None:
        self.samples = np.empty(capacity, dtype=np.int16)
        self.db = np.empty(capacity // FRAME + 1, dtype=np.float32)
        self.n = 0  # samples held
        self.start = 0  # absolute sample index of samples[0]; always a frame boundary
        self.levels = _Levels()

    @property
    def frames(self) -> int:
        return self.n // FRAME

    def append(self, block: np.ndarray) -> None:
        need = self.n + block.size
        if need > self.samples.size:
            self.samples = np.resize(self.samples, max(need, 2 * self.samples.size))
            self.db = np.resize(self.db, self.samples.size // FRAME + 1)
        done = self.frames
        self.samples[self.n : need] = block
        self.n = need
        new = self.samples[done * FRAME : self.frames * FRAME].astype(np.float32).reshape(-1, FRAME)
        if new.size:
            power = np.mean(np.square(new / 32768.0), axis=1)
            db = 10.0 * np.log10(power + 1e-12)
            self.db[done : self.frames] = db
            self.levels.add(db)

    def drop(self, count: int) -> None:
        """Forget the first ``count`` samples (a multiple of FRAME unless it is everything)."""
        rest = self.n - count
        self.samples[:rest] = self.samples[count : self.n]
        kept = rest // FRAME
        self.db[:kept] = self.db[count // FRAME : count // FRAME + kept]
        self.n = rest
        self.start += count


def find_cut(db: np.ndarray, limit: int, window: int, threshold: float) -> tuple[int, bool]:
    """Where to end a piece of at most ``limit`` frames: ``(frame index, found silence)``.

    Searches ``db[limit - window : limit]`` for runs of at least ``MIN_SILENCE_S`` under
    ``threshold`` and returns the middle of the best one; without one, the middle of the
    quietest ``MIN_SILENCE_S`` stretch.
    """
    lo = max(limit - window, 1)
    seg = db[lo:limit]
    quiet = np.concatenate(([0], (seg < threshold).astype(np.int8), [0]))
    edges = np.diff(quiet)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    usable = lengths >= _MIN_RUN
    if usable.any():
        score = np.where(usable, np.minimum(lengths, _PREFERRED_RUN), -1)
        best = len(score) - 1 - int(np.argmax(score[::-1]))  # latest of the longest
        return lo + int(starts[best] + ends[best]) // 2, True
    run = min(_MIN_RUN, seg.size)
    smooth = np.convolve(np.power(10.0, seg / 10.0), np.ones(run), mode="valid")
    best = smooth.size - 1 - int(np.argmin(smooth[::-1]))
    return lo + best + run // 2, False


class AudioSplitter:
    """Cuts recordings into pieces of at most ``max_piece_seconds`` and ``max_piece_bytes``.

    ``workdir`` is where the splitter's own ``linkai-split-<pid>-*`` folder is created (default:
    the system temp dir). Use as a context manager, or call :meth:`cleanup`, to remove every
    piece file it wrote. Several :meth:`split` generators may run at once (one per thread).
    """

    def __init__(
        self,
        *,
        max_piece_bytes: int,
        max_piece_seconds: float = 600.0,
        piece_format: str = DEFAULT_PIECE_FORMAT,
        workdir: str | None = None,
        logger: logging.Logger = log,
    ) -> None:
        if piece_format not in PIECE_FORMATS:
            raise ValueError(f"piece_format must be one of {', '.join(PIECE_FORMATS)}, not {piece_format!r}")
        rate = PIECE_ENCODINGS[piece_format].bytes_per_second
        if max_piece_bytes < HEADER_ALLOWANCE + MIN_PIECE_S * rate:
            raise ValueError(
                f"max_piece_bytes={max_piece_bytes} is too small for {piece_format} pieces: "
                f"at least {int(HEADER_ALLOWANCE + MIN_PIECE_S * rate)} bytes are needed"
            )
        if max_piece_seconds < 2 * MIN_PIECE_S:
            raise ValueError(f"max_piece_seconds must be at least {2 * MIN_PIECE_S:g}, not {max_piece_seconds}")
        require_av()
        self.max_piece_bytes = max_piece_bytes
        self.max_piece_seconds = float(max_piece_seconds)
        self.piece_format = piece_format
        self._base = workdir
        self._workdir: str | None = None
        self._lock = threading.Lock()
        self._calls = itertools.count()
        self._log = logger

    @property
    def workdir(self) -> str:
        """This splitter's temp folder (created on first use)."""
        with self._lock:
            if self._workdir is None:
                self._workdir = make_workdir(self._base)
            return self._workdir

    def cleanup(self) -> None:
        """Remove every file this splitter wrote (its whole temp folder)."""
        with self._lock:
            folder, self._workdir = self._workdir, None
        if folder:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> AudioSplitter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()

    def split(self, path: str, *, name: str | None = None) -> Iterator[Piece]:
        """Decode ``path`` as a stream and yield each piece as soon as it is encoded.

        :param name: how the recording is named in logs and errors (e.g. its URL); default ``path``.
        :raises UndecodableAudioError: PyAV cannot decode the file.
        :raises PieceTooLargeError: the byte limit cannot hold even a ``MIN_PIECE_S`` piece.
        """
        label = name or path
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label).stem)[:60] or "audio"
        prefix = os.path.join(self.workdir, f"{stem}-{next(self._calls)}")
        run = _Run(self, label, prefix)
        yield from run.pieces(decode_pcm(path, name=label))


class _Run:
    """The state of one :meth:`AudioSplitter.split` call."""

    def __init__(self, splitter: AudioSplitter, label: str, prefix: str) -> None:
        self.s = splitter
        self.label = label
        self.prefix = prefix
        self.rate = PIECE_ENCODINGS[splitter.piece_format].bytes_per_second
        self.index = 0

    def budget_frames(self) -> int:
        seconds = min(self.s.max_piece_seconds, (self.s.max_piece_bytes - HEADER_ALLOWANCE) / self.rate)
        return int(seconds * 50)

    def pieces(self, blocks: Iterator[np.ndarray]) -> Iterator[Piece]:
        pending = _Pending((self.budget_frames() + 50) * FRAME)
        for block in blocks:
            pending.append(block)
            while pending.frames > self.budget_frames():
                yield self.next_piece(pending, final=False)
        while pending.n:
            yield self.next_piece(pending, final=True)

    def next_piece(self, pending: _Pending, *, final: bool) -> Piece:
        limit = self.budget_frames()
        fmt = self.s.piece_format
        searched_from = 0.0
        while True:
            if final and pending.n <= limit * FRAME:
                end, silent = pending.n, True  # the recording's end
            else:
                window = int(min(max(MIN_SEARCH_S * 50, SEARCH_FRACTION * limit), limit / 2))
                cut, silent = find_cut(pending.db, limit, window, pending.levels.threshold())
                end = cut * FRAME
                searched_from = (pending.start + (limit - window) * FRAME) / SAMPLE_RATE
            dest = f"{self.prefix}-{self.index:04d}.{fmt}"
            try:
                size = encode_pcm(pending.samples[:end], dest, fmt)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest)
                raise
            seconds = end / SAMPLE_RATE
            if size <= self.s.max_piece_bytes:
                break
            os.unlink(dest)
            # Remember the real byte rate (noise, music) so later pieces are planned shorter.
            self.rate = max(self.rate, (size - HEADER_ALLOWANCE) / seconds)
            shorter = int(end // FRAME * (self.s.max_piece_bytes - HEADER_ALLOWANCE) / size * 0.95)
            limit = min(shorter, end // FRAME - 1)
            if limit < MIN_PIECE_S * 50:
                raise PieceTooLargeError(
                    f"{self.label!r}: {size} bytes for {seconds:.1f} s of {fmt}; max_piece_bytes="
                    f"{self.s.max_piece_bytes} cannot hold a {MIN_PIECE_S:g} s piece"
                )
            final = False  # the re-cut leaves audio after it
            self.s._log.info(
                "%s: piece %d was %d bytes, over the limit; cutting it shorter", self.label, self.index, size
            )
        start_s = pending.start / SAMPLE_RATE
        end_s = (pending.start + end) / SAMPLE_RATE
        if not silent:
            self.s._log.warning(
                "%s: no silence between %.1f s and %.1f s; cut at its quietest point, %.2f s (a word may be cut)",
                self.label,
                searched_from,
                start_s + limit / 50,
                end_s,
            )
        piece = Piece(self.index, start_s, end_s, dest, size, fmt, silent)
        pending.drop(end)
        self.index += 1
        return piece
