"""linkai-transcribe: the operator's pipeline outside Airflow, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import fsspec

from linkai_provider.dataset import read_rows
from tests.helpers import digest_text

CLI = str(Path(sys.executable).with_name("linkai-transcribe"))


def transcribe(*args: str, key: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LINKAI_API_KEY"}
    if key:
        env["LINKAI_API_KEY"] = key
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120, check=False)


def test_transcribes_a_folder_then_skips_it(tmp_path, speech, linkai_server):
    shutil.copytree(speech.dir, tmp_path / "in")
    out = tmp_path / "out"
    linkai_server.reset_stats()

    done = transcribe(str(tmp_path / "in"), str(out), "--base-url", linkai_server.url, key=linkai_server.api_key)

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["transcribed"], summary["failed"]) == (10, 0)
    assert "10/10" in done.stderr  # the progress bar
    rows = read_rows(fsspec.filesystem("file"), str(out)).to_pylist()
    assert {r["text"] for r in rows} == {digest_text(p.read_bytes()) for p in (tmp_path / "in").iterdir()}
    assert all(r["dag_id"] is None and r["endpoint"] == linkai_server.url for r in rows)

    again = transcribe(str(tmp_path / "in"), str(out), "--base-url", linkai_server.url, "-q", key=linkai_server.api_key)
    assert json.loads(again.stdout)["skipped_existing"] == 10
    assert linkai_server.stats()["requests_total"] == 10
    assert linkai_server.api_key not in done.stdout + done.stderr + again.stdout + again.stderr


def test_clear_errors_and_exit_codes(tmp_path, linkai_server):
    no_key = transcribe(str(tmp_path), str(tmp_path / "out"), key=None)
    assert no_key.returncode != 0 and "set $LINKAI_API_KEY" in no_key.stderr

    missing = transcribe(str(tmp_path / "nope"), str(tmp_path / "out"), "--base-url", linkai_server.url, key="k")
    assert missing.returncode == 2 and "does not exist" in missing.stderr

    from tests.test_spend_control import make_wavs

    make_wavs(tmp_path / "wavs", 1)  # real audio: a file with nothing decodable is refused before any request
    (tmp_path / "wavs" / "call-00000.wav").rename(tmp_path / "a.wav")
    wrong = transcribe(str(tmp_path / "a.wav"), str(tmp_path / "out"), "--base-url", linkai_server.url, key="sk-bad")
    assert wrong.returncode == 3 and "Authentication failed" in json.loads(wrong.stdout)["fatal"]


def test_quiet_leaves_only_json_on_stdout_while_retrying(tmp_path, speech, linkai_server_factory):
    """``-q | jq``: the hook's retry warnings (Airflow's structlog logger) go to stderr, not stdout."""
    server = linkai_server_factory(fail_503_rate=0.5, seed=6)  # the 2nd request of the sequence is a 503
    (tmp_path / "in").mkdir()
    for name in ("clip_00.mp3", "clip_01.mp4"):
        shutil.copy(speech.dir / name, tmp_path / "in" / name)

    done = transcribe(str(tmp_path / "in"), str(tmp_path / "out"), "--base-url", server.url, "-q",
                      "--max-concurrency", "1", key=server.api_key)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1
    summary = json.loads(done.stdout)  # what jq reads
    assert (summary["transcribed"], summary["requests"]) == (2, 3)
    assert server.stats()["by_status"] == {"200": 2, "503": 1}
    assert "attempt 1 failed (API call exception" in done.stderr and "retrying in" in done.stderr


def test_model_not_found_stops_the_batch_and_names_the_model(tmp_path, speech, linkai_server_factory):
    server = linkai_server_factory(error_style="openai", models=("whisper-1",))
    shutil.copytree(speech.dir, tmp_path / "in")

    done = transcribe(str(tmp_path / "in"), str(tmp_path / "out"), "--base-url", server.url, "-q",
                      "--max-concurrency", "1", "--field", "model=whisper-9", key=server.api_key)  # fmt: skip

    assert done.returncode == 3, done.stderr
    summary = json.loads(done.stdout)
    assert "The model `whisper-9` does not exist" in summary["fatal"]
    assert server.stats()["requests_total"] == 1  # batch-fatal: nothing more was sent
    [row] = read_rows(fsspec.filesystem("file"), str(tmp_path / "out")).to_pylist()
    assert (row["status"], row["error_type"], row["error_code"]) == ("failed", "ModelNotFoundError", 404)
    assert "whisper-9" in row["error_message"]


def test_symlinks_in_a_source_folder_are_followed(tmp_path, speech, linkai_server):
    """A linked file and a linked folder are transcribed; a loop and a broken link are named and counted."""
    src, outside = tmp_path / "calls", tmp_path / "archive" / "2026"
    (src / "real").mkdir(parents=True)
    outside.mkdir(parents=True)
    shutil.copy(speech.dir / "clip_00.mp3", src / "real" / "a.mp3")
    shutil.copy(speech.dir / "clip_01.mp4", outside / "b.mp4")
    shutil.copy(speech.dir / "clip_02.mpeg", tmp_path / "c.mpeg")
    (src / "linked.mpeg").symlink_to(tmp_path / "c.mpeg")
    (src / "archive").symlink_to(outside, target_is_directory=True)
    (src / "real" / "loop").symlink_to("..", target_is_directory=True)
    (src / "gone.wav").symlink_to(tmp_path / "deleted.wav")
    linkai_server.reset_stats()

    done = transcribe(str(src), str(tmp_path / "out"), "--base-url", linkai_server.url, "-q", key=linkai_server.api_key)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["transcribed"] == 3 and linkai_server.stats()["requests_total"] == 3
    rows = read_rows(fsspec.filesystem("file"), str(tmp_path / "out")).to_pylist()
    assert sorted(r["source_uri"].removeprefix(f"file://{src}/") for r in rows) == [
        "archive/b.mp4", "linked.mpeg", "real/a.mp3"
    ]  # fmt: skip
    assert f"Not following {src}/real/loop -> ..: a loop back to {src}" in done.stderr
    assert f"Skipping {src}/gone.wav: a broken symbolic link" in done.stderr
