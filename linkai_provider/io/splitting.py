"""Plan a recording's pieces: what is sent, in which spans, cut where.

From an :class:`~linkai_provider.io.analysis.Analysis` (docs/long-recordings.md has the figures):

1. **What is sent** (per channel, or the channels mixed): the recording less its undecodable gaps,
   less silences of at least ``SKIP_MIN_S`` (:mod:`linkai_provider.io.speech`), less the spans
   already answered in an earlier try (``done``: their boundaries are fixed cut points).
2. **Groups.** Spans that may be spliced into one piece: with the channels mixed, every span
   between two answered pieces; with ``channels="separate"``, a *turn*: the spans of one channel
   until another channel speaks, so that the row's text can follow the conversation.
3. **Cuts.** A group that does not fit ``max_seconds`` and the byte budget is cut in a pause
   between sentences. Its pieces are balanced (a group of 2,410 s in 600 s pieces is cut about
   every 480 s, not into four of 600 s and a tail of 10 s): each cut is searched before the
   balanced length (up to 15 % past it), and no cut leaves a piece shorter than ``floor_s``
   unless the group is. Without a pause in the search window the cut is at the
   quietest point (WARNING; ``cut_in_silence=False``).

Byte budgets are met in advance: a copied piece's size is the sum of its packets' (known from the
analysis) plus container overhead; an encoded piece's is its encoding's constant bit rate (FLAC:
raw PCM, which FLAC never exceeds).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from linkai_provider.io.analysis import FRAMES_PER_S, Analysis, analyze
from linkai_provider.io.pcm import (
    PIECE_ENCODINGS,
    AudioUnavailableError,
    UndecodableAudioError,
    require_av,
)
from linkai_provider.io.render import CopyRenderer, PcmRenderer, Piece, PieceSpec, copy_container
from linkai_provider.io.speech import active_frames, cut_threshold, find_cut, speech_spans
from linkai_provider.io.workdirs import make_workdir, spill_to_local, sweep_stale_workdirs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PIECE_FORMAT",
    "FLOOR_S",
    "PIECE_FORMATS",
    "AudioSplitter",
    "AudioUnavailableError",
    "Piece",
    "PieceSpec",
    "PieceTooLargeError",
    "PlanLimits",
    "UndecodableAudioError",
    "encoded_bytes_per_second",
    "frame_costs",
    "plan_pieces",
    "require_av",
    "spill_to_local",
    "sweep_stale_workdirs",
]

PIECE_FORMATS: tuple[str, ...] = ("flac", "ogg", "mp3")
DEFAULT_PIECE_FORMAT = "ogg"
FLOOR_S = 30.0
MIN_PIECE_S = 1.0
SEARCH_FRACTION = 0.3  # a cut is searched in the last 30 % before the balanced target (+15 %)
BALANCE_SLACK = 1.15
MIN_SEARCH_S = 20.0
HEADER_ALLOWANCE = 4096  # container headers: kept out of the byte budget
PACKET_OVERHEAD = 16  # container bytes per copied packet (m4a sample tables, Ogg lacing, ...)
# A frame of one channel this far under the loudest channel is the other party's echo, not speech.
ECHO_BELOW_DB = 25.0

Span = tuple[int, int]


class PieceTooLargeError(ValueError):
    """The byte budget cannot hold even ``MIN_PIECE_S`` of this recording."""


@dataclass(frozen=True)
class PlanLimits:
    max_seconds: float
    max_bytes: int
    floor_s: float = FLOOR_S


def encoded_bytes_per_second(piece_format: str, rate: int, bit_rate: int | None = None) -> float:
    """Planning rate of an encoded piece: FLAC at raw PCM (its worst case), the others at their
    constant bit rate plus container overhead."""
    if piece_format == "flac":
        return 2.0 * rate
    enc = PIECE_ENCODINGS[piece_format]
    if bit_rate:
        return bit_rate / 8 * 1.05
    return enc.bytes_per_second


def frame_costs(analysis: Analysis, *, copy: bool, bytes_per_second: float = 0.0) -> np.ndarray:
    """Bytes each 20 ms frame of the timeline adds to a piece."""
    frames = analysis.frames
    if copy and analysis.packets is not None:
        table = analysis.packets
        at = np.minimum(np.floor(table.start * FRAMES_PER_S + 1e-9).astype(np.int64), max(frames - 1, 0))
        weights = np.where(table.ok, table.size + PACKET_OVERHEAD, 0).astype(np.float64)
        return np.bincount(at, weights=weights, minlength=frames)[:frames]
    return np.full(frames, bytes_per_second / FRAMES_PER_S)


def _subtract(spans: list[Span], holes: Sequence[Span]) -> list[Span]:
    out = spans
    for hs, he in holes:
        nxt: list[Span] = []
        for s, e in out:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return out


def _split_at(spans: list[Span], holes: Sequence[Span]) -> list[list[Span]]:
    """``spans`` less ``holes``, as groups: a hole (an answered piece) ends a group."""
    groups: list[list[Span]] = [[]]
    bounds = sorted(holes)
    for s, e in _subtract(spans, bounds):
        if groups[-1] and any(groups[-1][-1][1] <= hs < s or groups[-1][-1][1] < he <= s for hs, he in bounds):
            groups.append([])
        groups[-1].append((s, e))
    return [g for g in groups if g]


def _to_frames(spans_s: Sequence[tuple[float, float]]) -> list[Span]:
    return [(math.floor(s * FRAMES_PER_S + 1e-6), math.ceil(e * FRAMES_PER_S - 1e-6)) for s, e in spans_s]


def _turns(islands: Mapping[int | None, list[Span]]) -> list[tuple[int | None, list[Span]]]:
    """Consecutive spans of one channel until another channel's span starts: the turns of a call."""
    events = sorted((s, e, ch) for ch, spans in islands.items() for s, e in spans)
    turns: list[tuple[int | None, list[Span]]] = []
    for s, e, ch in events:
        if turns and turns[-1][0] == ch:
            turns[-1][1].append((s, e))
        else:
            turns.append((ch, [(s, e)]))
    return turns


