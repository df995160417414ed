"""AudioSplitter: cuts only in silence, pieces decode to their spans, byte and duration limits hold."""

from __future__ import annotations

import logging
import sys
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from linkai_provider.io.pcm import SAMPLE_RATE, decode_pcm
from linkai_provider.io.splitting import (
    PIECE_FORMATS,
    AudioSplitter,
    AudioUnavailableError,
    Piece,
    PieceTooLargeError,
    UndecodableAudioError,
    require_av,
)
from tests.io.test_split_audio import SENTENCES, Recording, join_sentences, write_wav

LOGGER = "linkai_provider.io.splitting"


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("split-clips")


@pytest.fixture(scope="session")
def three_minutes(clip_cache: Path) -> Recording:
    """About 3 minutes: 45 sentences, pauses of 0.8-1.5 s between them."""
    return join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], clip_cache, seed=3)


@pytest.fixture(scope="session")
def three_minutes_wav(three_minutes: Recording, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("split-wav") / "meeting.wav", three_minutes.samples)


def split_all(path: Path, **options) -> list[Piece]:
    splitter = AudioSplitter(workdir=str(path.parent), **options)
    return list(splitter.split(str(path)))


def assert_contiguous(pieces: list[Piece], duration_s: float) -> None:
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert pieces[0].start_s == 0.0
    for before, after in pairwise(pieces):
        assert after.start_s == before.end_s
    assert pieces[-1].end_s == pytest.approx(duration_s, abs=1 / SAMPLE_RATE)


def assert_cuts_in_pauses(pieces: list[Piece], rec: Recording, tolerance_s: float = 0.0) -> None:
    """Every cut (end of a piece but the last) lies between two sentences, never inside one."""
    for piece in pieces[:-1]:
        cut = piece.end_s
        inside = [(a, b) for a, b in rec.spans if a - tolerance_s < cut < b + tolerance_s]
        assert not inside, f"cut at {cut:.3f} s falls inside sentence {inside}"


def test_cuts_only_in_the_known_pauses(three_minutes: Recording, three_minutes_wav: Path) -> None:
    pieces = split_all(three_minutes_wav, max_piece_bytes=25 * 2**20, max_piece_seconds=30, piece_format="flac")
    assert len(pieces) >= 6  # ~169 s in pieces of at most 30 s
    assert_contiguous(pieces, three_minutes.duration_s)
    assert_cuts_in_pauses(pieces, three_minutes)
    assert all(p.cut_in_silence for p in pieces)
    assert all(p.duration_s <= 30 for p in pieces)
    # The search window is the last 15 s: no piece is cut needlessly short.
    assert all(p.duration_s >= 15 for p in pieces[:-1])


def test_flac_pieces_hold_exactly_the_recording(three_minutes: Recording, three_minutes_wav: Path) -> None:
    pieces = split_all(three_minutes_wav, max_piece_bytes=25 * 2**20, max_piece_seconds=40, piece_format="flac")
    decoded = np.concatenate([np.concatenate(list(decode_pcm(p.path))) for p in pieces])
    np.testing.assert_array_equal(decoded, three_minutes.samples)  # lossless, nothing lost or repeated


@pytest.mark.parametrize("piece_format", PIECE_FORMATS)
def test_each_piece_decodes_to_its_span(piece_format: str, three_minutes: Recording, three_minutes_wav: Path) -> None:
    pieces = split_all(three_minutes_wav, max_piece_bytes=25 * 2**20, max_piece_seconds=45, piece_format=piece_format)
    assert len(pieces) >= 4
    assert_contiguous(pieces, three_minutes.duration_s)
    expected_codec = {"flac": "flac", "ogg": "opus", "mp3": "mp3"}[piece_format]  # FFmpeg says mp3float
    for piece in pieces:
        assert piece.audio_format == piece_format and piece.path.endswith("." + piece_format)
        assert piece.size == Path(piece.path).stat().st_size
        with av.open(piece.path) as container:
            stream = container.streams.audio[0]
            assert stream.codec_context.name.startswith(expected_codec)
            samples = sum(frame.samples for frame in container.decode(stream))
            seconds = samples / stream.sample_rate
        assert seconds == pytest.approx(piece.duration_s, abs=0.03), piece  # within a codec frame


def test_every_piece_is_under_a_small_byte_limit(three_minutes: Recording, three_minutes_wav: Path) -> None:
    pieces = split_all(three_minutes_wav, max_piece_bytes=200_000, piece_format="flac")
    assert len(pieces) >= 10  # ~13.5 KB/s of FLAC: about 10-15 s per piece
    assert all(p.size <= 200_000 for p in pieces)
    assert_contiguous(pieces, three_minutes.duration_s)
    assert_cuts_in_pauses(pieces, three_minutes)


