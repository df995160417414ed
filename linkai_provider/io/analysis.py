"""One decoding pass over a recording: what it holds, where its speech energy is, where it is damaged.

Everything the audio path decides before it sends a byte comes from here:

* **Streams.** A container without an audio stream is never uploaded (a video-only WebM); one with
  a video track is sent as its audio track only.
* **Truthful length.** ``seconds`` is what decodes, whatever the header claims (a WAV whose header
  says 4 GB but holds 32 s).
* **Damage.** A packet that does not decode becomes a gap (its duration in silence, so later times
  stay true); a container that stops demuxing ends the recording there (``stopped_at``). Nothing
  decodable at all is an :class:`UndecodableAudioError`.
* **Energy.** The level of every 20 ms frame, per channel and mixed, at 8 or 16 kHz: where the
  silences are (:mod:`linkai_provider.io.speech`), whether two channels are the same sound (fake
  stereo) or carry different speech (a call with agent and customer on their own channels).
* **Packets.** Each packet's time, duration and size, so a compressed recording can be cut by
  copying packets (:mod:`linkai_provider.io.render`) with every piece's size known in advance.

Memory is a few numbers per 20 ms frame and per packet (an hour of stereo AAC: about 6 MB); samples
are never kept. Decoding is streamed, in blocks of about a second for numpy.
"""

from __future__ import annotations

import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from linkai_provider.io.pcm import UndecodableAudioError, require_av

__all__ = [
    "FRAME_S",
    "MAX_CHANNELS",
    "Analysis",
    "DecodedBlock",
    "NoAudioStreamError",
    "PacketTable",
    "analysis_rate",
    "analyze",
    "decode_blocks",
]

FRAME_S = 0.02
FRAMES_PER_S = 50
MAX_CHANNELS = 8  # more (a 5.1 film track, a 16-channel console) are mixed down to this many
SILENT_DB = -120.0
# Two channels whose difference is this far under their level are one sound (fake stereo).
IDENTICAL_BELOW_DB = 30.0
# A frame where one channel is this much louder than the other is that channel's alone.
DOMINANT_DB = 15.0
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
class PacketTable:
    """The audio stream's packets in demux order: where each starts on the decoded timeline, how
    long it lasts (seconds), its size, and whether it decoded."""

    start: np.ndarray  # float64 seconds
    duration: np.ndarray  # float64 seconds
    size: np.ndarray  # int64 bytes
    ok: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.start.size)


@dataclass
class Analysis:
    container: str  # PyAV's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str  # the audio stream's codec, e.g. "aac"
    channels: int
    source_rate: int
    rate: int  # the analysis (and PCM piece) rate: 8000 or 16000
    bit_rate: int | None
    video_streams: int
    audio_streams: int
    samples: int  # decoded samples per channel at ``rate`` (gaps included as silence)
    db: np.ndarray  # (channels, frames) float32 dBFS of each 20 ms frame
    mix_db: np.ndarray  # (frames,) float32 dBFS of the channels mixed
    gaps: list[tuple[float, float]] = field(default_factory=list)  # undecodable stretches (s)
    stopped_at: float | None = None  # demuxing failed here: nothing after it could be read
    stop_reason: str | None = None
    packets: PacketTable | None = None
    header_seconds: float | None = None  # what the header claims, when the reader saw it (plain WAV)
    identical_channels: bool = True  # every channel is the same sound (mono, or fake stereo)
    channels_differ: bool = False  # channels carry different speech (a call recorded per channel)

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    @property
    def frames(self) -> int:
        return int(self.mix_db.size)

    @property
    def distinct_channels(self) -> int:
        return 1 if self.identical_channels else min(self.channels, MAX_CHANNELS)

    @property
    def decoded_seconds(self) -> float:
        """Seconds that decoded (gaps excluded)."""
        return self.seconds - sum(e - s for s, e in self.gaps)


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
        self.skipped: list[tuple[float, float]] = []  # audio the demuxer skipped (damage), seconds

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
                    self.skipped.append((position / self.rate, (position + pad) / self.rate))
                    yield DecodedBlock(-1, position, None, pad)
                    position += pad
            blocks: list[np.ndarray] = []
            for frame in frames:
                frame.pts = None  # the resampler keeps its own clock; container pts may jump
                blocks.extend(out.to_ndarray().reshape(-1, channels).T for out in self.resampler.resample(frame))
            if flush:
                blocks.extend(out.to_ndarray().reshape(-1, channels).T for out in self.resampler.resample(None))
            samples = _join(blocks, self.out_channels)
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


