"""Long recordings end to end: split at silences, pieces sent concurrently through the batch's one
scheduler, joined into one row; the upload limit learned from 413s; a duration limit; remote sources.

Against linkai-server (digest engine: each piece's text is ``sha256:<hex> bytes:<n>`` of the piece as
uploaded, so the server's counters and the row's segments can be matched piece by piece).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from linkai_provider import cli
from linkai_provider.dataset import read_rows
from tests.io.test_split_audio import SENTENCES, join_sentences, write_wav

DIGEST = re.compile(r"sha256:[0-9a-f]{64} bytes:(\d+)")


@pytest.fixture(scope="module")
def meeting(tmp_path_factory):
    """About three minutes of sentences with known pauses, as a 16 kHz WAV (5.6 MB)."""
    folder = tmp_path_factory.mktemp("meeting")
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(48)], folder, seed=3)
    (folder / "in").mkdir()
    return rec, write_wav(folder / "in" / "board-meeting.wav", rec.samples)


def transcribe(capsys, server, source, dest, *flags: str) -> dict:
    import os

    os.environ["LINKAI_API_KEY"] = server.api_key
    code = cli.main([str(source), str(dest), "--base-url", server.url, "-q", "--no-progress", *flags])
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    summary["exit_code"], summary["log"] = code, captured.err
    return summary


def rows(dest) -> list[dict]:
    import fsspec

    return read_rows(fsspec.filesystem("file"), str(dest)).to_pylist()


def in_a_pause(t: float, spans: list[tuple[float, float]]) -> bool:
    """Whether ``t`` lies outside every sentence (strictly between two of them, or before/after all)."""
    return all(not (start <= t <= end) for start, end in spans)


def test_long_wav_is_split_at_pauses_into_one_ok_row(tmp_path, capsys, linkai_server_factory, meeting):
    rec, wav = meeting
    server = linkai_server_factory(latency_ms=50)
    summary = transcribe(capsys, server, wav.parent, tmp_path / "out", "--max-chunk-seconds", "40",
                         "--max-concurrency", "8")  # fmt: skip

    assert (summary["exit_code"], summary["transcribed"], summary["split"]) == (0, 1, 1)
    [row] = rows(tmp_path / "out")
    segments = row["segments"]
    assert row["status"] == "ok" and row["chunks"] == len(segments) >= 5
    # contiguous spans from 0 to the end, each at most max_chunk_seconds, every cut inside a pause
    assert segments[0]["start_s"] == 0.0
    assert abs(segments[-1]["end_s"] - rec.duration_s) < 0.05
    for before, after in zip(segments, segments[1:], strict=False):
        assert before["end_s"] == after["start_s"]
        assert in_a_pause(before["end_s"], rec.spans), before["end_s"]
    assert all(s["end_s"] - s["start_s"] <= 40.0 for s in segments)
    # one request per piece, every piece's text from the server, joined in order with single spaces
    stats = server.stats()
    assert stats["requests_total"] == stats["transcriptions_ok"] == row["chunks"] == summary["requests"]
    assert [DIGEST.fullmatch(s["text"]) is not None for s in segments] == [True] * len(segments)
    assert row["text"] == " ".join(s["text"] for s in segments)
    piece_bytes = [int(DIGEST.fullmatch(s["text"]).group(1)) for s in segments]
    assert max(piece_bytes) < wav.stat().st_size / 2  # Opus pieces: a fraction of the WAV
    assert abs(row["audio_duration_s"] - rec.duration_s) < 0.05


def test_413_with_an_html_page_teaches_a_lower_limit(tmp_path, capsys, linkai_server_factory, meeting):
    """The API (behind an nginx-like proxy) takes at most 1.5 MB; the operator believes 25 MiB. The
    whole file gets 413 with an HTML page: the budget shrinks, the file is split, every later upload
    fits, and no row ever carries the HTML."""
    _, wav = meeting
    server = linkai_server_factory(max_upload_bytes=1_500_000, too_large_style="nginx")
    summary = transcribe(capsys, server, wav.parent, tmp_path / "out", "--piece-format", "flac",
                         "--max-upload-bytes", str(25 * 2**20))  # fmt: skip

    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok", row["error_message"]
    assert summary["transcribed"] == 1 and row["chunks"] >= 2
    by_status = server.stats()["by_status"]
    assert by_status.get("413", 0) >= 1 and by_status["200"] == row["chunks"]
    assert all(int(DIGEST.fullmatch(s["text"]).group(1)) <= 1_500_000 for s in row["segments"])
    assert summary["log"].count("its limit is lower") == 1  # said once, clearly, however many 413s
    assert "<html" not in summary["log"].lower()


def test_413_without_splitting_is_a_short_sentence(tmp_path, capsys, linkai_server_factory, meeting):
    _, wav = meeting
    server = linkai_server_factory(max_upload_bytes=400_000, too_large_style="nginx")
    summary = transcribe(capsys, server, wav.parent, tmp_path / "out", "--no-split")

    [row] = rows(tmp_path / "out")
    assert summary["failed"] == 1 and row["status"] == "failed"
    assert row["error_type"] == "PayloadTooLargeError" and row["error_code"] == 413
    assert row["error_message"] == f"the API refused the upload of {wav.stat().st_size} bytes as too large (HTTP 413)"
    assert "<" not in row["error_message"]


def test_a_413_that_states_its_limit_is_taken_at_its_word(tmp_path, capsys, linkai_server_factory, meeting):
    """An OpenAI-style or LinkAI 413 says what the limit is: the budget goes straight there (less the
    form's own bytes), one 413 in all, and every piece is as large as that limit allows."""
    _, wav = meeting
    server = linkai_server_factory(max_upload_bytes=1_500_000)  # JSON 413: "the upload limit is 1500000 bytes"
    summary = transcribe(capsys, server, wav.parent, tmp_path / "out", "--piece-format", "flac")

    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok" and summary["transcribed"] == 1
    assert server.stats()["by_status"] == {"200": row["chunks"], "413": 1}
    sizes = [int(DIGEST.fullmatch(s["text"]).group(1)) for s in row["segments"]]
    assert max(sizes) <= 1_500_000


def test_a_413_for_a_small_upload_is_the_files_failure_not_a_new_limit(tmp_path, capsys, linkai_server_factory):
    """A 413 for an upload under 1 MiB (a proxy's per-route rule, a misconfigured gateway) fails that
    file with the server's own message; the budget is not lowered and the other files go as they are."""
    folder = tmp_path / "in"
    folder.mkdir()
    voice = join_sentences([SENTENCES[0]], tmp_path, seed=1).samples
    write_wav(folder / "a-long-voicemail.wav", np.tile(voice, 3))  # ~300 kB
    write_wav(folder / "b-short.wav", voice[voice.size // 2 - 8000 : voice.size // 2 + 8000])  # 32 kB of speech
    server = linkai_server_factory(max_upload_bytes=100_000)
    summary = transcribe(capsys, server, folder, tmp_path / "out")

    by_name = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "out")}
    failed = by_name["a-long-voicemail.wav"]
    size = (folder / "a-long-voicemail.wav").stat().st_size
    assert (failed["status"], failed["error_code"], failed["attempts"]) == ("failed", 413, 1)
    assert failed["error_message"] == (
        f"the API refused the upload of {size} bytes as too large (HTTP 413): "
        "File too large: the upload limit is 100000 bytes (97.7 KiB)"
    )
    assert by_name["b-short.wav"]["status"] == "ok"
    assert "its limit is lower" not in summary["log"] and server.stats()["requests_total"] == 2


def test_a_duration_limit_is_met_by_max_chunk_seconds(tmp_path, capsys, linkai_server_factory, meeting):
    rec, wav = meeting
    server = linkai_server_factory(max_audio_seconds=60)

    # Sent whole (5.6 MB is under the byte budget, 3 min under 600 s): the API's duration limit refuses it.
    summary = transcribe(capsys, server, wav.parent, tmp_path / "whole")
    [row] = rows(tmp_path / "whole")
    assert (summary["failed"], row["error_code"]) == (1, 400) and "too long" in row["error_message"].lower()

    # With pieces of at most 50 s every request fits.
    summary = transcribe(capsys, server, wav.parent, tmp_path / "pieces", "--max-chunk-seconds", "50")
    [row] = rows(tmp_path / "pieces")
    assert row["status"] == "ok" and row["chunks"] >= 4
    assert all(s["end_s"] - s["start_s"] <= 50 for s in row["segments"])


def test_a_failed_piece_fails_the_row_and_names_the_piece(tmp_path, capsys, linkai_server_factory, meeting):
    """A duration limit shorter than the pieces: the first refused piece makes the row failed, naming the
    piece and its span, and the other pieces are not sent (the file goes again whole next run)."""
    _, wav = meeting
    server = linkai_server_factory(max_audio_seconds=20)
    summary = transcribe(capsys, server, wav.parent, tmp_path / "out", "--max-chunk-seconds", "40",
                         "--max-concurrency", "1")  # fmt: skip

    [row] = rows(tmp_path / "out")
    assert summary["failed"] == 1 and row["status"] == "failed" and row["segments"] is None
    assert re.match(r"piece 1 \(0\.0-\d+\.\d s\): .*too long", row["error_message"], re.IGNORECASE), row[
        "error_message"
    ]
    assert server.stats()["requests_total"] == 1  # with one slot, nothing else of the file was sent


TEN_FORMATS = ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")
PIECE_ENCODINGS = ("ogg", "flac", "mp3")


@pytest.fixture(scope="module")
def short_meeting_all_formats(tmp_path_factory):
    """About 40 s of sentences and pauses, in each of the ten API formats (one folder per format)."""
    from linkai_provider.server.audio_fixtures import _encode

    folder = tmp_path_factory.mktemp("ten")
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(10)], folder, seed=5)
    wav = write_wav(folder / "meeting.wav", rec.samples)
    sources = {}
    for fmt in TEN_FORMATS:
        (folder / fmt).mkdir()
        target = folder / fmt / f"meeting.{fmt}"
        if fmt == "wav":
            target.write_bytes(wav.read_bytes())
        else:
            _encode(wav, target, fmt)
        sources[fmt] = target
    return rec, sources