def test_opus_pieces_under_a_byte_limit(three_minutes: Recording, three_minutes_wav: Path) -> None:
    pieces = split_all(three_minutes_wav, max_piece_bytes=40_000, piece_format="ogg")
    assert len(pieces) >= 8
    assert all(p.size <= 40_000 for p in pieces)
    assert_cuts_in_pauses(pieces, three_minutes)


def test_noise_that_flac_cannot_compress_still_fits_at_the_first_try(tmp_path: Path) -> None:
    # White noise: FLAC cannot compress it (~31 KB/s). Pieces are planned at raw PCM's rate, which
    # FLAC never exceeds, so none is ever over the limit and none is encoded twice.
    noise = np.random.default_rng(5).normal(0, 8000, 60 * SAMPLE_RATE).clip(-32768, 32767).astype(np.int16)
    path = write_wav(tmp_path / "noise.wav", noise)
    pieces = split_all(path, max_piece_bytes=200_000, piece_format="flac")
    assert all(p.size <= 200_000 for p in pieces)
    assert all(p.size > 0.5 * 200_000 for p in pieces)  # balanced, and not needlessly small
    assert_contiguous(pieces, 60.0)


def test_no_silence_cuts_at_the_quietest_point_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(9)
    noise = rng.normal(0, 6000, 70 * SAMPLE_RATE)
    dip = int(24.0 * SAMPLE_RATE)  # 100 ms at half the amplitude: the quietest point, yet no silence
    noise[dip : dip + SAMPLE_RATE // 10] *= 0.5
    path = write_wav(tmp_path / "hum.wav", noise.clip(-32768, 32767).astype(np.int16))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        pieces = split_all(path, max_piece_bytes=25 * 2**20, max_piece_seconds=30, piece_format="flac")
    assert pieces[0].cut_in_silence is False
    assert pieces[0].end_s == pytest.approx(24.05, abs=0.15)  # in the dip
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "hum.wav" in warnings[0].getMessage() and "no silence" in warnings[0].getMessage()
    assert "24.0" in warnings[0].getMessage() or "24.1" in warnings[0].getMessage()
    assert pieces[-1].cut_in_silence is True  # the recording's end is not a cut
    assert all(p.duration_s <= 30 for p in pieces)


def test_room_noise_still_counts_as_silence(clip_cache: Path, tmp_path: Path) -> None:
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(20)], clip_cache, seed=4, noise_dbfs=-35)
    pieces = split_all(
        write_wav(tmp_path / "room.wav", rec.samples),
        max_piece_bytes=25 * 2**20,
        max_piece_seconds=20,
        piece_format="flac",
    )
    assert len(pieces) >= 4
    assert all(p.cut_in_silence for p in pieces)
    assert_cuts_in_pauses(pieces, rec)


def test_undecodable_file_names_it(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mp3"
    bogus.write_text("this is not audio at all\n" * 100)
    splitter = AudioSplitter(max_piece_bytes=10**6, workdir=str(tmp_path))
    with pytest.raises(UndecodableAudioError, match="notes.mp3") as caught:
        list(splitter.split(str(bogus), name="s3://calls/notes.mp3"))
    assert isinstance(caught.value, ValueError)
    assert "s3://calls/notes.mp3" in str(caught.value)


def test_piece_too_large_when_limit_cannot_hold_a_second(tmp_path: Path) -> None:
    from linkai_provider.io.analysis import analyze
    from linkai_provider.io.splitting import PlanLimits, frame_costs, plan_pieces
    from linkai_provider.server.audio_fixtures import tone

    mp3 = tone(tmp_path / "tone.mp3", "mp3", 10.0)  # 64 kbit/s: 8 KB per second of packets to copy
    analysis = analyze(str(mp3))
    costs = frame_costs(analysis, copy=True)
    with pytest.raises(PieceTooLargeError, match="max_upload_bytes=10000 cannot hold 1 s of this recording"):
        plan_pieces(analysis, limits=PlanLimits(600, 10_000), costs=costs, skip_silence=False)
    # The splitter refuses, up front, a byte limit its encoding cannot meet for a second of audio.
    with pytest.raises(ValueError, match="max_piece_bytes=26000 is too small for flac pieces"):
        AudioSplitter(max_piece_bytes=26_000, piece_format="flac")


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="piece_format must be one of flac, ogg, mp3, not 'wav'"):
        AudioSplitter(max_piece_bytes=10**6, piece_format="wav")
    with pytest.raises(ValueError, match="max_piece_bytes=1000 is too small for ogg"):
        AudioSplitter(max_piece_bytes=1000, piece_format="ogg")
    with pytest.raises(ValueError, match="max_piece_seconds must be at least 2, not 1"):
        AudioSplitter(max_piece_bytes=10**6, max_piece_seconds=1)


def test_missing_pyav_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    with pytest.raises(AudioUnavailableError, match=r"pip install 'airflow-provider-linkai\[audio\]'") as caught:
        require_av()
    assert isinstance(caught.value, ImportError)
    with pytest.raises(AudioUnavailableError):
        AudioSplitter(max_piece_bytes=10**6)