def _join(blocks: list[np.ndarray], channels: int) -> np.ndarray:
    if not blocks:
        return np.zeros((channels, 0), dtype=np.int16)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)


def decode_blocks(path: str, *, name: str | None = None, rate: int | None = None) -> Iterator[DecodedBlock]:
    """The first audio stream of ``path`` as blocks of ``(channels, n)`` int16 at ``rate`` (default:
    :func:`analysis_rate`), one per packet, undecodable packets as padding. The same timeline as
    :func:`analyze`'s, so spans planned from an analysis cut the same samples."""
    decoder = _open_decoder(path, name or path, rate)
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


def _open_decoder(path: str, label: str, rate: int | None = None) -> _Decoder | _PlainWav:
    return _PlainWav.open(path, label, rate) or _Decoder(path, label, rate)


class _Levels:
    """Per-frame dBFS of each channel and of the mix, computed a second of audio at a time."""

    def __init__(self, channels: int, rate: int) -> None:
        self.channels, self.frame = channels, rate // FRAMES_PER_S
        self.pending: list[np.ndarray] = []
        self.held = 0
        self.db: list[np.ndarray] = []
        self.mix: list[np.ndarray] = []
        self.diff_energy = np.zeros(channels, dtype=np.float64)  # sum of (ch - ch0)^2
        self.energy = np.zeros(channels, dtype=np.float64)
        self.batch = rate  # samples per numpy pass

    def add(self, samples: np.ndarray) -> None:
        self.pending.append(samples)
        self.held += samples.shape[1]
        if self.held >= self.batch:
            self._process(final=False)

    def finish(self) -> None:
        self._process(final=True)

    def _process(self, final: bool) -> None:
        if not self.pending:
            return
        data = _join(self.pending, self.channels)
        whole = data.shape[1] // self.frame * self.frame
        if final and whole < data.shape[1]:  # the last partial frame, padded with silence
            whole += self.frame
            data = np.pad(data, ((0, 0), (0, whole - data.shape[1])))
        rest = data[:, whole:]
        self.pending, self.held = ([rest] if rest.shape[1] else []), rest.shape[1]
        if not whole:
            return
        x = data[:, :whole].astype(np.float32) / 32768.0
        self.energy += np.einsum("ij,ij->i", x, x, dtype=np.float64)
        if self.channels > 1:
            d = x - x[:1]
            self.diff_energy += np.einsum("ij,ij->i", d, d, dtype=np.float64)
        frames = x.reshape(self.channels, -1, self.frame)
        self.db.append(_db(np.mean(np.square(frames), axis=2)))
        mixed = frames.mean(axis=0) if self.channels > 1 else frames[0]
        self.mix.append(_db(np.mean(np.square(mixed), axis=1)))


def _db(power: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(power + 1e-12)).astype(np.float32)


