"""16 kHz mono PCM in and out of PyAV: stream-decode any of the ten formats, encode one piece.

Speech APIs resample to 16 kHz mono anyway, so pieces carry nothing the recognizer would use
beyond that. Decoding yields small ``int16`` blocks (one decoded frame each), so a caller holds
only what it chooses to keep.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

__all__ = [
    "PIECE_ENCODINGS",
    "SAMPLE_RATE",
    "AudioUnavailableError",
    "PieceEncoding",
    "UndecodableAudioError",
    "decode_pcm",
    "encode_pcm",
    "require_av",
]

SAMPLE_RATE = 16000

_INSTALL_HINT = "pip install 'airflow-provider-linkai[audio]'"


class AudioUnavailableError(ImportError):
    """PyAV (the ``audio`` extra) is not installed."""


class UndecodableAudioError(ValueError):
    """The file holds no audio stream PyAV can decode (corrupt, truncated, or not audio)."""


def require_av() -> Any:
    """Import and return PyAV, or raise :class:`AudioUnavailableError` naming the extra to install."""
    try:
        import av
    except ImportError as exc:
        raise AudioUnavailableError(f"splitting long recordings needs PyAV: {_INSTALL_HINT} ({exc})") from exc
    return av


@dataclass(frozen=True)
class PieceEncoding:
    """How one piece format is written (all at 16 kHz mono)."""

    container: str
    codec: str
    bit_rate: int | None
    # Planning figure: bytes per second of speech, a little above what was measured
    # (docs/long-recordings.md), so that most pieces fit at the first try.
    bytes_per_second: float
    options: tuple[tuple[str, str], ...] = ()


PIECE_ENCODINGS: dict[str, PieceEncoding] = {
    # Lossless; measured ~14-17 KB/s on speech, up to ~33 KB/s on noise (the re-cut covers that).
    "flac": PieceEncoding("flac", "flac", None, 20000.0),
    # Opus for speech at 24 kbit/s, constant bit rate: 3000 B/s and about 2 % of Ogg pages.
    "ogg": PieceEncoding("ogg", "libopus", 24000, 3100.0, (("application", "voip"), ("vbr", "off"))),
    # MPEG-2 Layer III (16 kHz) CBR 48 kbit/s: 6000 B/s exactly (32 kbit/s lost words with whisper).
    "mp3": PieceEncoding("mp3", "libmp3lame", 48000, 6100.0),
}


def decode_pcm(path: str, *, name: str | None = None) -> Iterator[np.ndarray]:
    """Yield the first audio stream of ``path`` as 16 kHz mono ``int16`` blocks, in order.

    :raises UndecodableAudioError: no audio stream, or data PyAV cannot decode; the message
        names ``name`` (default: ``path``).
    """
    av = require_av()
    label = name or path
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError) as exc:
        raise UndecodableAudioError(f"cannot open {label!r} as audio: {exc}") from exc
    with container:
        if not container.streams.audio:
            raise UndecodableAudioError(f"{label!r} has no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        produced = 0
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler keeps its own clock; container pts may jump
                for out in resampler.resample(frame):
                    block = out.to_ndarray().reshape(-1)
                    produced += block.size
                    yield block
            for out in resampler.resample(None):
                block = out.to_ndarray().reshape(-1)
                produced += block.size
                yield block
        except av.error.FFmpegError as exc:
            # Damage after some good audio is still an error: a silently shortened transcript is worse.
            at = produced / SAMPLE_RATE
            raise UndecodableAudioError(f"cannot decode {label!r} at {at:.1f} s: {exc}") from exc
        if produced == 0:
            raise UndecodableAudioError(f"{label!r} decodes to no audio samples")


def encode_pcm(
    samples: np.ndarray, dest: str, piece_format: str, *, rate: int = SAMPLE_RATE, bit_rate: int | None = None
) -> int:
    """Write ``samples`` (mono int16 at ``rate``) to ``dest`` as ``piece_format``; return the file's size.

    ``bit_rate`` overrides the format's (Opus, MP3). Opus is encoded at a constant bit rate, so a
    piece's size is known before it is written.
    """
    av = require_av()
    enc = PIECE_ENCODINGS[piece_format]
    with av.open(dest, mode="w", format=enc.container) as sink:
        stream = cast(Any, sink.add_stream(enc.codec, rate=rate))
        stream.codec_context.layout = "mono"
        if bit_rate or enc.bit_rate:
            stream.codec_context.bit_rate = bit_rate or enc.bit_rate
        for key, value in enc.options:
            stream.codec_context.options[key] = value
        formats = {f.name for f in stream.codec_context.codec.audio_formats}
        # Mono s16 and s16p are the same bytes; every piece codec takes one of them (LAME: s16p).
        frame_format = "s16" if "s16" in formats else "s16p"
        if frame_format not in formats:
            raise UndecodableAudioError(f"{enc.codec} takes neither s16 nor s16p in this FFmpeg build")
        # Fixed-frame encoders (Opus 20 ms, MP3 576 samples) reject other sizes.
        frame_size = stream.codec_context.frame_size or 4096
        pts = 0
        for start in range(0, samples.size, frame_size):
            chunk = np.ascontiguousarray(samples[start : start + frame_size], dtype=np.int16)
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format=frame_format, layout="mono")
            frame.sample_rate = rate
            frame.pts = pts
            pts += chunk.size
            for packet in stream.encode(frame):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return os.path.getsize(dest)