def plan_pieces(
    analysis: Analysis,
    *,
    limits: PlanLimits,
    costs: np.ndarray,
    channels: Sequence[int | None] = (None,),
    skip_silence: bool = True,
    done: Mapping[int | None, Sequence[tuple[float, float]]] | None = None,
    first_index: int = 0,
    label: str = "recording",
) -> list[PieceSpec]:
    """Every piece still to send, in the order of the recording (see the module docstring).

    :param channels: ``(None,)`` for the channels mixed, or the channel indexes to send on their own.
    :param done: per channel, the spans (seconds) already answered: not planned again.
    :raises PieceTooLargeError: the byte budget cannot hold ``MIN_PIECE_S`` of audio.
    """
    gaps = _to_frames(analysis.gaps)
    everything = [(0, analysis.frames)]
    islands: dict[int | None, list[Span]] = {}
    dbs: dict[int | None, np.ndarray] = {}
    loudest = analysis.db.max(axis=0) if len(channels) > 1 else None
    for ch in channels:
        db = analysis.mix_db if ch is None else analysis.db[ch]
        dbs[ch] = db
        if skip_silence:
            active = active_frames(db)
            if loudest is not None:  # another channel's echo is not this channel's speech
                active &= db >= loudest - ECHO_BELOW_DB
            spans = speech_spans(active)
        else:
            spans = list(everything)
        islands[ch] = _subtract(spans, gaps)
    groups = _turns(islands) if len(channels) > 1 else [(ch, spans) for ch, spans in islands.items()]
    specs: list[PieceSpec] = []
    for ch, spans in groups:
        answered = _to_frames((done or {}).get(ch, ()))
        for group in _split_at(spans, answered):
            for piece_spans, silent in cut_group(group, dbs[ch], costs, limits=limits, label=label):
                specs.append(PieceSpec(0, piece_spans, ch, silent))
    specs.sort(key=lambda p: (p.spans[0][0], -1 if p.channel is None else p.channel))
    return [PieceSpec(first_index + i, p.spans, p.channel, p.cut_in_silence) for i, p in enumerate(specs)]


def cut_group(
    spans: Sequence[Span], db: np.ndarray, costs: np.ndarray, *, limits: PlanLimits, label: str = "recording"
) -> list[tuple[tuple[Span, ...], bool]]:
    """Cut one group of spliceable spans into pieces within ``limits``: ``[(spans, cut in a pause)]``."""
    index = np.concatenate([np.arange(s, e) for s, e in spans]) if spans else np.zeros(0, np.int64)
    total = index.size
    if total == 0:
        return []
    cdb, cum = db[index], np.concatenate(([0.0], np.cumsum(costs[index])))
    threshold = cut_threshold(db)
    max_frames = max(int(limits.max_seconds * FRAMES_PER_S), 2)
    budget = limits.max_bytes - HEADER_ALLOWANCE
    floor = int(min(limits.floor_s, limits.max_seconds / 3) * FRAMES_PER_S)
    least = int(MIN_PIECE_S * FRAMES_PER_S)
    pieces: list[tuple[tuple[Span, ...], bool]] = []
    pos = 0
    while pos < total:
        rest = total - pos
        fit = min(max_frames, int(np.searchsorted(cum, cum[pos] + budget, side="right")) - 1 - pos)
        if fit >= rest:
            pieces.append((_spans_of(index[pos:]), True))
            break
        if fit < least:
            raise PieceTooLargeError(
                f"max_upload_bytes={limits.max_bytes} cannot hold {MIN_PIECE_S:g} s of this recording "
                f"({int(cum[pos + least] - cum[pos])} bytes)"
            )
        count = max(2, math.ceil(rest / fit))
        target = rest / count  # balanced pieces: no short tail
        least_after = min(floor, fit // 3)  # what a cut must leave for the pieces after it
        hi = min(fit, rest - least_after, int(target * BALANCE_SLACK))
        window = int(max(SEARCH_FRACTION * target, MIN_SEARCH_S * FRAMES_PER_S))
        window = max(1, min(window, hi - least_after, hi - 1))
        cut, silent = find_cut(cdb[pos : pos + hi], hi, window, threshold)
        cut = max(cut, 1)
        if not silent:
            at = (index[pos + cut - 1] + 1) / FRAMES_PER_S
            log.warning(
                "%s: no silence between %.1f s and %.1f s; cut at its quietest point, %.2f s (a word may be cut)",
                label,
                index[pos + hi - window] / FRAMES_PER_S,
                index[pos + hi - 1] / FRAMES_PER_S,
                at,
            )
        pieces.append((_spans_of(index[pos : pos + cut]), silent))
        pos += cut
    return pieces


def _spans_of(frames: np.ndarray) -> tuple[Span, ...]:
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [frames.size]))
    return tuple((int(frames[a]), int(frames[b - 1]) + 1) for a, b in zip(starts.tolist(), ends.tolist(), strict=True))