def analyze(path: str, *, name: str | None = None) -> Analysis:
    """Decode ``path`` once (see the module docstring).

    :raises NoAudioStreamError: the container has no audio stream.
    :raises UndecodableAudioError: it cannot be opened, or nothing in it decodes.
    """
    label = name or path
    decoder = _open_decoder(path, label)
    levels = _Levels(decoder.out_channels, decoder.rate)
    starts: list[float] = []
    durations: list[float] = []
    sizes: list[int] = []
    oks: list[bool] = []
    gaps: list[tuple[float, float]] = []
    decoded = 0
    end = 0
    try:
        for block in decoder:
            rate = decoder.rate
            if block.samples is None:
                levels.add(np.zeros((decoder.out_channels, block.pad), dtype=np.int16))
                at, until = block.at / rate, (block.at + block.pad) / rate
                if gaps and abs(gaps[-1][1] - at) < 1e-6:
                    gaps[-1] = (gaps[-1][0], until)
                else:
                    gaps.append((at, until))
                length = block.pad
            else:
                levels.add(block.samples)
                length = block.samples.shape[1]
                decoded += length
            if block.packet >= 0:
                starts.append(block.at / rate)
                durations.append(block.packet_seconds if block.packet_seconds is not None else length / rate)
                sizes.append(block.packet_size)
                oks.append(block.samples is not None)
            end = block.at + length
        levels.finish()
    finally:
        decoder.close()
    rate = decoder.rate
    if decoded == 0:
        why = decoder.stop_reason or (decoder.errors[0] if decoder.errors else "it holds no audio samples")
        raise UndecodableAudioError(f"nothing in {label!r} decodes as audio ({why})")
    # A damaged tail: trailing gaps are not part of the recording, which ends where good audio does.
    stopped_at, stop_reason = decoder.stopped_at, decoder.stop_reason
    while gaps and abs(gaps[-1][1] * rate - end) < 1:
        start, _ = gaps.pop()
        end, stopped_at = round(start * rate), start
        stop_reason = stop_reason or (decoder.errors[-1] if decoder.errors else None)
    frames = -(-end // (rate // FRAMES_PER_S))
    db = np.concatenate(levels.db, axis=1)[:, :frames] if levels.db else np.zeros((levels.channels, 0), np.float32)
    mix = np.concatenate(levels.mix)[:frames] if levels.mix else np.zeros(0, np.float32)
    keep = np.asarray(starts, dtype=np.float64) < end / rate
    table = PacketTable(
        np.asarray(starts, dtype=np.float64)[keep],
        np.asarray(durations, dtype=np.float64)[keep],
        np.asarray(sizes, dtype=np.int64)[keep],
        np.asarray(oks, dtype=bool)[keep],
    )
    identical, differ = _channel_relations(levels, db)
    return Analysis(
        container=decoder.format_name,
        codec=decoder.codec_name,
        channels=decoder.channels,
        source_rate=decoder.source_rate,
        rate=rate,
        bit_rate=decoder.bit_rate,
        video_streams=decoder.video_streams,
        audio_streams=decoder.audio_streams,
        samples=end,
        db=db,
        mix_db=mix,
        gaps=gaps,
        stopped_at=stopped_at,
        stop_reason=stop_reason,
        header_seconds=getattr(decoder, "header_seconds", None),
        packets=table,
        identical_channels=identical,
        channels_differ=differ,
    )


def _channel_relations(levels: _Levels, db: np.ndarray) -> tuple[bool, bool]:
    """(every channel is the same sound, the channels carry different speech)."""
    if levels.channels == 1:
        return True, False
    level = levels.energy.max()
    if level <= 0:
        return True, False
    # Identical within lossy coding: every channel's difference to channel 0 is 30 dB under the level.
    identical = bool(np.all(levels.diff_energy <= level * 10 ** (-IDENTICAL_BELOW_DB / 10)))
    if identical:
        return True, False
    from linkai_provider.io.speech import active_frames

    active = np.stack([active_frames(ch) for ch in db])
    loudest = db.max(axis=0)
    # A frame belongs to one channel alone when it is active there and the others are far quieter.
    alone = active & (db >= loudest - 0.01) & (np.sort(db, axis=0)[-2] <= loudest - DOMINANT_DB)
    per_channel = alone.sum(axis=1)
    speaking = active.any(axis=0).sum()
    # Different speech: at least two channels each hold a second of their own, and frames with a
    # single channel speaking are a third of all speech (a panned stereo mix never gets there).
    differ = bool(speaking and np.sum(per_channel >= FRAMES_PER_S) >= 2 and alone.any(axis=0).sum() >= speaking / 3)
    return False, differ
