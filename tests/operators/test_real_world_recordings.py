"""Recordings as they come from phone systems, meeting tools and archives (issue 17), through
``linkai-transcribe`` against linkai-server over real HTTP: damaged files, headers that lie, video
containers, compressed sources cut by packet copy, stereo calls, silence.

The digest engine answers ``sha256:<hex> bytes:<n>`` for each upload, so every row's segments say
exactly how many bytes each piece was, and the server's counters say what was billed.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SENTENCES
from tests.io import scenes
from tests.io.test_split_audio import join_sentences, write_wav
from tests.operators.test_long_recordings import rows
from tests.test_spend_control import transcribe

DIGEST = re.compile(r"sha256:[0-9a-f]{64} bytes:(\d+)")


def sent_bytes(text: str) -> list[int]:
    return [int(n) for n in DIGEST.findall(text)]


def by_name(dest: Path) -> dict[str, dict]:
    return {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(dest)}


def assert_counts_agree(summary: dict, server, dest: Path) -> None:
    """The summary's counts are the server's, and every row's counts are true."""
    stats = server.stats()
    assert summary["requests"] == stats["requests_total"]
    assert summary["audio_seconds"] == pytest.approx(stats["audio_seconds_ok"], abs=0.05 + 0.002 * stats[
        "audio_seconds_ok"])  # fmt: skip
    sent_rows = [r for r in rows(dest) if r["chunks"]]
    assert sum(r["attempts"] for r in rows(dest)) == stats["requests_total"]
    for row in sent_rows:
        assert row["latency_ms"] is not None and row["latency_ms"] >= 0
        if row["status"] == "ok":
            assert row["chunks"] == len(row["segments"])


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="module")
def meeting(clips):
    """About 45 s of sentences and pauses, 16 kHz."""
    return join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(12)], clips, seed=11)


# -- damaged files ---------------------------------------------------------------------------------------
def test_damaged_flac_and_mp3_transcribe_what_decodes(tmp_path, capsys, linkai_server, meeting):
    full = tmp_path / "full"
    full.mkdir()
    wav = write_wav(full / "meeting.wav", meeting.samples)
    mono = meeting.samples.reshape(1, -1)
    scenes.encode(full / "meeting.flac", mono, 16000, container="flac", codec="flac", bit_rate=0)
    scenes.encode(full / "meeting.mp3", mono, 16000, container="mp3", codec="libmp3lame", bit_rate=64000)
    scenes.encode(full / "meeting.m4a", mono, 16000, container="ipod", codec="aac", bit_rate=64000)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("meeting.flac", "meeting.mp3", "meeting.m4a"):  # interrupted copies: the last 30 % lost
        scenes.truncated(full / name, folder / f"cut-{name}", keep=0.7)
    assert wav.exists()
    linkai_server.reset_stats()

    summary = transcribe(capsys, linkai_server, folder, tmp_path / "out", "--max-chunk-seconds", "15", "-q")

    found = by_name(tmp_path / "out")
    for name in ("cut-meeting.flac", "cut-meeting.mp3"):
        row = found[name]
        assert row["status"] == "ok", row["error_message"]
        [warning] = row["warnings"]
        stops = re.search(r"(?:stops at|ends at) (\d+):(\d\d\.\d)", warning)
        assert stops, warning
        end = int(stops.group(1)) * 60 + float(stops.group(2))
        assert 0.6 * meeting.duration_s < end < 0.8 * meeting.duration_s, warning
        # the segments cover what was transcribed, and nothing after it
        assert row["segments"][-1]["end_s"] == pytest.approx(end, abs=0.1)
        assert row["audio_duration_s"] == pytest.approx(end, abs=0.1)
        assert row["chunks"] == len(row["segments"]) >= 2 and row["attempts"] == row["chunks"]
    assert "tail could not be decoded" in found["cut-meeting.flac"]["warnings"][0]  # FLAC: a broken last frame
    assert "header claims" in found["cut-meeting.mp3"]["warnings"][0]  # MP3: its Xing header counts the frames
    # an M4A whose index (moov, written last) is lost: nothing decodes, nothing is sent
    m4a = found["cut-meeting.m4a"]
    assert (m4a["status"], m4a["attempts"], m4a["chunks"]) == ("failed", 0, None)
    assert "as audio" in m4a["error_message"] and m4a["error_message"].endswith("not uploaded")
    assert (summary["transcribed"], summary["failed"], summary["split"]) == (2, 1, 2)
    assert_counts_agree(summary, linkai_server, tmp_path / "out")
    # the MP3 is cut by copying its packets: what went up is what the file holds, no more
    mp3_sent = sum(sent_bytes(found["cut-meeting.mp3"]["text"]))
    assert mp3_sent <= 1.1 * scenes.audio_stream_bytes(folder / "cut-meeting.mp3")
    # paid for once: the next run has nothing to send for them (the M4A fails again, for free)
    linkai_server.reset_stats()
    again = transcribe(capsys, linkai_server, folder, tmp_path / "out")
    assert (again["skipped_existing"], again["failed"], linkai_server.stats()["requests_total"]) == (2, 1, 0)


