"""``response_format`` json, text, srt, vtt and verbose_json as OpenAI defines them: OpenAI-style
requests (``model`` and ``response_format`` form fields) over real HTTP, read raw and by OpenAI's
own SDK; Whisper's real segments and language on a short spoken clip."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from linkai_provider.server.audio_fixtures import tone, word_error_rate
from linkai_provider.server.response_formats import Recognition, Segment, render

SRT_CUE = re.compile(r"(\d+)\n(\d\d:\d\d:\d\d,\d{3}) --> (\d\d:\d\d:\d\d,\d{3})\n(.*)\n")
VTT_CUE = re.compile(r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n(.*)\n")


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return tone(tmp_path_factory.mktemp("formats") / "call.wav", "wav", 2.5)  # exactly 2.5 s


def post(server, path: Path, **fields: str) -> httpx.Response:
    response = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                          data={"model": "whisper-1", **fields}, files={"file": path.open("rb")}, timeout=120)
    assert response.status_code == 200, response.text
    return response


def seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_digest_in_every_format(linkai_server, wav) -> None:
    digest = f"sha256:{hashlib.sha256(wav.read_bytes()).hexdigest()} bytes:{wav.stat().st_size}"

    plain = post(linkai_server, wav, response_format="json")
    assert plain.headers["content-type"] == "application/json" and plain.json() == {"text": digest}
    assert post(linkai_server, wav).json() == {"text": digest}  # json is the default

    text = post(linkai_server, wav, response_format="text")
    assert text.headers["content-type"] == "text/plain; charset=utf-8" and text.text == digest + "\n"

    srt = post(linkai_server, wav, response_format="srt")
    assert srt.headers["content-type"] == "text/plain; charset=utf-8"
    assert srt.text == f"1\n00:00:00,000 --> 00:00:02,500\n{digest}\n\n"

    vtt = post(linkai_server, wav, response_format="vtt")
    assert vtt.headers["content-type"] == "text/vtt; charset=utf-8"
    assert vtt.text == f"WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n{digest}\n\n"

    verbose = post(linkai_server, wav, response_format="verbose_json", language="de")
    assert verbose.headers["content-type"] == "application/json"
    body = verbose.json()
    assert set(body) == {"task", "language", "duration", "text", "segments"}
    assert (body["task"], body["language"], body["duration"], body["text"]) == ("transcribe", "german", 2.5, digest)
    [segment] = body["segments"]
    assert (segment["id"], segment["start"], segment["end"], segment["text"]) == (0, 0.0, 2.5, digest)
    assert {"seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"} <= set(segment)
    # the digest engine detects no language: none unless one is sent
    assert post(linkai_server, wav, response_format="verbose_json").json()["language"] is None


def test_openai_sdk_reads_every_format(linkai_server, wav) -> None:
    client = openai.OpenAI(base_url=linkai_server.url + "/v1", api_key=linkai_server.api_key, max_retries=0)

    def create(fmt: str):
        with wav.open("rb") as fh:
            return client.audio.transcriptions.create(model="whisper-1", file=fh, response_format=fmt)

    text = create("json").text
    assert text.startswith("sha256:")
    assert create("text").strip() == text
    assert create("srt").startswith("1\n00:00:00,000 --> 00:00:02,500\n")
    assert create("vtt").startswith("WEBVTT\n")
    verbose = create("verbose_json")
    assert (verbose.text, verbose.duration, verbose.segments[0].end) == (text, 2.5, 2.5)


def test_render_long_and_empty() -> None:
    rec = Recognition(" Hi.", (Segment(0, 3725.5, 3727.25, " Hi."), Segment(1, 3727.25, 3728.0, " Bye.")), "en", 3728.0)
    body, _ = render("srt", rec)
    assert body.decode() == "1\n01:02:05,500 --> 01:02:07,250\nHi.\n\n2\n01:02:07,250 --> 01:02:08,000\nBye.\n\n"
    body, _ = render("vtt", rec)
    assert body.decode().splitlines()[2] == "01:02:05.500 --> 01:02:07.250"
    assert json.loads(render("verbose_json", rec)[0])["language"] == "english"
    assert render("srt", Recognition(""))[0] == b"" and render("vtt", Recognition(""))[0] == b"WEBVTT\n\n"


@pytest.mark.whisper
def test_whisper_segments_and_language(whisper_server, clip) -> None:
    truth = "Hello, I need some help with my account. Please call me back when you have a moment."
    path = clip(truth, "mp3", name="formats-two-sentences.mp3")

    verbose = post(whisper_server, path, response_format="verbose_json").json()
    assert (verbose["task"], verbose["language"]) == ("transcribe", "english")
    assert word_error_rate(truth, verbose["text"]) <= 0.2, verbose["text"]
    duration = verbose["duration"]
    assert 3.0 < duration < 10.0
    segments = verbose["segments"]
    assert [s["id"] for s in segments] == list(range(len(segments))) and segments
    assert all(0.0 <= s["start"] < s["end"] <= duration + 0.5 for s in segments)
    assert all(a["end"] <= b["start"] + 0.01 for a, b in zip(segments, segments[1:], strict=False))
    assert " ".join(s["text"].strip() for s in segments) == verbose["text"]
    assert all(s["tokens"] and -5.0 < s["avg_logprob"] <= 0.0 for s in segments)

    # (language given from here on: detection took place above and costs 0.4 s a request)
    cues = SRT_CUE.findall(post(whisper_server, path, response_format="srt", language="en").text)
    assert [(int(n), seconds(a), seconds(b), t) for n, a, b, t in cues] == [
        (s["id"] + 1, s["start"], s["end"], s["text"].strip()) for s in segments
    ]
    vtt = post(whisper_server, path, response_format="vtt", language="en").text
    assert vtt.startswith("WEBVTT\n\n")
    assert [t for _, _, t in VTT_CUE.findall(vtt)] == [s["text"].strip() for s in segments]


def test_the_docs_curl_example(linkai_server, wav) -> None:
    """docs/server.md's curl line for a format, as written but for URL, key and file."""
    result = subprocess.run(
        ["curl", "-s", linkai_server.transcriptions_url, "-H", f"Authorization: Bearer {linkai_server.api_key}",
         "-F", f"file=@{wav}", "-F", "model=whisper-1", "-F", "response_format=srt"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert result.stdout.startswith("1\n00:00:00,000 --> 00:00:02,500\nsha256:")