@pytest.mark.parametrize("fmt", TEN_FORMATS)
def test_every_format_in_and_three_piece_encodings_out(fmt, tmp_path, capsys, linkai_server, short_meeting_all_formats):
    rec, sources = short_meeting_all_formats
    piece_format = PIECE_ENCODINGS[TEN_FORMATS.index(fmt) % 3]  # each encoding for three or four formats
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, sources[fmt], tmp_path / "out", "--max-chunk-seconds", "12",
                         "--piece-format", piece_format)  # fmt: skip

    [row] = rows(tmp_path / "out")
    assert (row["status"], summary["split"]) == ("ok", 1), row["error_message"]
    assert row["chunks"] >= 3 and linkai_server.stats()["transcriptions_ok"] == row["chunks"]
    assert row["segments"][-1]["end_s"] == pytest.approx(rec.duration_s, abs=0.15)
    for seg in row["segments"][:-1]:  # encoder delay: 50 ms of slack at sentence bounds
        assert not [(a, b) for a, b in rec.spans if a - 0.05 < seg["end_s"] < b + 0.05], (fmt, seg)


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_remote_long_recording_is_read_once_and_split(store, tmp_path, capsys, linkai_server, meeting, request):
    rec, wav = meeting
    if store == "s3":
        fs, url = request.getfixturevalue("s3fs_factory")(), "s3://long-in"
        conn = {"conn_type": "generic", "extra": {"client_kwargs": {"endpoint_url": request.getfixturevalue(
            "moto_endpoint")}, "key": "testing", "secret": "testing"}}  # fmt: skip
    else:
        fs, url = request.getfixturevalue("gcsfs_factory")(), "gs://long-in"
        conn = {"conn_type": "generic", "extra": {"endpoint_url": request.getfixturevalue("gcs_endpoint"),
                                                  "token": "anon", "project": "test"}}  # fmt: skip
    fs.mkdir(url.split("://")[1])
    fs.put_file(str(wav), f"{url}/calls/board-meeting.wav")
    request.getfixturevalue("conn_env")(remote_in=conn)
    linkai_server.reset_stats()
    import tempfile

    mine = f"linkai-split-{os.getpid()}-*"  # this process's work folders (other test workers split too)
    before = {p.name for p in Path(tempfile.gettempdir()).glob(mine)}
    summary = transcribe(capsys, linkai_server, f"{url}/calls/", tmp_path / "out", "--source-conn-id", "remote_in",
                         "--max-chunk-seconds", "45")  # fmt: skip

    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok" and row["source_uri"] == f"{url}/calls/board-meeting.wav"
    assert row["chunks"] >= 4 and summary["split"] == 1
    assert linkai_server.stats()["transcriptions_ok"] == row["chunks"]
    # the spilled copy and the pieces are gone
    assert {p.name for p in Path(tempfile.gettempdir()).glob(mine)} <= before