def test_a_header_that_lies_neither_sets_the_bill_nor_holds_the_file_back(tmp_path, capsys, linkai_server, meeting):
    """A WAV whose header claims 4 GB (37 hours) but holds 45 s: priced by demuxing under a budget, sent
    as FLAC with an honest header, billed and recorded at its true length."""
    folder = tmp_path / "in"
    scenes.lying_wav(folder / "liar.wav", meeting.samples.reshape(1, -1), 16000)
    linkai_server.reset_stats()

    dry = transcribe(capsys, linkai_server, folder, tmp_path / "out", "--max-audio-seconds", "60", "--dry-run")
    assert dry["would_send"] == 1 and dry["would_send_audio_seconds"] == pytest.approx(meeting.duration_s, abs=0.1)
    summary = transcribe(capsys, linkai_server, folder, tmp_path / "out", "--max-audio-seconds", "60")

    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok" and summary["held_back"] == 0
    assert row["audio_duration_s"] == pytest.approx(meeting.duration_s, abs=0.05)
    assert "header claims 37:" in row["warnings"][0] and "audio_duration_s is what decodes" in row["warnings"][0]
    assert summary["audio_seconds"] == pytest.approx(meeting.duration_s, abs=0.1)
    assert_counts_agree(summary, linkai_server, tmp_path / "out")
    assert sent_bytes(row["text"])[0] < (folder / "liar.wav").stat().st_size  # FLAC from its PCM


# -- only audio is sent ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def films(clips, tmp_path_factory):
    """An MP4 with AAC and one with Opus, each beside a (large) video track; a video-only WebM."""
    folder = tmp_path_factory.mktemp("films")
    talk = scenes.arrange([(0, 0.4, 0), (0, SENTENCES[1], 0), (0, 0.6, 0), (0, SENTENCES[3], 0), (0, 0.4, 0)], clips)
    scenes.video(folder / "webinar-aac.mp4", talk.samples, 16000, container="mp4", audio_codec="aac",
                 video_codec="libx264")  # fmt: skip
    scenes.video(folder / "webinar-opus.mp4", talk.samples, 16000, container="mp4", audio_codec="libopus",
                 video_codec="libx264")  # fmt: skip
    scenes.video(folder / "screen-only.webm", None, 16000, container="webm", audio_codec=None, video_codec="libvpx")
    return folder


def test_only_the_audio_track_is_sent(tmp_path, capsys, linkai_server, films):
    """Under both limits (the old path sent such a file whole, video and all): only the audio track."""
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, films, tmp_path / "out")

    found = by_name(tmp_path / "out")
    for name in ("webinar-aac.mp4", "webinar-opus.mp4"):
        row, source = found[name], films / name
        assert row["status"] == "ok" and row["chunks"] == 1, row["error_message"]
        [sent] = sent_bytes(row["text"])
        audio = scenes.audio_stream_bytes(source)
        assert sent <= 1.1 * audio + 4096 and sent < source.stat().st_size / 10, (name, sent, audio)
    video_only = found["screen-only.webm"]
    assert (video_only["status"], video_only["attempts"], video_only["error_type"]) == (
        "failed", 0, "UnreadableFileError")  # fmt: skip
    assert "has no audio stream, only video (1 stream): nothing to transcribe; not uploaded" in video_only[
        "error_message"]  # fmt: skip
    assert summary["requests"] == 2 and summary["split"] == 2
    assert_counts_agree(summary, linkai_server, tmp_path / "out")
    # never cut (split_long_audio=False) still means the audio track only: one piece each
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, films, tmp_path / "whole", "--no-split")
    whole = by_name(tmp_path / "whole")
    assert [whole[n]["chunks"] for n in ("webinar-aac.mp4", "webinar-opus.mp4")] == [1, 1]
    assert linkai_server.stats()["bytes_received"] < 0.2 * (films / "webinar-aac.mp4").stat().st_size


