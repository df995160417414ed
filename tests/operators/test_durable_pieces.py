"""Answered pieces are handed to the pieces sink the moment they are answered and are never paid
for again: a recording resumes from them, under the same plan only.

Through :class:`~linkai_provider.pipeline.TranscriptionPipeline` against linkai-server (digest
engine) over real HTTP; the server's ``--credits`` makes a later piece fail for sure (402, batch-fatal),
and its counters say what was billed.
"""

from __future__ import annotations

import json
import os

import pytest

from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.io.sources import list_audio
from linkai_provider.pipeline import TranscriptionPipeline
from linkai_provider.uploads import FileSettings
from tests.conftest import SENTENCES
from tests.io import scenes
from tests.io.test_split_audio import join_sentences, write_wav


class Rows:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def append(self, rows: list[dict]) -> None:
        self.rows.extend(rows)


def run(server, folder, *, answered=None, concurrency=1, **settings):
    os.environ["AIRFLOW_CONN_LINKAI_PIECES"] = json.dumps(json.loads(server.airflow_conn_json))
    hook = LinkAIHook("linkai_pieces", max_retries=0)
    sink, records = Rows(), []
    options = {"max_chunk_seconds": 30.0, **settings}
    pipeline = TranscriptionPipeline(
        hook,
        sink,
        FileSettings(**options),
        max_concurrency=concurrency,
        answered=answered,
        pieces_sink=records.extend,
    )
    files = list_audio(str(folder)).files
    try:
        result = pipeline.run(files, total=len(files))
    finally:
        hook.close()
    return result, sink.rows, records


@pytest.fixture(scope="module")
def lecture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lecture")
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], folder, seed=3)  # ~169 s
    (folder / "in").mkdir()
    return rec, write_wav(folder / "in" / "lecture.wav", rec.samples)


def test_a_later_failing_piece_never_makes_answered_ones_paid_again(lecture, linkai_server_factory):
    rec, wav = lecture
    broke = linkai_server_factory(credits=2)  # the third recognition is refused: 406 (no credit), batch-fatal
    result, [row], records = run(broke, wav.parent)

    assert row["status"] == "failed" and row["error_code"] == 406 and result.fatal is not None
    assert row["error_message"].startswith("piece 3 (")
    assert (row["attempts"], row["chunks"]) == (3, 2)  # two answered, one refused: all true
    assert [r.plan for r in records] == ["v1;mix;f=" + records[0].plan.rsplit("=", 1)[1]] * 2
    assert records[0].start_s == 0.0 and records[0].end_s == records[1].start_s
    assert broke.stats()["transcriptions_ok"] == 2
    first_bill = broke.stats()["audio_seconds_ok"]
    assert sum(r.audio_seconds for r in records) == pytest.approx(first_bill, abs=0.01)

    # The next run resumes: only the pieces not answered are sent; the row joins all of them.
    server = linkai_server_factory()
    key = (row["source_uri"], row["source_fingerprint"])
    result, [row], more = run(server, wav.parent, answered={key: records})
    assert row["status"] == "ok" and result.pieces_reused == 2
    segments = row["segments"]
    assert row["chunks"] == len(segments) == 2 + server.stats()["requests_total"]
    assert [s["text"] for s in segments[:2]] == [r.text for r in records]
    assert segments[0]["start_s"] == 0.0 and segments[-1]["end_s"] == pytest.approx(rec.duration_s, abs=0.01)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(segments, segments[1:], strict=False))
    # billed once, in total: the first server's two pieces and the second's rest make the recording
    assert first_bill + server.stats()["audio_seconds_ok"] == pytest.approx(rec.duration_s, abs=0.05)
    assert result.audio_seconds == pytest.approx(server.stats()["audio_seconds_ok"], abs=0.01)
    assert len(more) == server.stats()["requests_total"] and row["attempts"] == len(more)