def test_sigkill_mid_file_then_rerun_leaves_one_ok_row(tmp_path, linkai_server_factory, meeting):
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    _, wav = meeting
    server = linkai_server_factory(latency_ms=400)
    env = {**os.environ, "LINKAI_API_KEY": server.api_key}
    cmd = [sys.executable, "-m", "linkai_provider.cli", str(wav.parent), str(tmp_path / "out"), "--base-url",
           server.url, "-q", "--no-progress", "--max-chunk-seconds", "15", "--max-concurrency", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while server.stats()["transcriptions_ok"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    workdirs = [p for p in Path(tempfile.gettempdir()).glob(f"linkai-split-{proc.pid}-*")]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert workdirs and all(p.exists() for p in workdirs)  # a SIGKILL leaves its pieces behind...
    assert not rows(tmp_path / "out") if (tmp_path / "out").exists() else True  # ...and no visible row

    server.reset_stats()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [row] = [r for r in rows(tmp_path / "out")]
    assert row["status"] == "ok" and row["chunks"] >= 12
    assert not any(p.exists() for p in workdirs)  # ...which the next run sweeps


@pytest.mark.whisper
def test_real_recognition_of_a_split_recording_matches_sentences_one_by_one(tmp_path, capsys):
    """Three minutes of espeak-ng speech cut into pieces of at most 60 s: whisper recognises the joined
    pieces about as well as the same sentences sent one by one; the docs' segments query finds a phrase
    in the piece that holds it."""
    import duckdb

    from linkai_provider.hooks.linkai import LinkAIHook
    from linkai_provider.server.audio_fixtures import normalize_words, synthesize, word_error_rate
    from linkai_provider.server.testing import start_server

    texts = [SENTENCES[i % len(SENTENCES)] for i in range(48)]
    rec = join_sentences(texts, tmp_path, seed=7)
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "town-hall.wav", rec.samples)
    assert rec.duration_s > 170
    with start_server(engine="whisper") as server:
        dest = tmp_path / "transcripts" / "dt=2026-11-24"
        summary = transcribe(capsys, server, tmp_path / "in", dest, "--max-chunk-seconds", "60",
                             "--language", "en")  # fmt: skip
        one_by_one = {}
        for text in sorted(set(texts)):
            wav = synthesize(text, tmp_path / "single" / f"{abs(hash(text))}.wav", "wav")
            os.environ["AIRFLOW_CONN_WHISPER_ONE"] = server.airflow_conn_json
            with open(wav, "rb") as fh:
                one_by_one[text] = LinkAIHook("whisper_one").transcribe(fh, filename="one.wav").text

    [row] = rows(dest)
    assert row["status"] == "ok" and row["chunks"] >= 3 and summary["split"] == 1
    split_wer = word_error_rate(" ".join(texts), row["text"])
    single_wer = sum(word_error_rate(t, one_by_one[t]) * len(t.split()) for t in texts) / sum(
        len(t.split()) for t in texts
    )
    print(f"\nsplit into {row['chunks']} pieces: WER {split_wer:.1%}; sentences one by one: WER {single_wer:.1%}")
    assert split_wer <= single_wer + 0.08, (split_wer, single_wer, row["text"])
    # every sentence is there, in order: each reference sentence's words appear in sequence
    words = normalize_words(row["text"])
    assert len(words) >= 0.9 * len(normalize_words(" ".join(texts)))

    # The docs' query (docs/snippets/duckdb_segments.sql), run as written from the dataset's parent folder
    sql = (Path(__file__).parents[2] / "docs" / "snippets" / "duckdb_segments.sql").read_text()
    os.chdir(tmp_path)
    found = duckdb.connect().sql(sql).fetchall()
    holding = [s for s in row["segments"] if "quarterly report" in s["text"].lower()]
    assert holding and len(found) == len(holding)
    assert [(r[2], r[3]) for r in found] == [(round(s["start_s"], 1), round(s["end_s"], 1)) for s in holding]
    assert all(re.fullmatch(r"\d\d:\d\d", r[1]) for r in found)


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> tuple[int, float]:
    """Run ``cmd``; its exit code and its peak resident memory (MB), from the kernel's own accounting."""
    import subprocess

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def test_the_issue_scenario_board_meeting_town_hall_voicemail(tmp_path, linkai_server_factory, meeting):
    """Issue 10 as filed: a 40-minute WAV (77 MB), a 60-minute MP3 (29 MB) and a 30-second voicemail,
    against an API whose proxy refuses uploads over 25 MiB with an HTML 413. Three ok rows, no upload
    over the limit, and the run peaks at most 300 MB above a run over the voicemail alone."""
    import sys

    import av

    rec, _ = meeting
    folder = tmp_path / "calls"
    folder.mkdir()
    repeat_40 = int(40 * 60 / rec.duration_s) + 1
    repeat_60 = int(60 * 60 / rec.duration_s) + 1
    write_wav(folder / "board-meeting.wav", rec.samples, repeat=repeat_40)
    assert (folder / "board-meeting.wav").stat().st_size > 75e6
    with av.open(str(folder / "town-hall.mp3"), "w") as out:  # 60 min of the same speech, 64 kbit/s mono
        stream = out.add_stream("mp3", rate=16000, layout="mono")
        stream.bit_rate = 64000
        block = rec.samples.reshape(1, -1)
        for _ in range(repeat_60):
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    assert (folder / "town-hall.mp3").stat().st_size > 28e6
    write_wav(tmp_path / "voicemail.wav", rec.samples[: 30 * 16000])
    (tmp_path / "voicemail-only").mkdir()
    (tmp_path / "voicemail.wav").rename(tmp_path / "voicemail-only" / "voicemail.wav")
    import shutil

    shutil.copy(tmp_path / "voicemail-only" / "voicemail.wav", folder / "voicemail.wav")

    limit = 25 * 2**20
    server = linkai_server_factory(max_upload_bytes=limit, too_large_style="nginx")
    env = {**os.environ, "LINKAI_API_KEY": server.api_key}
    base = [sys.executable, "-m", "linkai_provider.cli", "--base-url", server.url, "-q", "--no-progress"]
    code, short_mb = peak_rss_mb([*base[:3], str(tmp_path / "voicemail-only"), str(tmp_path / "short"), *base[3:]], env)
    assert code == 0
    server.reset_stats()
    code, long_mb = peak_rss_mb([*base[:3], str(folder), str(tmp_path / "out"), *base[3:]], env)
    assert code == 0

    by_name = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "out")}
    assert sorted(by_name) == ["board-meeting.wav", "town-hall.mp3", "voicemail.wav"]
    assert all(r["status"] == "ok" for r in by_name.values())
    assert by_name["voicemail.wav"]["chunks"] == 1  # small: sent whole, as it is
    assert by_name["board-meeting.wav"]["chunks"] >= 4 and by_name["town-hall.mp3"]["chunks"] >= 6  # 600 s pieces
    for name, duration in (
        ("board-meeting.wav", repeat_40 * rec.duration_s),
        ("town-hall.mp3", repeat_60 * rec.duration_s),
    ):
        segments = by_name[name]["segments"]
        assert segments[-1]["end_s"] == pytest.approx(duration, rel=0.02)
        assert all(int(DIGEST.fullmatch(s["text"]).group(1)) <= limit for s in segments)
    stats = server.stats()
    assert "413" not in stats["by_status"] and stats["transcriptions_ok"] == sum(r["chunks"] for r in by_name.values())
    print(
        f"\npeak RSS: voicemail alone {short_mb:.0f} MB, the three files {long_mb:.0f} MB (+{long_mb - short_mb:.0f})"
    )
    assert long_mb - short_mb <= 300