# -- never upsize; no short tail -------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["mp3", "m4a"])  # Opus packets: the films test
def test_compressed_sources_are_cut_by_packet_copy_and_never_grow(fmt, tmp_path, capsys, linkai_server, clips):
    """168 s in pieces of at most 40 s: balanced (greedy 40 s pieces would leave an 8 s tail), none
    under the floor (min(30 s, a third of max_chunk_seconds)), uploaded bytes within 10 % of the
    source's audio bytes (the old path sent FLAC: 3-4x an MP3)."""
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], clips, seed=3)
    folder = tmp_path / "in"
    folder.mkdir()
    codec, container = {"mp3": ("libmp3lame", "mp3"), "m4a": ("aac", "ipod"), "webm": ("libopus", "webm")}[fmt]
    source = scenes.encode(folder / f"lecture.{fmt}", rec.samples.reshape(1, -1), 16000, container=container,
                           codec=codec, bit_rate=32000)  # fmt: skip
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, folder, tmp_path / "out", "--max-chunk-seconds", "40")

    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok" and row["chunks"] == 5, [(s["start_s"], s["end_s"]) for s in row["segments"]]
    lengths = [s["end_s"] - s["start_s"] for s in row["segments"]]
    assert all(40 / 3 <= n <= 40 for n in lengths), lengths
    assert max(lengths) - min(lengths) < 15  # balanced
    sent = sum(sent_bytes(row["text"]))
    assert sent <= 1.1 * scenes.audio_stream_bytes(source), (sent, source.stat().st_size)
    assert_counts_agree(summary, linkai_server, tmp_path / "out")


# -- channels --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calls(clips, tmp_path_factory):
    """An 8 kHz stereo call (agent on channel 0, customer on channel 1) as WAV and as MP3, and a
    fake-stereo one (the same sound on both channels)."""
    folder = tmp_path_factory.mktemp("calls")
    call = scenes.arrange(
        [(0, 0.5, 0), (0, SENTENCES[4], 0), (1, 0.6, 0), (1, SENTENCES[3], 0), (0, 0.7, 0), (0, SENTENCES[2], 0),
         (0, 0.5, 0)], clips, channels=2, rate=8000)  # fmt: skip
    scenes.write_wav(folder / "stereo" / "call.wav", call.samples, 8000)
    scenes.encode(folder / "stereo" / "call.mp3", call.samples, 8000, container="mp3", codec="libmp3lame",
                  bit_rate=32000)  # fmt: skip
    mono = call.samples.sum(axis=0, dtype=np.int32).clip(-32768, 32767).astype(np.int16)
    scenes.write_wav(folder / "fake" / "fake-stereo.wav", np.vstack([mono, mono]), 8000)
    return folder, call


def test_stereo_calls_come_out_per_channel_in_turns(tmp_path, capsys, linkai_server, calls):
    folder, call = calls
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, folder / "stereo", tmp_path / "out", "--channels", "separate")

    for row in rows(tmp_path / "out"):
        assert row["status"] == "ok", row["error_message"]
        segments = row["segments"]
        # three turns: agent, customer, agent; each turn's piece holds its sentence, in time order
        assert [s["channel"] for s in segments] == [0, 1, 0]
        turns = [call.spans[0][0], call.spans[1][0], call.spans[0][1]]
        for seg, (start, end) in zip(segments, turns, strict=True):
            assert seg["start_s"] <= start + 0.05 and seg["end_s"] >= end - 0.1, (seg, start, end)
        assert row["text"].split("\n") == [f"[ch{s['channel']}] {s['text']}" for s in segments]
        assert row["audio_duration_s"] == pytest.approx(call.seconds, abs=0.15)
    assert summary["requests"] == 6  # three turns in each of the two files
    # cost figures count each channel: what the server billed, more than the recordings' length
    assert_counts_agree(summary, linkai_server, tmp_path / "out")


def test_mixed_stereo_calls_get_a_hint_once_and_fake_stereo_is_sent_once(tmp_path, capsys, linkai_server, calls):
    folder, _ = calls
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, folder / "stereo", tmp_path / "mixed")
    hints = [line for line in summary["records"] if "channels='separate' transcribes each channel" in line]
    assert summary["requests"] == 2 and len(hints) == 1  # two such files, one hint per batch

    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, folder / "fake", tmp_path / "fake", "--channels", "separate")
    [row] = rows(tmp_path / "fake")
    assert row["status"] == "ok" and summary["requests"] == 1
    assert [s["channel"] for s in row["segments"]] == [None] and "[ch" not in row["text"]
    assert "carry different speech" not in summary["log"]


