"""Real offline recognition: espeak-ng speech in the ten formats and three languages.

Bounds (word error rate after normalising case, punctuation and accents):
English <= 20 % per clip in every format; German and Spanish <= 35 % per language with
``language`` set. Whisper base on espeak-ng's synthetic voice meets these with margin for the
sentences below (measured: English 0 %, German 0 %, Spanish ~21 %); it does much worse on French
(~40-80 %), which is therefore not asserted.
"""

from __future__ import annotations

import time

import av
import httpx
import psutil
import pytest

from linkai_provider.server.audio_fixtures import AUDIO_FORMATS, word_error_rate

pytestmark = pytest.mark.whisper

ENGLISH = (
    "Hello, I need some help with my account.",
    "Please call me back when you have a moment.",
    "I would like to order a large pizza with mushrooms.",
    "Thank you very much for your help today.",
    "My phone number has changed since last year.",
)
OTHER_LANGUAGES = {
    "de": (("Guten Morgen, wie geht es Ihnen heute?", "ogg"), ("Wir treffen uns morgen im Büro.", "mp3")),
    "es": (("Muchas gracias por su ayuda.", "webm"), ("La reunión empieza a las diez de la mañana.", "wav")),
}


def transcribe(server, path, **fields: str) -> str:
    response = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                          files={"file": path.open("rb")}, data=fields, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["text"]


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_english_in_every_format(whisper_server, clip, fmt: str) -> None:
    sentence = ENGLISH[AUDIO_FORMATS.index(fmt) % len(ENGLISH)]
    text = transcribe(whisper_server, clip(sentence, fmt))  # language auto-detected
    wer = word_error_rate(sentence, text)
    print(f"\n[{fmt}] WER {wer:.0%}: {sentence!r} -> {text!r}")
    assert wer <= 0.20


@pytest.mark.parametrize("language", sorted(OTHER_LANGUAGES))
def test_other_languages_with_language_field(whisper_server, clip, language: str) -> None:
    errors = words = 0
    for sentence, fmt in OTHER_LANGUAGES[language]:
        text = transcribe(whisper_server, clip(sentence, fmt, voice=language), language=language)
        wer = word_error_rate(sentence, text)
        n = len(sentence.split())
        errors, words = errors + wer * n, words + n
        print(f"\n[{language}/{fmt}] WER {wer:.0%}: {sentence!r} -> {text!r}")
    print(f"[{language}] WER {errors / words:.0%} over {words} words")
    assert errors / words <= 0.35


def test_language_is_auto_detected(whisper_server, clip) -> None:
    sentence = "Guten Morgen, wie geht es Ihnen heute?"
    text = transcribe(whisper_server, clip(sentence, "flac", voice="de"))
    print(f"\n[de auto] {text!r}")
    assert word_error_rate(sentence, text) <= 0.35


def test_cpu_time_per_audio_second(whisper_server, clip) -> None:
    """Measured in this process: the server thread does the recognising."""
    paths = [clip(sentence, "wav") for sentence in ENGLISH[:3]]
    audio_s = 0.0
    for path in paths:
        with av.open(str(path)) as container:
            audio_s += container.duration / 1e6
    me = psutil.Process()
    before, wall = me.cpu_times(), time.perf_counter()
    for path in paths:
        transcribe(whisper_server, path, language="en")
    after, wall = me.cpu_times(), time.perf_counter() - wall
    cpu = (after.user - before.user) + (after.system - before.system)
    print(f"\nwhisper base int8: {cpu / audio_s:.2f} CPU-s and {wall / audio_s:.2f} wall-s per audio second "
          f"({audio_s:.1f} s of audio)")
    assert cpu / audio_s < 3.0


def test_parallel_requests_queue_for_the_workers(whisper_server, clip) -> None:
    from concurrent.futures import ThreadPoolExecutor

    path = clip(ENGLISH[0], "wav")
    with ThreadPoolExecutor(3) as pool:
        texts = list(pool.map(lambda _: transcribe(whisper_server, path, language="en"), range(3)))
    assert len(set(texts)) == 1 and word_error_rate(ENGLISH[0], texts[0]) <= 0.2