class AudioSplitter:
    """Cuts one recording at a time into pieces of at most ``max_piece_seconds`` and ``max_piece_bytes``,
    encoded as ``piece_format`` (the channels mixed, the whole recording, nothing skipped): the
    building block for tools and benchmarks; the operator plans with :func:`plan_pieces` itself.

    ``workdir`` is where the splitter's own ``linkai-split-<pid>-*`` folder is created (default: the
    system temp dir). Use as a context manager, or call :meth:`cleanup`, to remove every piece file.
    """

    def __init__(
        self,
        *,
        max_piece_bytes: int,
        max_piece_seconds: float = 600.0,
        piece_format: str = DEFAULT_PIECE_FORMAT,
        workdir: str | None = None,
        copy: bool = False,
        skip_silence: bool = False,
        logger: logging.Logger = log,
    ) -> None:
        if piece_format not in PIECE_FORMATS:
            raise ValueError(f"piece_format must be one of {', '.join(PIECE_FORMATS)}, not {piece_format!r}")
        least = HEADER_ALLOWANCE + MIN_PIECE_S * encoded_bytes_per_second(piece_format, 16000)
        if max_piece_bytes < least:
            raise ValueError(
                f"max_piece_bytes={max_piece_bytes} is too small for {piece_format} pieces: "
                f"at least {int(least)} bytes are needed"
            )
        if max_piece_seconds < 2 * MIN_PIECE_S:
            raise ValueError(f"max_piece_seconds must be at least {2 * MIN_PIECE_S:g}, not {max_piece_seconds}")
        require_av()
        self.max_piece_bytes = max_piece_bytes
        self.max_piece_seconds = float(max_piece_seconds)
        self.piece_format = piece_format
        self.copy, self.skip_silence = copy, skip_silence
        self._base = workdir
        self._workdir: str | None = None
        self._lock = threading.Lock()
        self._calls = 0
        self._log = logger

    @property
    def workdir(self) -> str:
        """This splitter's temp folder (created on first use)."""
        with self._lock:
            if self._workdir is None:
                self._workdir = make_workdir(self._base)
            return self._workdir

    def cleanup(self) -> None:
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

    def prefix(self, label: str) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(label).stem)[:60] or "audio"
        with self._lock:
            self._calls += 1
            call = self._calls
        return os.path.join(self.workdir, f"{stem}-{call}")

    def split(self, path: str, *, name: str | None = None) -> Iterator[Piece]:
        """Analyse ``path``, plan its pieces and yield each as soon as it is written.

        :raises UndecodableAudioError: PyAV cannot decode the file.
        :raises PieceTooLargeError: the byte limit cannot hold even a ``MIN_PIECE_S`` piece.
        """
        label = name or path
        analysis = analyze(path, name=label)
        copy = self.copy and copy_container(analysis.codec) is not None
        rate = encoded_bytes_per_second(self.piece_format, analysis.rate)
        specs = plan_pieces(
            analysis,
            limits=PlanLimits(self.max_piece_seconds, self.max_piece_bytes),
            costs=frame_costs(analysis, copy=copy, bytes_per_second=rate),
            skip_silence=self.skip_silence,
            label=label,
        )
        prefix = self.prefix(label)
        renderer = (
            CopyRenderer(path, analysis, prefix)
            if copy
            else PcmRenderer(path, analysis, prefix, self.piece_format, name=label)
        )
        yield from renderer.pieces(specs)
