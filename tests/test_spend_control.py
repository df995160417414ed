"""Spend control against linkai-server over real HTTP: adaptive concurrency under a plan's unknown
in-flight limit, dry runs, per-run budgets, and cost figures that match the server's own counters."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import wave
from pathlib import Path

import pytest

from linkai_provider import cli
from linkai_provider.dataset import read_rows


def make_wavs(folder: Path, count: int, seconds: float = 0.1, start: int = 0) -> list[Path]:
    """``count`` distinct small WAVs of ``seconds`` each (8 kHz mono), names in listing order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"call-{i:05d}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            frames = int(8000 * seconds)
            out.writeframes(random.Random(i).randbytes(frames * 2))  # loud noise: never taken for silence
        paths.append(path)
    return paths


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def transcribe(capsys, server, source, dest, *flags: str) -> dict:
    """Run ``linkai-transcribe`` in-process; the summary it prints, its exit code and its log lines."""
    os.environ["LINKAI_API_KEY"] = server.api_key
    records, provider = _Records(), logging.getLogger("linkai_provider")
    provider.addHandler(records)
    try:
        code = cli.main([str(source), str(dest), "--base-url", server.url, "--no-progress", *flags])
    finally:
        provider.removeHandler(records)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()  # task-SDK loggers may print to stdout too: the summary is last
    summary = json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line.startswith("{")) :]))
    summary["exit_code"], summary["log"] = code, "\n".join(records.lines) + captured.err
    summary["records"] = records.lines  # the provider's log records, each once
    return summary


def rows(dest: Path) -> list[dict]:
    import fsspec

    return read_rows(fsspec.filesystem("file"), str(dest)).to_pylist()


# -- adaptive concurrency ----------------------------------------------------------------------------


@pytest.mark.serial  # measures timing-bound figures: run alone, after the parallel part
def test_unknown_in_flight_limit_gives_a_clean_batch(tmp_path, capsys, linkai_server_factory):
    """The issue's scenario, shortened in time: 240 files, ceiling 32, a plan that admits 6 at once."""
    server = linkai_server_factory(max_in_flight=6, latency_ms=150, retry_after=1)
    make_wavs(tmp_path / "in", 240)

    summary = transcribe(capsys, server, tmp_path / "in", tmp_path / "out", "--max-concurrency", "32")

    stats = server.stats()
    assert summary["exit_code"] == 0 and summary["transcribed"] == 240 and summary["failed"] == 0
    assert stats["transcriptions_ok"] == 240 and stats["max_admitted"] <= 6
    rejected = stats["rejected_in_flight"]
    assert rejected / stats["requests_total"] <= 0.10, stats  # at most 10 % of requests answered 429
    # the summary's cost figures are the server's
    assert (summary["requests"], summary["rate_limited"]) == (stats["requests_total"], rejected)
    assert 1 <= summary["concurrency_min"] <= 6 <= summary["concurrency"] + 1
    assert "Concurrency:" in summary["log"]  # level changes are logged (at most every few seconds)
    assert len({r["source_uri"] for r in rows(tmp_path / "out")}) == 240


@pytest.mark.serial  # measures timing-bound figures: run alone, after the parallel part
def test_a_limit_that_tightens_then_loosens_is_followed(tmp_path, capsys, linkai_server_factory):
    server = linkai_server_factory(max_in_flight=8, latency_ms=100, retry_after=1)
    make_wavs(tmp_path / "in", 360)
    phases: dict[str, int] = {"tight_max": 0, "loose_max": 0}
    stop = threading.Event()

    def operate_the_plan() -> None:
        """The plan changes under the batch: 8 at once, then 3, then 16; sample what is admitted."""
        phase = "start"
        while not stop.is_set():
            stats = server.stats()
            ok = stats["transcriptions_ok"]
            if phase == "start" and ok >= 100:
                server.configure(max_in_flight=3)
                phase, mark = "tight", stats["rejected_in_flight"]
            elif phase == "tight" and ok >= 200:
                phases["tight_rejected"] = stats["rejected_in_flight"] - mark
                server.configure(max_in_flight=16)
                phase = "loose"
            if phase in ("tight", "loose"):
                key = f"{phase}_max"
                phases[key] = max(phases[key], stats["in_flight"])
            time.sleep(0.02)

    watcher = threading.Thread(target=operate_the_plan, daemon=True)
    watcher.start()
    summary = transcribe(capsys, server, tmp_path / "in", tmp_path / "out", "--max-concurrency", "32")
    stop.set()
    watcher.join()

    stats = server.stats()
    assert summary["transcribed"] == 360 and stats["transcriptions_ok"] == 360
    # tighter: the level came down (few 429s while at 3); looser: it climbed well past the old 8
    assert phases["tight_rejected"] <= 20, phases
    assert phases["loose_max"] > 8, phases
    assert stats["rejected_in_flight"] / stats["requests_total"] <= 0.15, stats


