"""Decoding a recording's first audio stream into blocks of int16 samples on one true timeline.

Used by the analysis (:mod:`linkai_provider.io.analysis`) and by the PCM renderer
(:mod:`linkai_provider.io.render`), so that spans planned from an analysis cut exactly the samples
it measured:

* **One block per packet**, resampled to 8 kHz (telephone audio) or 16 kHz (everything else),
  channels kept (up to ``MAX_CHANNELS``).
* **Damage keeps times true.** A packet that does not decode is a block of padding of its duration;
  a demuxer that resyncs past damage skips audio silently, so a packet whose timestamp runs ahead of
  the audio decoded so far is preceded by padding of the difference; a container that stops
  demuxing ends the stream (``stopped_at``).
* **Plain WAV** (16-bit PCM at 8 or 16 kHz, the common call recording) is read with the standard
  library: nothing to resample, and no FFmpeg probe.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from linkai_provider.io.pcm import UndecodableAudioError, require_av

__all__ = [
    "MAX_CHANNELS",
    "DecodedBlock",
    "NoAudioStreamError",
    "analysis_rate",
    "decode_blocks",
    "join_blocks",
    "open_decoder",
]

MAX_CHANNELS = 8  # more (a 5.1 film track, a 16-channel console) are mixed down to this many
# A packet whose time runs this far ahead of the audio decoded before it follows skipped (damaged) data.
SKIP_TOLERANCE_S = 0.1
SETTLE_PACKETS = 8
# FFmpeg probes up to 5 MB by default (a WAV's data is scanned for S/PDIF streams): 3 ms for a small
# call recording, where 4 KB take 0.6 ms. Files whose streams a short probe misses are probed again.
QUICK_PROBE = {"probesize": "4096"}


class NoAudioStreamError(UndecodableAudioError):
    """The container holds no audio stream (e.g. a video-only WebM)."""


def analysis_rate(source_rate: int) -> int:
    """8 kHz for telephone audio (upsampling would only add bytes), 16 kHz for the rest: what speech
    recognizers work at."""
    return 8000 if 0 < source_rate <= 8000 else 16000


@dataclass
class DecodedBlock:
    """Samples of one decoded packet (``samples`` is None for a packet that did not decode: its
    ``pad`` samples of silence keep the timeline true)."""

    packet: int  # index of the packet in demux order
    at: int  # position of the block's first sample on the timeline
    samples: np.ndarray | None  # (channels, n) int16
    pad: int = 0
    packet_size: int = 0
    packet_seconds: float | None = None


class _Decoder:
    """Iterates a container's first audio stream as :class:`DecodedBlock`; afterwards
    ``stopped_at``/``stop_reason`` tell whether demuxing ended early."""

    header_seconds: float | None = None  # read here for a plain WAV only; for others the caller probes the header

    def __init__(self, path: str, label: str, rate: int | None = None) -> None:
        self.av = require_av()
        self.label = label
        self.container = self._open(path, QUICK_PROBE)
        audio = self.container.streams.audio
        if not audio or not (audio[0].codec_context.channels and audio[0].codec_context.sample_rate):
            self.container.close()  # a short probe can miss a stream or its parameters: probe in full
            self.container = self._open(path, None)
            audio = self.container.streams.audio
        self.video_streams, self.audio_streams = len(self.container.streams.video), len(audio)
        if not audio:
            self.container.close()
            what = f", only video ({self.video_streams} stream{'s' if self.video_streams != 1 else ''})"
            raise NoAudioStreamError(
                f"{label!r} has no audio stream{what if self.video_streams else ''}: nothing to transcribe"
            )
        self.stream = audio[0]
        self.format_name = self.container.format.name
        cc = self.stream.codec_context
        self.channels = int(cc.channels or 0)
        self.source_rate = int(cc.sample_rate or 0)
        if self.channels < 1 or self.source_rate < 1:
            self.container.close()
            raise UndecodableAudioError(
                f"nothing in {label!r} decodes as audio (its {cc.name} stream has no channels or sample rate)"
            )
        self.rate = rate or analysis_rate(self.source_rate)
        self.codec_name = getattr(cc.codec, "canonical_name", None) or cc.name
        self.bit_rate = int(self.stream.bit_rate or cc.bit_rate or 0) or None
        kept = min(self.channels, MAX_CHANNELS)
        try:
            named = cc.layout.name if self.channels <= MAX_CHANNELS and cc.layout.nb_channels == kept else None
            self.layout = named or self.av.AudioLayout(kept).name
            # Packed s16: one array per frame, turned into (channels, n) as a view (no per-plane copies).
            self.resampler = self.av.AudioResampler(format="s16", layout=self.layout, rate=self.rate)
        except (ValueError, self.av.error.FFmpegError) as exc:
            self.container.close()
            raise UndecodableAudioError(f"cannot decode {label!r}: {exc}") from exc
        self.out_channels = kept
        self.stopped_at: float | None = None
        self.stop_reason: str | None = None
        self.errors: list[str] = []

    def _open(self, path: str, options: dict[str, str] | None) -> Any:
        try:
            return self.av.open(path, options=options) if options else self.av.open(path)
        except (self.av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
            raise UndecodableAudioError(f"cannot open {self.label!r} as audio: {exc}") from exc

    def close(self) -> None:
        self.container.close()

    def __iter__(self) -> Iterator[DecodedBlock]:
        av, stream = self.av, self.stream
        position = 0
        index = 0
        last_seconds = 0.02
        first_pts: int | None = None
        # Python floats, not Fractions: this loop runs once per packet (50 times a second for Opus).
        tb = float(stream.time_base) if stream.time_base else 0.0
        channels = self.out_channels
        baseline: int | None = None  # decoder delay (priming) in samples: the lag every packet has
        demux = self.container.demux(stream)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except (av.error.FFmpegError, OSError) as exc:
                self.stopped_at, self.stop_reason = position / self.rate, str(exc)
                break
            flush = packet.size == 0
            seconds = packet.duration * tb if packet.duration and tb else None
            try:
                frames = packet.decode()
            except (av.error.FFmpegError, ValueError) as exc:
                if flush:
                    break
                self.errors.append(str(exc))
                pad = round((seconds or last_seconds) * self.rate)
                yield DecodedBlock(index, position, None, pad, packet.size, seconds)
                position += pad
                index += 1
                continue
            if not flush and packet.pts is not None and tb:
                # A demuxer that resyncs past damage skips audio without an error: the packet's own
                # time says how much, and that much silence keeps the timeline true.
                first_pts = packet.pts if first_pts is None else first_pts
                lag = round((packet.pts - first_pts) * tb * self.rate) - position
                if index < SETTLE_PACKETS:  # the decoder's delay (priming) shows in the first packets
                    baseline = lag if baseline is None else max(baseline, lag)
                elif baseline is not None and lag - baseline > self.rate * SKIP_TOLERANCE_S:
                    pad = lag - baseline
                    yield DecodedBlock(-1, position, None, pad)
                    position += pad
            blocks: list[np.ndarray] = []
            for frame in frames:
                frame.pts = None  # the resampler keeps its own clock; container pts may jump
                blocks.extend(out.to_ndarray().reshape(-1, channels).T for out in self.resampler.resample(frame))
            if flush:
                blocks.extend(out.to_ndarray().reshape(-1, channels).T for out in self.resampler.resample(None))
            samples = join_blocks(blocks, self.out_channels)
            if seconds:
                last_seconds = seconds
            elif samples.shape[1]:
                seconds = samples.shape[1] / self.rate
            if not flush:
                yield DecodedBlock(index, position, samples, 0, packet.size, seconds)
                index += 1
            elif samples.shape[1]:
                yield DecodedBlock(-1, position, samples)  # the decoder's and resampler's tail
            position += samples.shape[1]
            if flush:
                break


def join_blocks(blocks: list[np.ndarray], channels: int) -> np.ndarray:
    if not blocks:
        return np.zeros((channels, 0), dtype=np.int16)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)


def decode_blocks(path: str, *, name: str | None = None, rate: int | None = None) -> Iterator[DecodedBlock]:
    """The first audio stream of ``path`` as blocks of ``(channels, n)`` int16 at ``rate`` (default:
    :func:`analysis_rate`), one per packet, undecodable packets as padding. The same timeline as
    :func:`analyze`'s, so spans planned from an analysis cut the same samples."""
    decoder = open_decoder(path, name or path, rate)
    try:
        yield from decoder
    finally:
        decoder.close()


