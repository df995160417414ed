"""Audio duration on the server: X-LinkAI-Audio-Seconds, --latency-ms-per-audio-second,
--max-audio-seconds and the duration counters of /_linkai/stats, over real HTTP.

Test audio is a sine tone of a known length made with PyAV (``audio_fixtures.tone``), so the
expected durations are known without asking the code under test.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from linkai_provider.server.audio_fixtures import AUDIO_FORMATS, tone
from linkai_provider.server.testing import LinkAIServerHandle, start_server

from .test_http_errors import assert_envelope
from .test_upload_limits import WAV_HEAD

Tone = Callable[[str, float], Path]
# Lossy encoders pad to whole frames (MP3 1152 samples, AAC 1024, ...): a few tens of ms.
TOLERANCE_S = 0.1


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Tone:
    """``tones(fmt, seconds)`` -> a tone of that length in that format (made once per module)."""
    folder = tmp_path_factory.mktemp("tones")

    def make(fmt: str, seconds: float) -> Path:
        dest = folder / f"tone-{seconds:g}s.{fmt}"
        if not dest.exists():
            tone(dest, fmt, seconds)
        return dest

    return make


def post(server: LinkAIServerHandle, path: Path) -> httpx.Response:
    return httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                      files={"file": (path.name, path.read_bytes())}, timeout=60)


@pytest.fixture(scope="module")
def plain_server():
    with start_server() as server:
        yield server


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_measured_duration_is_in_the_response_header(plain_server, tones, fmt) -> None:
    """All ten formats; ``mpeg`` (a program stream) has no duration in its header: PyAV demuxes it."""
    plain_server.reset_stats()
    response = post(plain_server, tones(fmt, 3.0))
    assert response.status_code == 200, response.text
    assert float(response.headers["X-LinkAI-Audio-Seconds"]) == pytest.approx(3.0, abs=TOLERANCE_S)
    stats = plain_server.stats()
    assert stats["audio_seconds_ok"] == pytest.approx(float(response.headers["X-LinkAI-Audio-Seconds"]), abs=0.001)
    assert stats["audio_unknown_ok"] == 0


def test_unknown_duration_has_no_header_and_is_counted_apart(plain_server) -> None:
    """Sniffs as WAV (digest accepts it) but has no data chunk: neither the header nor PyAV can tell."""
    plain_server.reset_stats()
    response = httpx.post(plain_server.transcriptions_url, headers={"Authorization": f"Bearer {plain_server.api_key}"},
                          files={"file": ("odd.wav", WAV_HEAD + b"\x00" * 4096)})
    assert response.status_code == 200, response.text
    assert "X-LinkAI-Audio-Seconds" not in response.headers
    stats = plain_server.stats()
    assert stats["transcriptions_ok"] == 1
    assert stats["audio_unknown_ok"] == 1 and stats["audio_seconds_ok"] == 0


def test_latency_per_audio_second_is_proportional_to_the_measured_duration(tones) -> None:
    with start_server(latency_ms_per_audio_second=250) as server:
        assert server.healthz()["latency_ms_per_audio_second"] == 250
        response = post(server, tones("wav", 4.0))
        assert response.status_code == 200, response.text
        assert response.headers["X-LinkAI-Audio-Seconds"] == "4.000"
        stats = server.stats()
        assert stats["audio_seconds_ok"] == 4.0
        assert stats["audio_latency_seconds"] == pytest.approx(1.0)  # 4 s x 250 ms/s, what the server waited
        response = post(server, tones("mpeg", 2.0))  # header-less: the demuxed duration drives the latency
        assert response.status_code == 200, response.text
        measured = float(response.headers["X-LinkAI-Audio-Seconds"])
        assert measured == pytest.approx(2.0, abs=TOLERANCE_S)
        assert server.stats()["audio_latency_seconds"] == pytest.approx(1.0 + 0.25 * measured, abs=0.001)


def test_no_audio_latency_by_default(plain_server, tones) -> None:
    plain_server.reset_stats()
    assert post(plain_server, tones("wav", 4.0)).status_code == 200
    assert plain_server.stats()["audio_latency_seconds"] == 0


@pytest.mark.parametrize("fmt", ["wav", "mp3", "mpeg"])
def test_max_audio_seconds(tones, fmt) -> None:
    with start_server(max_audio_seconds=5, credits=10) as server:
        assert server.healthz()["max_audio_seconds"] == 5
        response = post(server, tones(fmt, 7.0))
        body = assert_envelope(response, 400, "Audio too long: ", " s; this API accepts at most 5 s per request")
        match = re.fullmatch(r"Audio too long: ([0-9.]+) s; this API accepts at most 5 s per request", body["message"])
        assert match, body["message"]
        assert float(match.group(1)) == pytest.approx(7.0, abs=TOLERANCE_S)
        response = post(server, tones(fmt, 3.0))
        assert response.status_code == 200, response.text
        stats = server.stats()
        assert stats["by_status"] == {"200": 1, "400": 1}
        assert stats["transcriptions_ok"] == 1
        assert stats["audio_seconds_ok"] == pytest.approx(3.0, abs=TOLERANCE_S), "the refused file is not counted"


def test_max_audio_seconds_message_with_a_fractional_limit(tones) -> None:
    with start_server(max_audio_seconds=2.5) as server:
        assert_envelope(post(server, tones("flac", 3.0)), 400, "Audio too long: 3.0 s; this API accepts at most 2.5 s")
        assert post(server, tones("flac", 2.0)).status_code == 200


def test_duration_stats_sum_and_reset(plain_server, tones) -> None:
    reset = plain_server.reset_stats()
    for name in ("first_request_at", "last_answer_at", "busy_seconds"):
        assert reset[name] is None, name
    assert reset["audio_seconds_ok"] == 0 and reset["audio_unknown_ok"] == 0 and reset["rejected_in_flight"] == 0
    assert reset["max_admitted"] == 0 and reset["audio_latency_seconds"] == 0

    sent = {("wav", 2.0), ("flac", 1.5), ("mpeg", 3.0), ("ogg", 1.0)}
    for fmt, seconds in sent:
        assert post(plain_server, tones(fmt, seconds)).status_code == 200
    assert httpx.post(plain_server.transcriptions_url, files={"file": ("x.wav", b"x")}).status_code == 401
    stats = plain_server.stats()
    assert stats["audio_seconds_ok"] == pytest.approx(7.5, abs=2 * TOLERANCE_S)
    assert stats["transcriptions_ok"] == 4
    first, last = stats["first_request_at"], stats["last_answer_at"]
    assert isinstance(first, float) and isinstance(last, float) and first <= last
    assert first >= reset["since"]
    assert stats["busy_seconds"] == pytest.approx(last - first, abs=1e-5)

    reset = plain_server.reset_stats()
    assert reset["audio_seconds_ok"] == 0 and reset["first_request_at"] is None and reset["busy_seconds"] is None