@pytest.mark.serial  # measures timing-bound figures: run alone, after the parallel part
def test_without_a_limit_the_ceiling_is_reached_and_nothing_is_rate_limited(tmp_path, capsys, linkai_server_factory):
    server = linkai_server_factory(latency_ms=100)
    make_wavs(tmp_path / "in", 200)
    summary = transcribe(capsys, server, tmp_path / "in", tmp_path / "out", "--max-concurrency", "24")
    stats = server.stats()
    assert (summary["rate_limited"], summary["concurrency"], stats["max_in_flight"]) == (0, 24, 24)


# -- dry runs --------------------------------------------------------------------------------------------


def dry_run_inputs(folder: Path, speech) -> dict[str, float]:
    """Six short calls, a long one (over the byte budget given below), an MPEG program stream."""
    import shutil

    make_wavs(folder, 6, seconds=1.0)
    shutil.copy(speech.dir / "clip_02.mpeg", folder / "voicemail.mpeg")
    make_wavs(folder / "long", 1, seconds=40.0)
    return {"long": 40.0}


def test_dry_run_sends_and_writes_nothing_local(tmp_path, capsys, linkai_server, speech):
    dry_run_inputs(tmp_path / "in", speech)
    linkai_server.reset_stats()
    dest = tmp_path / "out" / "dt=2026-11-24"

    summary = transcribe(capsys, linkai_server, tmp_path / "in", dest, "--dry-run", "--max-upload-bytes", "200000")

    assert linkai_server.stats()["requests_total"] == 0
    assert not (tmp_path / "out").exists()  # not even the folder: nothing written
    assert summary["dry_run"] is True and summary["exit_code"] == 0
    assert (summary["would_send"], summary["would_split"], summary["unknown_duration"]) == (8, 1, 0)
    assert summary["would_split_files"] == [f"file://{tmp_path}/in/long/call-00000.wav"]
    assert summary["would_send_bytes"] == sum(p.stat().st_size for p in (tmp_path / "in").rglob("*.*"))
    # 6 × 1 s + 40 s + the MPEG's demuxed length (its header has none)
    assert 46.0 + 1.0 < summary["would_send_audio_seconds"] < 46.0 + 10.0
    assert "Dry run: would send 8 file(s)" in summary["log"]


def test_dry_run_on_s3_sends_and_writes_nothing(tmp_path, capsys, linkai_server, s3fs_factory, moto_endpoint, speech):
    fs = s3fs_factory()
    fs.mkdir("dry-in")
    fs.mkdir("dry-out")
    for path in make_wavs(tmp_path / "in", 5, seconds=0.5):
        fs.put_file(str(path), f"dry-in/calls/{path.name}")
    os.environ["AIRFLOW_CONN_DRY_S3"] = json.dumps(
        {
            "conn_type": "generic",
            "extra": {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_endpoint}},
        }  # fmt: skip
    )
    linkai_server.reset_stats()

    summary = transcribe(capsys, linkai_server, "s3://dry-in/calls/", "s3://dry-out/transcripts/dt=2026-11-24",
                         "--source-conn-id", "dry_s3", "--destination-conn-id", "dry_s3", "--dry-run")  # fmt: skip

    assert linkai_server.stats()["requests_total"] == 0
    assert fs.find("dry-out") == []
    assert (summary["would_send"], summary["would_send_audio_seconds"]) == (5, 2.5)


# -- budgets ----------------------------------------------------------------------------------------------


def test_max_files_sends_exactly_n_then_the_next_run_the_rest(tmp_path, capsys, linkai_server):
    make_wavs(tmp_path / "in", 25)
    linkai_server.reset_stats()

    first = transcribe(capsys, linkai_server, tmp_path / "in", tmp_path / "out", "--max-files", "10")
    assert linkai_server.stats()["requests_total"] == 10
    assert (first["transcribed"], first["held_back"], first["exit_code"]) == (10, 15, 0)
    assert "Held back 15 file(s) for the next run" in first["log"]
    sent = sorted(r["source_uri"] for r in rows(tmp_path / "out"))
    assert sent == [f"file://{tmp_path}/in/call-{i:05d}.wav" for i in range(10)]  # listing order

    linkai_server.reset_stats()
    second = transcribe(capsys, linkai_server, tmp_path / "in", tmp_path / "out", "--max-files", "100")
    assert linkai_server.stats()["requests_total"] == 15
    assert (second["transcribed"], second["skipped_existing"], second["held_back"]) == (15, 10, 0)