# -- silence ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet_calls(clips, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quiet")
    rng = np.random.default_rng(3)
    dither = lambda n: rng.normal(0, 1.0, n).astype(np.int16)  # noqa: E731  (-90 dBFS: a line's hiss)
    scenes.write_wav(folder / "never-connected.wav", dither(20 * 8000).reshape(1, -1), 8000)
    hold = scenes.arrange([(0, 0.5, 0), (0, SENTENCES[0], 0), (0, 40.0, 0), (0, SENTENCES[1], 0), (0, 0.5, 0)],
                          clips)  # fmt: skip
    scenes.write_wav(folder / "on-hold.wav", hold.samples + dither(hold.samples.size), 16000)
    whisper = scenes.arrange([(0, 8.0, 0), (0, SENTENCES[2], -40), (0, 8.0, 0)], clips)  # speech at -40 dB
    scenes.write_wav(folder / "whispered.wav", whisper.samples + dither(whisper.samples.size), 16000)
    return folder, hold, whisper


def test_silence_is_not_sent_and_quiet_speech_is(tmp_path, capsys, linkai_server, quiet_calls):
    folder, hold, whisper = quiet_calls
    linkai_server.reset_stats()
    summary = transcribe(capsys, linkai_server, folder, tmp_path / "out")

    found = by_name(tmp_path / "out")
    silent = found["never-connected.wav"]
    assert (silent["status"], silent["text"], silent["chunks"], silent["attempts"]) == ("ok", "", None, 0)
    assert silent["warnings"] == ["no speech energy in the recording (0:20.0 of silence): nothing was sent"]
    assert silent["segments"] == []
    # the hold: one request without its 40 s of silence; the segment keeps the recording's true times
    on_hold = found["on-hold.wav"]
    assert on_hold["status"] == "ok" and on_hold["chunks"] == 1 and on_hold["warnings"] is None
    [segment] = on_hold["segments"]
    assert segment["start_s"] <= hold.spans[0][0][0] and segment["end_s"] >= hold.spans[0][1][1] - 0.05
    # the quiet speech (40 dB down) is sent, its 8 s silences on either side are not
    quiet = found["whispered.wav"]
    [segment] = quiet["segments"]
    start, end = whisper.spans[0][0]
    assert segment["start_s"] <= start and segment["end_s"] >= end and segment["end_s"] - segment["start_s"] < end - \
        start + 2  # fmt: skip
    billed = linkai_server.stats()["audio_seconds_ok"]
    speech = sum(e - s for e, s in ((hold.spans[0][0][1], hold.spans[0][0][0]), (hold.spans[0][1][1],
                 hold.spans[0][1][0]), (end, start)))  # fmt: skip
    assert speech < billed < speech + 4  # 0.5 s kept at the edge of every silence
    assert summary["requests"] == 2 and summary["transcribed"] == 3
    assert_counts_agree(summary, linkai_server, tmp_path / "out")


@pytest.mark.whisper
def test_real_recognition_of_a_stereo_call_and_of_quiet_speech(tmp_path, capsys, calls, quiet_calls):
    """whisper base hears each party of an 8 kHz call on its own channel, in turns, and the speech
    40 dB down next to silence."""
    from linkai_provider.server.audio_fixtures import normalize_words
    from linkai_provider.server.testing import start_server

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(calls[0] / "stereo" / "call.wav", folder / "call.wav")
    shutil.copy(quiet_calls[0] / "whispered.wav", folder / "whispered.wav")
    with start_server(engine="whisper") as server:
        summary = transcribe(capsys, server, folder, tmp_path / "out", "--channels", "separate", "--language", "en")
    found = by_name(tmp_path / "out")
    lines = found["call.wav"]["text"].split("\n")
    print("\n" + found["call.wav"]["text"] + "\n" + found["whispered.wav"]["text"])
    expected = [("[ch0]", SENTENCES[4]), ("[ch1]", SENTENCES[3]), ("[ch0]", SENTENCES[2])]
    assert len(lines) == 3 and summary["transcribed"] == 2
    for line, (label, sentence) in zip(lines, expected, strict=True):
        heard = set(normalize_words(line.removeprefix(label)))
        assert line.startswith(label) and len(heard & set(normalize_words(sentence))) >= 0.6 * len(
            set(normalize_words(sentence))), line  # fmt: skip
    heard = set(normalize_words(found["whispered.wav"]["text"]))
    assert len(heard & set(normalize_words(SENTENCES[2]))) >= 4, found["whispered.wav"]["text"]
