"""Write planned pieces to files the API takes: packets copied, or PCM encoded.

* **Copy** (:class:`CopyRenderer`): a compressed audio stream whose codec the API takes (AAC, MP3,
  Opus, Vorbis, AMR) is cut by copying its packets, untouched, into an audio-only container (m4a,
  mp3, ogg, amr). Nothing is decoded or re-encoded: a piece is as many bytes as the audio it holds,
  and a video track is simply left behind. Spans of one piece are spliced: their packets follow
  each other with continuous timestamps.
* **Encode** (:class:`PcmRenderer`): PCM and other lossless sources become FLAC (what they are,
  only smaller); other codecs, and one channel of a multi-channel recording, become compact Opus.
  Samples come from :func:`~linkai_provider.io.analysis.decode_blocks`, the analysis's own timeline.

Both read the source once, in order, and yield each piece as soon as its last span has been read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from linkai_provider.io.analysis import FRAME_S, Analysis
from linkai_provider.io.decoding import decode_blocks
from linkai_provider.io.pcm import encode_pcm, require_av

__all__ = ["COPY_CONTAINERS", "CopyRenderer", "PcmRenderer", "Piece", "PieceSpec", "copy_container"]

# codec (FFmpeg's canonical name) -> (muxer, extension the API takes)
COPY_CONTAINERS: dict[str, tuple[str, str]] = {
    "aac": ("ipod", "m4a"),
    "mp3": ("mp3", "mp3"),
    "opus": ("ogg", "ogg"),
    "vorbis": ("ogg", "ogg"),
    "amr_nb": ("amr", "amr"),
    "amr_wb": ("amr", "amr"),
}


def copy_container(codec: str) -> tuple[str, str] | None:
    """Where packets of ``codec`` can be copied to, or None (they must be decoded and encoded)."""
    return COPY_CONTAINERS.get(codec)


@dataclass(frozen=True)
class PieceSpec:
    """A planned piece: spans of 20 ms frames of the recording, sent as one upload."""

    index: int
    spans: tuple[tuple[int, int], ...]  # [start, end) frames, in order, not overlapping
    channel: int | None = None  # None: all channels, mixed
    cut_in_silence: bool = True

    @property
    def start_s(self) -> float:
        return self.spans[0][0] * FRAME_S

    @property
    def end_s(self) -> float:
        return self.spans[-1][1] * FRAME_S

    @property
    def frames(self) -> int:
        return sum(e - s for s, e in self.spans)


@dataclass(frozen=True)
class Piece:
    """One piece written to a local file."""

    index: int  # 0-based, in order of the plan
    start_s: float  # span in the original recording, seconds
    end_s: float
    path: str  # local temp file; the caller deletes it, or the splitter's cleanup() does
    size: int  # bytes of that file
    audio_format: str  # the extension to upload with
    cut_in_silence: bool  # False if the cut ending this piece found no pause
    channel: int | None = None
    seconds: float = 0.0  # audio it holds (what the API bills)
    spans: tuple[tuple[float, float], ...] = field(default=())  # seconds of the recording it holds

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def _piece(spec: PieceSpec, analysis: Analysis, path: str, size: int, audio_format: str, seconds: float) -> Piece:
    """The :class:`Piece` written for ``spec``: its times end where the recording does."""
    end = analysis.seconds
    return Piece(
        spec.index,
        spec.start_s,
        min(spec.end_s, end),
        path,
        size,
        audio_format,
        spec.cut_in_silence,
        spec.channel,
        seconds,
        tuple((s * FRAME_S, min(e * FRAME_S, end)) for s, e in spec.spans),
    )


@contextlib.contextmanager
def _removed_on_failure(path: str) -> Iterator[None]:
    """A piece file half written when writing fails is not left behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