def test_max_audio_seconds_stops_before_the_file_that_would_pass_it(tmp_path, capsys, linkai_server, speech):
    """Files of 2 s each, in listing order; a budget of 7 s sends three (6 s): the fourth would pass it.
    An MPEG program stream (no duration in its header) is priced by demuxing; an undecodable one cannot be
    priced, but it holds nothing to pay for: it goes on to a failed row without any request, named in the
    log (never held back forever)."""
    import shutil

    make_wavs(tmp_path / "in", 5, seconds=2.0)
    shutil.copy(speech.dir / "clip_02.mpeg", tmp_path / "in" / "a-voicemail.mpeg")  # listed first
    (tmp_path / "in" / "b-broken.mpeg").write_bytes(os.urandom(3000))
    linkai_server.reset_stats()
    mpeg_seconds = None
    with open(tmp_path / "in" / "a-voicemail.mpeg", "rb") as fh:
        from linkai_provider.io.audio import measure_duration

        mpeg_seconds = measure_duration(fh, "mpeg")
    assert mpeg_seconds and 2.0 < mpeg_seconds < 5.0

    budget = mpeg_seconds + 6.5
    summary = transcribe(capsys, linkai_server, tmp_path / "in", tmp_path / "out", "--max-audio-seconds", str(budget))

    by_name = {r["source_uri"].rsplit("/", 1)[1]: r for r in rows(tmp_path / "out")}
    assert sorted(by_name) == ["a-voicemail.mpeg", "b-broken.mpeg", "call-00000.wav", "call-00001.wav",
                               "call-00002.wav"]  # fmt: skip
    assert (by_name["b-broken.mpeg"]["status"], by_name["b-broken.mpeg"]["attempts"]) == ("failed", 0)
    assert summary["held_back"] == 2 and linkai_server.stats()["requests_total"] == 4
    assert "b-broken.mpeg although max_audio_seconds cannot price it" in summary["log"]
    # the audio seconds billed: the summary's figure is the server's
    assert summary["audio_seconds"] == pytest.approx(linkai_server.stats()["audio_seconds_ok"], abs=0.01)
    assert summary["audio_seconds"] == pytest.approx(mpeg_seconds + 6.0, abs=0.01)


def test_budget_and_dry_run_arguments_are_validated(tmp_path, capsys, linkai_server):
    os.environ["LINKAI_API_KEY"] = linkai_server.api_key
    make_wavs(tmp_path / "in", 1)
    code = cli.main([str(tmp_path / "in"), str(tmp_path / "out"), "--base-url", linkai_server.url, "--max-files", "-1"])
    assert code == 2 and "max_files must be >= 0" in capsys.readouterr().err


def test_durations_measured_while_planning_are_not_measured_again(tmp_path, capsys, linkai_server, speech, monkeypatch):
    """A seconds budget measures every duration before sending (an MPEG program stream by reading the
    whole file); the workers reuse those figures instead of reading the files again."""
    import shutil

    from linkai_provider import planning, recording

    make_wavs(tmp_path / "in", 3, seconds=1.0)
    shutil.copy(speech.dir / "clip_02.mpeg", tmp_path / "in" / "voicemail.mpeg")
    calls = {"planning": 0, "workers": 0}

    def counting(where, measure):
        def measure_and_count(fh, fmt):
            calls[where] += 1
            return measure(fh, fmt)

        return measure_and_count

    monkeypatch.setattr(planning, "measure_duration", counting("planning", planning.measure_duration))
    monkeypatch.setattr(recording, "measure_duration", counting("workers", recording.measure_duration))
    linkai_server.reset_stats()

    summary = transcribe(capsys, linkai_server, tmp_path / "in", tmp_path / "out", "--max-audio-seconds", "100")

    assert summary["transcribed"] == 4 and calls == {"planning": 4, "workers": 0}
    by_name = {r["source_uri"].rsplit("/", 1)[1]: r["audio_duration_s"] for r in rows(tmp_path / "out")}
    assert by_name["voicemail.mpeg"] and 2.0 < by_name["voicemail.mpeg"] < 5.0  # still filled in
    assert summary["audio_seconds"] == pytest.approx(linkai_server.stats()["audio_seconds_ok"], abs=0.01)
