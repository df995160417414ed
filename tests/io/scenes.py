"""Real-world recordings for tests, built from espeak-ng speech with PyAV: stereo calls, silences,
quiet speech, video containers, damaged and lying files. Everything is short (seconds), so the
suite stays fast; the benchmarks carry the sizes."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import numpy as np

from tests.io.test_split_audio import speech_clip


@dataclass
class Scene:
    samples: np.ndarray  # (channels, n) int16
    rate: int
    spans: list[list[tuple[float, float]]]  # per channel, each sentence's (start_s, end_s)

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.rate


def _resample(clip: np.ndarray, rate: int) -> np.ndarray:
    if rate == 16000:
        return clip
    positions = np.arange(0, clip.size, 16000 / rate)
    return np.interp(positions, np.arange(clip.size), clip.astype(np.float64)).astype(np.int16)


def arrange(parts: list[tuple[int, str | float, float]], cache: Path, *, channels: int = 1, rate: int = 16000) -> Scene:
    """Place sentences (or silence) on channels: ``(channel, sentence or seconds of silence, gain_db)``
    in time order; each sentence starts where the previous part ended (whatever its channel)."""
    pieces: list[tuple[int, int, np.ndarray]] = []
    spans: list[list[tuple[float, float]]] = [[] for _ in range(channels)]
    at = 0
    for channel, what, gain_db in parts:
        if isinstance(what, float | int):
            at += int(what * rate)
            continue
        clip = _resample(speech_clip(what, cache), rate).astype(np.float64) * 10 ** (gain_db / 20)
        pieces.append((channel, at, clip.clip(-32768, 32767).astype(np.int16)))
        spans[channel].append((at / rate, (at + clip.size) / rate))
        at += clip.size
    samples = np.zeros((channels, at), dtype=np.int16)
    for channel, start, clip in pieces:
        samples[channel, start : start + clip.size] = clip
    return Scene(samples, rate, spans)


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """``samples`` (channels, n) as a 16-bit PCM WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[0])
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(samples.T).tobytes())
    return path


def encode(path: Path, samples: np.ndarray, rate: int, *, container: str, codec: str, bit_rate: int) -> Path:
    """``samples`` (channels, n) encoded with PyAV (fixed-size frames through a FIFO)."""
    import av

    layout = "mono" if samples.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container) as out:
        stream = cast(Any, out.add_stream(codec, rate=rate))
        stream.codec_context.layout = layout
        stream.codec_context.bit_rate = bit_rate
        _encode_audio(av, out, stream, samples, rate, layout)
    return path


def _encode_audio(av: Any, out: Any, stream: Any, samples: np.ndarray, rate: int, layout: str) -> None:
    fmt = stream.codec_context.codec.audio_formats[0].name
    resampler = av.AudioResampler(format=fmt, layout=layout, rate=stream.codec_context.sample_rate)
    fifo = av.AudioFifo()
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples.T).reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = rate
    for converted in resampler.resample(frame):
        fifo.write(converted)
    for converted in resampler.resample(None):
        fifo.write(converted)
    size = stream.codec_context.frame_size or 1024
    pts = 0
    while fifo.samples >= size:
        chunk = fifo.read(size)
        chunk.pts = pts
        pts += chunk.samples
        for packet in stream.encode(chunk):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def video(
    path: Path, samples: np.ndarray | None, rate: int, *, container: str, audio_codec: str | None, video_codec: str
) -> Path:
    """A film: ``samples`` as its audio track (``audio_codec``; None: no audio) beside a video track
    of random frames (incompressible, as a webinar's screen share is large), 10 fps, 160x120."""
    import av

    seconds = samples.shape[1] / rate if samples is not None else 5.0
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", format=container) as out:
        vstream = cast(Any, out.add_stream(video_codec, rate=10))
        vstream.width, vstream.height, vstream.pix_fmt = 160, 120, "yuv420p"
        vstream.bit_rate = 800_000
        astream = None
        if samples is not None and audio_codec is not None:
            astream = cast(Any, out.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else rate))
            astream.codec_context.layout = "mono"
            astream.codec_context.bit_rate = 32000
        for i in range(int(seconds * 10)):
            image = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in vstream.encode(frame):
                out.mux(packet)
        for packet in vstream.encode(None):
            out.mux(packet)
        if astream is not None and samples is not None:
            _encode_audio(av, out, astream, samples, rate, "mono")
    return path


def lying_wav(path: Path, samples: np.ndarray, rate: int, *, claims_bytes: int = 0xFFFFFFF0 - 36) -> Path:
    """A WAV whose header says its data is ``claims_bytes`` long (about 4 GB), whatever it holds."""
    write_wav(path, samples, rate)
    data = bytearray(path.read_bytes())
    data[4:8] = (claims_bytes + 36).to_bytes(4, "little")
    at = data.index(b"data")
    data[at + 4 : at + 8] = claims_bytes.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def truncated(source: Path, dest: Path, keep: float) -> Path:
    """The first ``keep`` (a fraction) of ``source``'s bytes: an interrupted copy."""
    data = source.read_bytes()
    dest.write_bytes(data[: int(len(data) * keep)])
    return dest


def audio_stream_bytes(path: Path) -> int:
    """Bytes of the file's audio packets (what the recording's audio is, without the container)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(p.size for p in container.demux(stream) if p.size)