class CopyRenderer:
    """Copies the packets of each piece's spans into a new audio-only container."""

    def __init__(self, path: str, analysis: Analysis, prefix: str) -> None:
        target = copy_container(analysis.codec)
        if target is None or analysis.packets is None:
            raise ValueError(f"packets of {analysis.codec} cannot be copied into an API format")
        self.path, self.analysis, self.prefix = path, analysis, prefix
        self.muxer, self.ext = target

    def pieces(self, specs: Sequence[PieceSpec]) -> Iterator[Piece]:
        table = self.analysis.packets
        assert table is not None
        av = require_av()
        ordered = sorted(specs, key=lambda s: s.spans[0][0])
        # Each packet belongs to the piece whose span holds its start (packets that did not decode: none).
        frame_of = np.floor(table.start / FRAME_S + 1e-9).astype(np.int64)
        owner = np.full(len(table), -1, dtype=np.int64)
        for k, spec in enumerate(ordered):
            for s, e in spec.spans:
                owner[(frame_of >= s) & (frame_of < e) & table.ok] = k
        with av.open(self.path) as source:
            stream = source.streams.audio[0]
            packets = (p for p in source.demux(stream) if p.size)
            index = 0
            for k, spec in enumerate(ordered):
                mine = np.flatnonzero(owner == k)
                dest = f"{self.prefix}-{spec.index:04d}.{self.ext}"
                seconds = 0.0
                with _removed_on_failure(dest), av.open(dest, mode="w", format=self.muxer) as sink:
                    out = sink.add_stream_from_template(stream)
                    tb = stream.time_base or Fraction(1, stream.codec_context.sample_rate or 1)
                    at = 0
                    for want in mine.tolist():
                        while index <= want:
                            packet = next(packets)
                            index += 1
                        length = packet.duration or round(table.duration[want] / tb)
                        packet.pts = packet.dts = at
                        packet.duration = length
                        packet.stream = out
                        sink.mux(packet)
                        at += length
                        seconds += float(table.duration[want])
                yield _piece(spec, self.analysis, dest, os.path.getsize(dest), self.ext, seconds)


class _Collecting:
    """A piece's samples, gathered into one buffer of its final size (memory: the piece, once)."""

    def __init__(self, spec: PieceSpec, per_frame: int, total: int) -> None:
        self.spec = spec
        self.spans = [(s * per_frame, min(e * per_frame, total)) for s, e in spec.spans]
        self.end = self.spans[-1][1]
        self.buffer = np.empty(sum(max(e - s, 0) for s, e in self.spans), dtype=np.int16)
        self.filled = 0

    def add(self, samples: np.ndarray) -> None:
        self.buffer[self.filled : self.filled + samples.size] = samples
        self.filled += samples.size


class PcmRenderer:
    """Collects each piece's samples (one channel, or the channels mixed) while decoding once, and
    encodes the piece the moment its last span is read."""

    def __init__(
        self,
        path: str,
        analysis: Analysis,
        prefix: str,
        piece_format: str,
        *,
        bit_rate: int | None = None,
        name: str | None = None,
    ) -> None:
        self.path, self.analysis, self.prefix, self.name = path, analysis, prefix, name or path
        self.piece_format, self.bit_rate = piece_format, bit_rate

    def pieces(self, specs: Sequence[PieceSpec]) -> Iterator[Piece]:
        rate = self.analysis.rate
        per_frame = rate // 50
        total = self.analysis.samples
        waiting = sorted(specs, key=lambda s: s.spans[0][0])
        open_: list[_Collecting] = []
        for block in decode_blocks(self.path, name=self.name, rate=rate):
            length = block.pad if block.samples is None else block.samples.shape[1]
            a, b = block.at, block.at + length
            while waiting and waiting[0].spans[0][0] * per_frame < b:
                open_.append(_Collecting(waiting.pop(0), per_frame, total))
            for item in open_:
                for s, e in item.spans:
                    lo, hi = max(s, a), min(e, b)
                    if lo < hi:
                        item.add(self._channel(block.samples, item.spec.channel, lo - a, hi - a))
            done = [item for item in open_ if item.end <= b]
            for item in done:
                open_.remove(item)
                yield self._encode(item)
            if not waiting and not open_:
                return
        for item in open_:  # the recording ended before a planned span did (its end is the recording's)
            yield self._encode(item)

    @staticmethod
    def _channel(samples: np.ndarray | None, channel: int | None, lo: int, hi: int) -> np.ndarray:
        if samples is None:
            return np.zeros(hi - lo, dtype=np.int16)
        if channel is not None:
            return samples[channel, lo:hi]
        if samples.shape[0] == 1:
            return samples[0, lo:hi]
        return samples[:, lo:hi].mean(axis=0).astype(np.int16)

    def _encode(self, item: _Collecting) -> Piece:
        spec, samples = item.spec, item.buffer[: item.filled]
        dest = f"{self.prefix}-{spec.index:04d}.{self.piece_format}"
        with _removed_on_failure(dest):
            size = encode_pcm(samples, dest, self.piece_format, rate=self.analysis.rate, bit_rate=self.bit_rate)
        return _piece(spec, self.analysis, dest, size, self.piece_format, samples.size / self.analysis.rate)
