"""Test audio for the splitter (helpers also used by bench/split_cpu.py), and the ten input formats.

Long recordings are built by joining espeak-ng sentences with known pauses in numpy, so every
sentence's span is known to the sample and no test has to synthesise minutes of speech.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from linkai_provider.io.pcm import SAMPLE_RATE, decode_pcm
from linkai_provider.io.splitting import AudioSplitter
from tests import conftest

SENTENCES = (
    *conftest.SENTENCES,
    "the meeting starts at nine in the main hall",
    "we will review the budget after lunch",
)


def speech_clip(text: str, cache: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng as 16 kHz mono int16, its own leading and trailing silence trimmed."""
    from linkai_provider.server.audio_fixtures import synthesize

    wav = synthesize(text, cache / f"{abs(hash(text))}.wav", "wav")
    samples = np.concatenate(list(decode_pcm(str(wav))))
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 64)
    return samples[loud[0] : loud[-1] + 1]


@dataclass
class Recording:
    samples: np.ndarray
    spans: list[tuple[float, float]]  # each sentence's (start_s, end_s)
    texts: list[str]

    @property
    def duration_s(self) -> float:
        return self.samples.size / SAMPLE_RATE


def join_sentences(
    texts: list[str],
    cache: Path,
    *,
    seed: int = 0,
    pause_s: tuple[float, float] = (0.8, 1.5),
    noise_dbfs: float | None = None,
) -> Recording:
    """The sentences in order with random pauses between them (and a pause first and last).

    ``noise_dbfs`` adds white noise at that level everywhere, as a room would.
    """
    rng = np.random.default_rng(seed)
    clips = {text: speech_clip(text, cache) for text in set(texts)}
    parts, spans, at = [], [], 0
    for text in texts:
        gap = np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), dtype=np.int16)
        parts += [gap, clips[text]]
        at += gap.size
        spans.append((at / SAMPLE_RATE, (at + clips[text].size) / SAMPLE_RATE))
        at += clips[text].size
    parts.append(np.zeros(int(pause_s[0] * SAMPLE_RATE), dtype=np.int16))
    samples = np.concatenate(parts)
    if noise_dbfs is not None:
        noise = rng.standard_normal(samples.size) * 32768 * 10 ** (noise_dbfs / 20)
        samples = np.clip(samples + noise, -32768, 32767).astype(np.int16)
    return Recording(samples, spans, list(texts))


def write_wav(path: Path, samples: np.ndarray, *, repeat: int = 1) -> Path:
    """16 kHz mono s16 WAV of ``samples`` played ``repeat`` times (written block by block)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        for _ in range(repeat):
            out.writeframes(samples.astype("<i2").tobytes())
    return path


# --- the ten formats in -------------------------------------------------------------------------

TEN_FORMATS = ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")


@pytest.fixture(scope="module")
def short_meeting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Path]:
    """About 25 s of sentences and pauses, as a 16 kHz WAV to re-encode."""
    folder = tmp_path_factory.mktemp("ten-formats")
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(6)], folder, seed=11)
    return rec, write_wav(folder / "meeting.wav", rec.samples)


@pytest.mark.parametrize("fmt", TEN_FORMATS)
def test_every_api_format_splits_at_the_pauses(fmt: str, short_meeting, tmp_path: Path) -> None:
    from linkai_provider.server.audio_fixtures import _encode  # the repo's encoders for the ten formats

    rec, wav = short_meeting
    source = tmp_path / f"meeting.{fmt}"
    if fmt == "wav":
        source.write_bytes(wav.read_bytes())
    else:
        _encode(wav, source, fmt)
    with AudioSplitter(max_piece_bytes=10**6, max_piece_seconds=8, piece_format="flac", workdir=str(tmp_path)) as sp:
        pieces = list(sp.split(str(source)))
    assert len(pieces) >= 3
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert all(after.start_s == before.end_s for before, after in pairwise(pieces))
    assert pieces[0].start_s == 0.0
    # Lossy codecs pad or trim a frame or two at the ends (AAC priming, AMR's 20 ms frames).
    assert pieces[-1].end_s == pytest.approx(rec.duration_s, abs=0.1)
    assert all(p.cut_in_silence and p.duration_s <= 8 for p in pieces)
    for piece in pieces[:-1]:
        # Encoder delay shifts the audio by a few ms; sentence bounds get 50 ms of slack for it.
        assert not [(a, b) for a, b in rec.spans if a - 0.05 < piece.end_s < b + 0.05], (fmt, piece)
