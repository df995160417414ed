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
