"""The pytest fixtures and the handles other test suites use."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import httpx
import pytest

from linkai_provider.server.testing import ProcessServerHandle, ThreadServerHandle


def test_linkai_server_fixture(linkai_server) -> None:
    assert isinstance(linkai_server, ThreadServerHandle)
    assert linkai_server.url.startswith("http://127.0.0.1:") and linkai_server.port > 0
    assert linkai_server.engine == "digest" and linkai_server.api_key.startswith("sk-test-")
    assert json.loads(linkai_server.airflow_conn_json) == {
        "conn_type": "linkai", "host": linkai_server.url, "password": linkai_server.api_key}
    assert linkai_server.airflow_conn_env() == {"AIRFLOW_CONN_LINKAI_DEFAULT": linkai_server.airflow_conn_json}
    assert linkai_server.stats()["requests_total"] >= 0


def test_airflow_reads_both_connection_forms(linkai_server_factory) -> None:
    from airflow.models.connection import Connection

    server = linkai_server_factory(api_key="sk-with/odd+chars@=")
    for conn in (Connection(conn_id="linkai_default", uri=server.airflow_conn_uri),
                 Connection.from_json(server.airflow_conn_json, conn_id="linkai_default")):
        assert (conn.conn_type, conn.host, conn.password) == ("linkai", server.url, "sk-with/odd+chars@=")


def test_factory_servers_are_independent_and_stopped(linkai_server_factory, linkai_server) -> None:
    a = linkai_server_factory(fail_503_rate=1.0)
    b = linkai_server_factory(no_auth=True)
    assert len({a.url, b.url, linkai_server.url}) == 3
    assert httpx.post(a.transcriptions_url, headers={"Authorization": f"Bearer {a.api_key}"},
                      files={"file": ("a.mp3", b"x")}).status_code == 503
    assert b.api_key is None and "password" not in json.loads(b.airflow_conn_json)
    assert httpx.post(b.transcriptions_url, files={"file": ("a.mp3", b"")}).status_code == 400  # no 401
    a.stop()
    a.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(a.url + "/healthz")


def test_factory_takes_the_limit_options(linkai_server_factory) -> None:
    server = linkai_server_factory(max_in_flight=3, latency_ms_per_audio_second=100, max_audio_seconds=30,
                                   too_large_style="nginx")
    health = server.healthz()
    assert (health["max_in_flight"], health["latency_ms_per_audio_second"]) == (3, 100)
    assert (health["max_audio_seconds"], health["too_large_style"]) == (30, "nginx")
    with pytest.raises(ValueError, match="too_large_style"):
        linkai_server_factory(too_large_style="apache")
    with pytest.raises(ValueError, match="max_in_flight must be an integer >= 1"):
        linkai_server_factory(max_in_flight=0)
    with pytest.raises(ValueError, match="latency_ms_per_audio_second must be a number >= 0, got -1"):
        linkai_server_factory(latency_ms_per_audio_second=-1)
    with pytest.raises(ValueError, match="max_audio_seconds must be a positive number of seconds or None, got '60'"):
        linkai_server_factory(max_audio_seconds="60")


def test_process_server_can_be_killed(linkai_server_factory) -> None:
    server = linkai_server_factory(process=True)
    assert isinstance(server, ProcessServerHandle)
    assert server.healthz()["engine"] == "digest"
    server.kill(signal.SIGKILL)
    assert server.process.wait(10) == -signal.SIGKILL
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/healthz")
    server.stop()  # after a kill: still fine


def test_plugin_imports_nothing_heavy() -> None:
    code = textwrap.dedent("""
        import sys
        import linkai_provider.server.pytest_plugin, linkai_provider.server.testing
        heavy = {"starlette", "uvicorn", "faster_whisper", "av", "ctranslate2", "airflow", "httpx"}
        print(sorted(heavy & set(sys.modules)))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_fixtures_skip_instead_of_breaking_without_starlette(tmp_path) -> None:
    """With starlette unimportable, pytest still runs; a test using the fixture is skipped."""
    (tmp_path / "test_uses_fixture.py").write_text("def test_it(linkai_server):\n    assert False\n")
    runner = textwrap.dedent(f"""
        import sys, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "starlette" or name.startswith("starlette."):
                    raise ImportError(f"No module named {{name!r}}", name=name)
        sys.meta_path.insert(0, Block())
        import pytest
        sys.exit(pytest.main(["-q", "-rs", "-p", "no:cacheprovider", {str(tmp_path)!r}]))
    """)
    result = subprocess.run([sys.executable, "-c", runner], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout and "server-light" in result.stdout
