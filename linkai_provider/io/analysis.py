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

from dataclasses import dataclass, field

import numpy as np

from linkai_provider.io.decoding import (
    MAX_CHANNELS,
    DecodedBlock,
    NoAudioStreamError,
    analysis_rate,
    decode_blocks,
    join_blocks,
    open_decoder,
)
from linkai_provider.io.pcm import UndecodableAudioError
from linkai_provider.io.speech import FRAMES_PER_S, active_frames

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

FRAME_S = 1 / FRAMES_PER_S
SILENT_DB = -120.0
# Two channels whose difference is this far under their level are one sound (fake stereo).
IDENTICAL_BELOW_DB = 30.0
# A frame where one channel is this much louder than the other is that channel's alone.
DOMINANT_DB = 15.0


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
        data = join_blocks(self.pending, self.channels)
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
    decoder = open_decoder(path, label)
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
        header_seconds=decoder.header_seconds,
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
