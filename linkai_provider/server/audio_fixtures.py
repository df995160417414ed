"""Real spoken test audio in each of the API's ten formats.

Tests across the project (server, hook, operator) need audio that a real recognizer can
transcribe. :func:`synthesize` speaks a sentence with Debian's ``espeak-ng`` and encodes it
with PyAV into the requested format::

    from linkai_provider.server.audio_fixtures import synthesize

    path = synthesize("the quick brown fox", tmp_path / "fox.m4a", "m4a")
    path = synthesize("guten morgen", tmp_path / "gruss.ogg", "ogg", voice="de")

Encodings (what each extension holds):

==========  =====================================================
wav         PCM s16le, espeak-ng's own output (22.05 kHz mono)
flac        FLAC in a native FLAC stream
mp3, mpga   MP3 (LAME) in a raw MPEG audio stream; mpga is the same bytes
mp4         AAC in an MP4 container
m4a         AAC in an iPod/M4A container
mpeg        MPEG-1 Layer II in an MPEG program stream (starts with a pack header)
ogg         Vorbis in Ogg (falls back to Opus in Ogg when Vorbis cannot encode)
webm        Opus in WebM
amr         AMR-NB, 8 kHz mono, in the ``#!AMR`` storage format
==========  =====================================================

Results are cached by (text, format, voice) under ``$LINKAI_AUDIO_CACHE`` (default
``~/.cache/linkai-server/audio``) because espeak and the encoders cost ~0.1 s per clip and
test suites ask for the same sentences again and again. ``espeak-ng`` and ``av`` are needed
only when a clip is not cached yet.
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from av.audio.stream import AudioStream

__all__ = ["AUDIO_FORMATS", "AudioFixtureError", "normalize_words", "synthesize", "tone", "word_error_rate"]

#: The ten formats of the API, in the order of its documentation.
AUDIO_FORMATS: tuple[str, ...] = ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")

# Bump when an encoding changes so stale cached clips are not reused.
_GENERATOR_VERSION = "1"


class AudioFixtureError(RuntimeError):
    """Test audio could not be produced (espeak-ng or an encoder is missing)."""


@dataclass(frozen=True)
class _Encoding:
    container: str
    codec: str
    rate: int
    layout: str = "mono"
    bit_rate: int | None = None
    options: tuple[tuple[str, str], ...] = ()


# Codecs are chosen from what PyAV's bundled FFmpeg can encode; see the module docstring.
_ENCODINGS: dict[str, tuple[_Encoding, ...]] = {
    "flac": (_Encoding("flac", "flac", 16000),),
    "mp3": (_Encoding("mp3", "libmp3lame", 22050, bit_rate=64000),),
    "mpga": (_Encoding("mp3", "libmp3lame", 22050, bit_rate=64000),),
    "mp4": (_Encoding("mp4", "aac", 22050, bit_rate=64000),),
    "m4a": (_Encoding("ipod", "aac", 22050, bit_rate=64000),),
    "mpeg": (_Encoding("mpeg", "mp2", 22050, bit_rate=64000),),
    # FFmpeg's native Vorbis encoder is experimental and wants stereo; Opus is the fallback.
    "ogg": (
        _Encoding("ogg", "vorbis", 22050, layout="stereo", options=(("strict", "experimental"),)),
        _Encoding("ogg", "libopus", 48000, bit_rate=32000),
    ),
    "webm": (_Encoding("webm", "libopus", 48000, bit_rate=32000),),
    "amr": (
        _Encoding("amr", "libopencore_amrnb", 8000, bit_rate=12200),
        _Encoding("amr", "amr_nb", 8000, bit_rate=12200),
    ),
}


def synthesize(text: str, dest: Path, fmt: str, voice: str = "en") -> Path:
    """Speak ``text`` with espeak-ng and write it to ``dest`` encoded as ``fmt``.

    :param text: the sentence to speak.
    :param dest: the file to write (its extension is not checked, so tests can make
        mislabelled files on purpose); parent folders are created.
    :param fmt: one of :data:`AUDIO_FORMATS` (case-insensitive).
    :param voice: an espeak-ng voice, e.g. ``en``, ``de``, ``es``, ``fr``.
    :return: ``dest``.
    :raises AudioFixtureError: espeak-ng or the needed encoder is unavailable.
    """
    fmt = fmt.lower()
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(AUDIO_FORMATS)}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    cached = _cache_dir() / f"{_cache_key(text, fmt, voice)}.{fmt}"
    if not cached.exists():
        with tempfile.TemporaryDirectory(prefix="linkai-audio-") as tmp:
            wav = Path(tmp) / "espeak.wav"
            _espeak(text, voice, wav)
            encoded = Path(tmp) / f"speech.{fmt}"
            if fmt == "wav":
                shutil.copyfile(wav, encoded)
            else:
                _encode(wav, encoded, fmt)
            # Publish atomically so parallel test workers never read half a clip.
            cached.parent.mkdir(parents=True, exist_ok=True)
            staging = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            shutil.copyfile(encoded, staging)
            os.replace(staging, cached)
    shutil.copyfile(cached, dest)
    return dest


def tone(dest: Path, fmt: str, seconds: float, frequency: float = 440.0) -> Path:
    """Write ``seconds`` of a sine tone to ``dest`` encoded as ``fmt`` (no espeak-ng needed).

    For tests about durations (long recordings, duration limits): any length, in any of the
    ten formats, encoded like :func:`synthesize`'s clips. A WAV is exactly ``seconds`` long
    (16 kHz PCM); lossy encoders pad or trim by a frame or so (tens of milliseconds).

    :raises AudioFixtureError: the needed encoder is unavailable.
    """
    fmt = fmt.lower()
    if fmt not in AUDIO_FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; expected one of {', '.join(AUDIO_FORMATS)}")
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rate = 16000
    count = round(seconds * rate)
    step = 2 * math.pi * frequency / rate
    samples = array.array("h", (int(8000 * math.sin(step * i)) for i in range(count)))
    if sys.byteorder == "big":
        samples.byteswap()
    with tempfile.TemporaryDirectory(prefix="linkai-tone-") as tmp:
        wav = Path(tmp) / "tone.wav" if fmt != "wav" else dest
        with wave.open(str(wav), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(samples.tobytes())
        if fmt != "wav":
            _encode(wav, dest, fmt)
    return dest


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation or accents, for comparing transcripts."""
    folded = unicodedata.normalize("NFKD", text.lower())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    folded = re.sub(r"['\u2019]", "", folded)  # "don't" and "dont" are the same word
    return re.sub(r"[^\w\s]|_", " ", folded).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words.

    Both texts go through :func:`normalize_words` first, so case, punctuation and accents do
    not count as errors.
    """
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i] + [0] * len(hyp)
        for j, hyp_word in enumerate(hyp, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word))
        previous = current
    return previous[-1] / len(ref)


def _cache_dir() -> Path:
    root = os.environ.get("LINKAI_AUDIO_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "linkai-server" / "audio"


def _cache_key(text: str, fmt: str, voice: str) -> str:
    raw = "\x00".join((_GENERATOR_VERSION, text, fmt, voice))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:24]


def _espeak(text: str, voice: str, out: Path) -> None:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AudioFixtureError("espeak-ng is not installed (apt-get install espeak-ng)")
    # A slightly slower rate than the default (175 wpm) keeps the synthetic voice intelligible.
    result = subprocess.run(
        [exe, "-v", voice, "-s", "150", "-w", str(out), text],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0 or not out.exists() or out.stat().st_size <= 44:
        raise AudioFixtureError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")


def _encode(wav: Path, out: Path, fmt: str) -> None:
    errors: list[str] = []
    for encoding in _ENCODINGS[fmt]:
        try:
            _encode_with(wav, out, encoding)
            return
        except Exception as exc:  # an encoder missing from this FFmpeg build: try the next one
            errors.append(f"{encoding.codec}: {exc}")
    raise AudioFixtureError(f"cannot encode {fmt}: " + "; ".join(errors))


def _encode_with(wav: Path, out: Path, enc: _Encoding) -> None:
    import av  # imported here: only clip generation needs it

    with av.open(str(wav)) as source, av.open(str(out), mode="w", format=enc.container) as sink:
        stream = cast("AudioStream", sink.add_stream(enc.codec, rate=enc.rate, options=dict(enc.options)))
        stream.codec_context.layout = enc.layout
        if enc.bit_rate:
            stream.codec_context.bit_rate = enc.bit_rate
        for key, value in enc.options:
            stream.codec_context.options[key] = value
        sample_format = (stream.codec_context.codec.audio_formats or [av.AudioFormat("s16")])[0].name
        resampler = av.AudioResampler(format=sample_format, layout=enc.layout, rate=enc.rate)
        # Encoders with a fixed frame size (AAC 1024, MP3 1152, Opus 960, AMR 160) reject
        # other sizes, so resampled audio is re-cut through a FIFO.
        # The last partial frame is dropped for those: it is a few ms of espeak's trailing silence.
        fifo = av.AudioFifo()
        fixed = stream.codec_context.frame_size or 0
        frame_size = fixed or 1024
        pts = 0

        def drain(final: bool) -> None:
            nonlocal pts
            while fifo.samples >= frame_size or (final and not fixed and fifo.samples > 0):
                frame = fifo.read(min(frame_size, fifo.samples))
                if frame is None:
                    break
                frame.pts = pts
                pts += frame.samples
                for packet in stream.encode(frame):
                    sink.mux(packet)

        for frame in source.decode(audio=0):
            frame.pts = None
            for converted in resampler.resample(frame):
                fifo.write(converted)
            drain(final=False)
        for converted in resampler.resample(None):
            fifo.write(converted)
        drain(final=True)
        for packet in stream.encode(None):
            sink.mux(packet)
