"""The ``linkai-server`` command: help, auth refusal, loopback default, startup, logging."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from linkai_provider.server.cli import build_parser, config_from_args, parse_size
from linkai_provider.server.testing import start_server_process

CONSOLE_SCRIPT = Path(sys.executable).with_name("linkai-server")
FLAGS = ("--host", "--port", "--api-key", "--no-auth", "--max-upload-bytes", "--spool-dir", "--ready-file",
         "--engine", "--model-dir", "--workers", "--cpu-threads", "--beam-size", "--seed", "--latency-ms",
         "--latency-jitter-ms", "--fail-503-rate", "--rate-limit-rate", "--retry-after", "--drop-rate",
         "--envelope-200-rate", "--allow-fault-header", "--log-level", "--version", "--max-in-flight",
         "--latency-ms-per-audio-second", "--max-audio-seconds", "--too-large-style")


def _env_without_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "LINKAI_SERVER_API_KEYS"}


def server_cmd() -> list[str]:
    return [str(CONSOLE_SCRIPT)] if CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "linkai_provider.server"]


def test_help_documents_every_flag() -> None:
    result = subprocess.run([*server_cmd(), "--help"], capture_output=True, text=True, check=True, timeout=60)
    for flag in FLAGS:
        assert flag in result.stdout, flag
    assert "LINKAI_SERVER_API_KEYS" in result.stdout and "/_linkai/stats" in result.stdout
    assert "/_linkai/config" in result.stdout and "{envelope,nginx}" in result.stdout


def test_console_script_is_installed() -> None:
    assert CONSOLE_SCRIPT.exists(), "install the package (pip install -e .[dev]): no linkai-server script"
    result = subprocess.run([str(CONSOLE_SCRIPT), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("linkai-server ")


def test_refuses_to_start_without_keys() -> None:
    result = subprocess.run([*server_cmd(), "--engine", "digest", "--port", "0"], capture_output=True, text=True,
                            env=_env_without_keys(), timeout=60)
    assert result.returncode == 2
    assert "no API key configured" in result.stderr and "--no-auth" in result.stderr


def test_no_auth_must_be_explicit_and_then_works() -> None:
    server = start_server_process(no_auth=True)
    try:
        response = httpx.post(server.transcriptions_url, files={"file": ("a.mp3", b"")})
        assert response.status_code == 400  # reached validation: no 401
        assert server.healthz()["auth"] is False
    finally:
        server.stop()


def test_binds_loopback_by_default(tmp_path) -> None:
    assert build_parser().parse_args([]).host == "127.0.0.1"
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([*server_cmd(), "--engine", "digest", "--port", "0", "--ready-file", str(ready)],
                            env={**os.environ, "LINKAI_SERVER_API_KEYS": "sk-x"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert info["url"] == f"http://127.0.0.1:{info['port']}" and info["pid"] == proc.pid
        listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN]
        assert listening == [("127.0.0.1", info["port"])]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it captured.
    assert proc.returncode in (0, -15) and "Finished server process" in out, out
    assert f"listening on http://127.0.0.1:{info['port']} (engine digest)" in out


def test_keys_from_flags_and_env(monkeypatch) -> None:
    monkeypatch.setenv("LINKAI_SERVER_API_KEYS", " sk-env1, sk-env2 ,,")
    config = config_from_args(build_parser().parse_args(["--api-key", "sk-a", "--api-key", "sk-b", "--engine",
                                                         "digest"]))
    assert config.api_keys == ("sk-a", "sk-b", "sk-env1", "sk-env2")


def test_every_env_key_works_over_http() -> None:
    server = start_server_process(api_key="sk-main", env={"LINKAI_SERVER_API_KEYS": "sk-two,sk-three"})
    try:
        for key, status in (("sk-main", 400), ("sk-two", 400), ("sk-three", 400), ("sk-four", 401)):
            response = httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {key}"},
                                  files={"file": ("a.mp3", b"")})
            assert response.status_code == status, key
    finally:
        server.stop()


def test_flag_values_are_checked() -> None:
    for bad in (["--drop-rate", "1.5"], ["--max-upload-bytes", "lots"],
                ["--fail-503-rate", "0.7", "--rate-limit-rate", "0.7"]):
        result = subprocess.run([*server_cmd(), "--engine", "digest", "--api-key", "k", *bad], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2, bad
    assert parse_size("10MB") == 10_000_000 and parse_size("10MiB") == 10 * 1024 * 1024
    assert parse_size("104857600") == 104857600


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (["--max-in-flight", "0"], "--max-in-flight: must be at least 1, got 0"),
        (["--max-in-flight", "two"], "--max-in-flight: not a whole number: 'two'"),
        (["--max-audio-seconds", "0"], "--max-audio-seconds: must be more than 0 seconds, got 0"),
        (["--max-audio-seconds", "long"], "--max-audio-seconds: not a number of seconds: 'long'"),
        (["--latency-ms-per-audio-second", "-5"], "--latency-ms-per-audio-second: must not be negative, got -5"),
        (["--too-large-style", "apache"], "--too-large-style: invalid choice: 'apache'"),
        (["--error-style", "azure"], "--error-style: invalid choice: 'azure'"),
    ],
)
def test_limit_flags_are_checked(bad, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--api-key", "k", *bad])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_limit_flags_reach_the_running_server() -> None:
    server = start_server_process(max_in_flight=2, latency_ms_per_audio_second=12.5, max_audio_seconds=600,
                                  too_large_style="nginx", retry_after=3, latency_ms=40, latency_jitter_ms=5,
                                  fail_503_rate=0.1, rate_limit_rate=0.2, drop_rate=0.05, envelope_200_rate=0.01,
                                  seed=7, credits=9, allow_fault_header=True, error_style="openai",
                                  models=("whisper-1", "tiny"))  # fmt: skip
    try:
        health = server.healthz()
        assert health["max_in_flight"] == 2 and health["retry_after"] == 3
        assert health["latency_ms_per_audio_second"] == 12.5 and health["max_audio_seconds"] == 600
        assert health["too_large_style"] == "nginx"
        # every setting that shapes answers (issue 19: --latency-ms was missing), and never a key
        assert (health["latency_ms"], health["latency_jitter_ms"], health["seed"]) == (40, 5, 7)
        assert (health["fail_503_rate"], health["rate_limit_rate"], health["drop_rate"]) == (0.1, 0.2, 0.05)
        assert health["envelope_200_rate"] == 0.01 and health["allow_fault_header"] is True
        assert (health["credits"], health["credits_left"]) == (9, 9)
        assert (health["error_style"], health["models"]) == ("openai", ["whisper-1", "tiny"])
        assert health["response_formats"] == ["json", "text", "srt", "verbose_json", "vtt"]
        assert server.api_key not in json.dumps(health)
        assert server.configure(max_in_flight=5) == {"max_in_flight": 5} == server.config()
    finally:
        server.stop()
    defaults = config_from_args(build_parser().parse_args(["--api-key", "k", "--engine", "digest"]))
    assert defaults.max_in_flight is None and defaults.max_audio_seconds is None
    assert defaults.latency_ms_per_audio_second == 0 and defaults.too_large_style == "envelope"


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([*server_cmd(), "--engine", "digest", "--api-key", "k", "--port", str(port)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_access_log_lines_never_show_the_key() -> None:
    server = start_server_process()
    try:
        httpx.post(server.transcriptions_url, headers={"Authorization": f"Bearer {server.api_key}"},
                   files={"file": ("a.mp3", b"")})
        httpx.post(server.transcriptions_url, headers={"Authorization": "Bearer sk-wrong-value-456"},
                   files={"file": ("a.mp3", b"")})
    finally:
        server.stop()
    log = server.log()  # kept after stop()
    assert "POST /v1/audio/transcriptions 400 in=" in log and "POST /v1/audio/transcriptions 401 in=0B" in log
    assert server.api_key not in log and "sk-wrong" not in log and "Bearer" not in log
    assert "authorization" not in log.lower()


def test_startup_time_digest() -> None:
    started = time.perf_counter()
    server = start_server_process()
    elapsed = time.perf_counter() - started
    server.stop()
    print(f"\ndigest server: ready in {elapsed:.2f}s (process start to /healthz)")
    assert elapsed < 15


@pytest.mark.whisper
def test_startup_time_whisper() -> None:
    started = time.perf_counter()
    server = start_server_process(engine="whisper")
    elapsed = time.perf_counter() - started
    try:
        assert server.healthz()["engine"] == "whisper"
    finally:
        server.stop()
    print(f"\nwhisper server: ready in {elapsed:.2f}s (process start to /healthz, model cached)")
    assert elapsed < 60