def test_pieces_of_another_plan_are_never_joined(lecture, linkai_server_factory, tmp_path):
    """Other form fields (a language, a model) or another channel mode: the old pieces are not reused."""
    rec, wav = lecture
    server = linkai_server_factory(credits=2)
    _, [row], records = run(server, wav.parent)
    key = (row["source_uri"], row["source_fingerprint"])

    server = linkai_server_factory()
    result, [row], _ = run(server, wav.parent, answered={key: records}, extra_fields={"language": "de"})
    assert row["status"] == "ok" and result.pieces_reused == 0
    assert server.stats()["audio_seconds_ok"] == pytest.approx(rec.duration_s, abs=0.05)  # all of it again

    # a stereo call answered mixed is not joined with its channels sent on their own
    call = scenes.arrange([(0, 0.5, 0), (0, SENTENCES[0], 0), (1, 0.5, 0), (1, SENTENCES[1], 0), (0, 0.5, 0)],
                          tmp_path, channels=2)  # fmt: skip
    scenes.write_wav(tmp_path / "call" / "call.wav", call.samples, 16000)
    server = linkai_server_factory()
    _, [mixed], mixed_records = run(server, tmp_path / "call", max_chunk_seconds=3.0)
    assert mixed["status"] == "ok" and len(mixed_records) >= 2
    key = (mixed["source_uri"], mixed["source_fingerprint"])
    server = linkai_server_factory()
    result, [separate], _ = run(server, tmp_path / "call", answered={key: mixed_records}, channels="separate")
    assert separate["status"] == "ok" and result.pieces_reused == 0
    assert [s["channel"] for s in separate["segments"]] == [0, 1]


@pytest.mark.serial  # kills 150 ms after an answer: a busy second worker would skew what was in flight
def test_a_kill_mid_recording_wastes_only_the_pieces_in_flight(tmp_path, lecture, linkai_server_factory):
    """``linkai-transcribe`` SIGKILLed after four pieces of a recording were answered; the rerun sends
    only the rest. What the server billed over both runs is the recording once, plus at most the
    pieces that were in flight at the kill."""
    import signal
    import subprocess
    import sys
    import time

    from tests.operators.test_long_recordings import rows

    rec, wav = lecture
    chunk, concurrency = 15.0, 2
    server = linkai_server_factory(latency_ms=300)
    env = {**os.environ, "LINKAI_API_KEY": server.api_key}
    cmd = [sys.executable, "-m", "linkai_provider.cli", str(wav.parent), str(tmp_path / "out"), "--base-url",
           server.url, "-q", "--no-progress", "--max-chunk-seconds", str(chunk), "--max-concurrency",
           str(concurrency)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while server.stats()["transcriptions_ok"] < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    # "Within moments": 150 ms after the server answered the fourth piece (the next ones take 300 ms)
    # its answer has reached the client and is journaled.
    time.sleep(0.15)
    answered_at_kill = server.stats()["transcriptions_ok"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)  # requests in flight at the kill are still answered (and billed) by the server
    first = server.stats()
    assert first["transcriptions_ok"] >= 4 and first["transcriptions_ok"] < 11

    server.reset_stats()
    done = subprocess.run([*cmd[:-4], "--max-concurrency", "4", "-q"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    [row] = rows(tmp_path / "out")
    assert row["status"] == "ok" and summary["pieces_reused"] >= answered_at_kill >= 4
    segments = row["segments"]
    assert segments[0]["start_s"] == 0.0 and segments[-1]["end_s"] == pytest.approx(rec.duration_s, abs=0.01)
    assert all(a["end_s"] == b["start_s"] for a, b in zip(segments, segments[1:], strict=False))
    second = server.stats()
    assert second["requests_total"] == row["chunks"] - summary["pieces_reused"]
    wasted = first["audio_seconds_ok"] + second["audio_seconds_ok"] - rec.duration_s
    print(f"\nbilled {first['audio_seconds_ok']:.1f} s before the kill, {second['audio_seconds_ok']:.1f} s after; "
          f"the recording is {rec.duration_s:.1f} s: {wasted:.1f} s paid twice")  # fmt: skip
    assert -0.05 <= wasted <= concurrency * chunk * 1.15  # at most the pieces in flight