def test_sigterm_mid_file_stops_cleans_up_and_keeps_what_finished(tmp_path, linkai_server_factory, meeting):
    """``linkai-transcribe`` handles SIGTERM as Airflow's on_kill: nothing more is sent, the short files
    that finished are written (one part), the recording being split has no row, and its temporary
    folder (spilled copy, pieces) is gone."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    _, wav = meeting
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(wav, folder / "a-long.wav")
    for i in range(3):
        write_wav(folder / f"b-short-{i}.wav", join_sentences([SENTENCES[i]], tmp_path, seed=i).samples)
    server = linkai_server_factory(latency_ms=300)
    env = {**os.environ, "LINKAI_API_KEY": server.api_key}
    cmd = [sys.executable, "-m", "linkai_provider.cli", str(folder), str(tmp_path / "out"), "--base-url", server.url,
           "-q", "--no-progress", "--max-chunk-seconds", "10", "--max-concurrency", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while server.stats()["transcriptions_ok"] < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    workdirs = list(Path(tempfile.gettempdir()).glob(f"linkai-split-{proc.pid}-*"))
    assert workdirs, "the long file should be being split"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 4, err.decode()
    summary = json.loads(out)
    assert summary["stopped_by"] == "SIGTERM" and summary["not_sent"] >= 1
    written = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "out")}
    assert "a-long.wav" not in written  # its pieces did not all come back: no row, sent again next run
    assert all(r["status"] == "ok" for r in written.values())
    assert len(list((tmp_path / "out").glob("*.parquet"))) == (1 if written else 0)
    assert not any(p.exists() for p in workdirs)
    requests = server.stats()["requests_total"]
    time.sleep(0.5)
    assert server.stats()["requests_total"] == requests  # nothing more was sent
    # what the API billed is in the summary, the long file's answered pieces included
    assert summary["audio_seconds"] == pytest.approx(server.stats()["audio_seconds_ok"], abs=0.1)


def test_piece_format_is_chosen_by_the_budget():
    from linkai_provider.uploads import auto_piece_format

    assert auto_piece_format(25 * 2**20, 600) == "flac"  # the defaults: 600 s of raw 16 kHz PCM is 19.2 MB
    assert auto_piece_format(12 * 2**20, 600) == "ogg"  # a lower (e.g. learned) limit: compact Opus
    assert auto_piece_format(12 * 2**20, 300) == "flac"


def test_without_pyav_files_go_as_they_are_and_long_ones_name_the_extra(tmp_path, capsys, linkai_server, meeting,
                                                                         monkeypatch):  # fmt: skip
    """Without the audio extra nothing is analysed: short files are sent as they are, with their header's
    duration; one that needs splitting is a failed row naming the extra; a WARNING says what is not checked."""
    import sys

    from tests.test_spend_control import transcribe as transcribe_logged

    rec, wav = meeting
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(wav, folder / "board-meeting.wav")
    write_wav(folder / "voicemail.wav", rec.samples[: 10 * 16000])
    monkeypatch.setitem(sys.modules, "av", None)  # import av now raises ImportError
    linkai_server.reset_stats()
    summary = transcribe_logged(capsys, linkai_server, folder, tmp_path / "out", "--max-chunk-seconds", "60")

    by_name = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "out")}
    assert by_name["voicemail.wav"]["status"] == "ok" and by_name["voicemail.wav"]["audio_duration_s"] == 10.0
    assert by_name["board-meeting.wav"]["status"] == "failed"
    assert "pip install 'airflow-provider-linkai[audio]'" in by_name["board-meeting.wav"]["error_message"]
    assert sum("PyAV is not installed" in line for line in summary["records"]) == 1
    assert linkai_server.stats()["requests_total"] == 1