class _PlainWav:
    """16-bit PCM WAV at 8 or 16 kHz, read with the standard library: the analysis rate itself, so
    nothing to resample, and no FFmpeg probe (0.5 ms of a small call recording's 0.7). The same
    blocks, hence the same timeline, as :class:`_Decoder` gives for it."""

    BLOCK = 4096  # frames per block

    def __init__(self, path: str, label: str, wav: wave.Wave_read) -> None:
        self.label, self.wav = label, wav
        self.channels = self.out_channels = wav.getnchannels()
        self.source_rate = self.rate = wav.getframerate()
        self.codec_name, self.format_name = "pcm_s16le", "wav"
        self.bit_rate = self.rate * 16 * self.channels
        self.video_streams, self.audio_streams = 0, 1
        self.header_seconds: float | None = wav.getnframes() / self.rate
        self.stopped_at: float | None = None
        self.stop_reason: str | None = None
        self.errors: list[str] = []

    @classmethod
    def open(cls, path: str, label: str, rate: int | None) -> _PlainWav | None:
        try:
            wav = wave.open(path, "rb")  # noqa: SIM115 (closed by close(), after iterating)
        except (wave.Error, EOFError, OSError, ValueError):
            return None  # WAVE_FORMAT_EXTENSIBLE, float, 24-bit, damaged: FFmpeg's job
        ok = (
            wav.getsampwidth() == 2
            and wav.getframerate() in (8000, 16000)
            and 1 <= wav.getnchannels() <= MAX_CHANNELS
            and (rate is None or rate == wav.getframerate())
            and sys.byteorder == "little"
        )
        if not ok:
            wav.close()
            return None
        return cls(path, label, wav)

    def close(self) -> None:
        self.wav.close()

    def __iter__(self) -> Iterator[DecodedBlock]:
        position, index = 0, 0
        while True:
            try:
                data = self.wav.readframes(self.BLOCK)
            except (EOFError, OSError, wave.Error) as exc:
                self.stopped_at, self.stop_reason = position / self.rate, str(exc)
                return
            usable = len(data) // (2 * self.channels) * 2 * self.channels
            if not usable:
                return
            samples = np.frombuffer(data[:usable], dtype="<i2").reshape(-1, self.channels).T
            yield DecodedBlock(index, position, samples, 0, usable, samples.shape[1] / self.rate)
            position += samples.shape[1]
            index += 1


def open_decoder(path: str, label: str, rate: int | None = None) -> _Decoder | _PlainWav:
    return _PlainWav.open(path, label, rate) or _Decoder(path, label, rate)
