"""Start ``linkai-server`` from tests, demos and benchmarks.

Two ways, one handle API (:class:`LinkAIServerHandle`):

- :func:`start_server` runs the server in a background thread of this process: starts in
  milliseconds with the digest engine, and its stats are cheap to read.
- :func:`start_server_process` runs ``python -m linkai_provider.server`` as a child process:
  for tests that kill processes (the client's or the server's) and for demos.

::

    from linkai_provider.server.testing import start_server

    with start_server(engine="digest", fail_503_rate=0.2, seed=7) as server:
        os.environ["AIRFLOW_CONN_LINKAI_DEFAULT"] = server.airflow_conn_json
        ...
        assert server.stats()["by_status"]["503"] > 0

Keyword options are the server's flags with underscores (``latency_ms``, ``drop_rate``,
``allow_fault_header``, ``max_upload_bytes``, ``max_in_flight``, ``latency_ms_per_audio_second``,
``max_audio_seconds``, ``too_large_style``, ``error_style``, ``models``, ...);
``handle.configure(max_in_flight=2)`` changes
the in-flight limit of a running server. This module imports only the standard
library; the server itself is imported when one is started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["LinkAIServerHandle", "ProcessServerHandle", "ThreadServerHandle", "start_server", "start_server_process"]

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"


def _new_key() -> str:
    return f"sk-test-{secrets.token_hex(8)}"


class LinkAIServerHandle:
    """A running server: where it is, how to call it, its counters, and how to stop it.

    :ivar url: base URL, e.g. ``http://127.0.0.1:40123`` (the connection's ``host``).
    :ivar api_key: a key the server accepts (``None`` with ``no_auth``).
    :ivar engine: ``digest`` or ``whisper``.
    """

    def __init__(self, url: str, api_key: str | None, engine: str):
        self.url = url
        self.api_key = api_key
        self.engine = engine

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def transcriptions_url(self) -> str:
        return self.url + TRANSCRIPTIONS_PATH

    @property
    def airflow_conn_json(self) -> str:
        """The connection as Airflow's JSON form: ``{"conn_type": "linkai", "host": url, "password": key}``."""
        conn: dict[str, Any] = {"conn_type": "linkai", "host": self.url}
        if self.api_key is not None:
            conn["password"] = self.api_key
        return json.dumps(conn)

    @property
    def airflow_conn_uri(self) -> str:
        """The connection as an Airflow URI; the host is the percent-encoded base URL.

        Airflow unquotes the host, so ``Connection(uri=...).host`` is :attr:`url` exactly.
        """
        key = quote(self.api_key, safe="") if self.api_key is not None else ""
        return f"linkai://:{key}@{quote(self.url, safe='')}"

    def airflow_conn_env(self, conn_id: str = "linkai_default") -> dict[str, str]:
        """``{"AIRFLOW_CONN_<ID>": airflow_conn_json}``, ready for ``monkeypatch.setenv``/``os.environ``."""
        return {f"AIRFLOW_CONN_{conn_id.upper()}": self.airflow_conn_json}

    def stats(self) -> dict[str, Any]:
        """``GET /_linkai/stats`` (see :mod:`linkai_provider.server.stats` for the fields)."""
        return self._call("GET", "/_linkai/stats")

    def reset_stats(self) -> dict[str, Any]:
        """Zero the counters and rewind the seeded fault sequence."""
        return self._call("POST", "/_linkai/stats/reset")

    def healthz(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def config(self) -> dict[str, Any]:
        """``GET /_linkai/config``: the settings that can change while running, e.g. ``max_in_flight``."""
        return self._call("GET", "/_linkai/config")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """``POST /_linkai/config``: change settings while the server runs; returns them as now in effect.

        ``configure(max_in_flight=2)`` tightens the in-flight limit, ``configure(max_in_flight=None)``
        lifts it. Requests already admitted finish; the new limit applies to requests arriving next.

        :raises ValueError: the server refused the settings (its message says why).
        """
        try:
            return self._call("POST", "/_linkai/config", payload=settings)
        except urllib.error.HTTPError as exc:
            message = exc.read().decode("utf-8", "replace")
            try:
                message = json.loads(message)["message"]
            except (ValueError, KeyError, TypeError):
                pass
            raise ValueError(f"linkai-server refused {settings!r}: {message}") from None

    def stop(self) -> None:
        raise NotImplementedError

    def _call(self, method: str, path: str, timeout: float = 10.0, payload: Any = None) -> dict[str, Any]:
        data = None
        if method == "POST":
            data = json.dumps(payload).encode() if payload is not None else b""
        request = urllib.request.Request(self.url + path, method=method, data=data)
        if payload is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def __enter__(self) -> LinkAIServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} engine={self.engine}>"


class ThreadServerHandle(LinkAIServerHandle):
    """A server in a background thread of this process (see :func:`start_server`)."""

    def __init__(self, thread: Any, url: str, api_key: str | None, engine: str):
        super().__init__(url, api_key, engine)
        self._thread = thread

    @property
    def state(self) -> Any:
        """The app's live state (config, stats, engine), for white-box assertions."""
        return self._thread.app_state

    def stop(self) -> None:
        self._thread.stop()


class ProcessServerHandle(LinkAIServerHandle):
    """A server in a child process (see :func:`start_server_process`).

    :ivar process: the :class:`subprocess.Popen`; ``pid`` is its id.
    :ivar log_path: the server's stdout and stderr.
    """

    def __init__(self, process: subprocess.Popen[bytes], url: str, api_key: str | None, engine: str, workdir: Path):
        super().__init__(url, api_key, engine)
        self.process = process
        self.pid = process.pid
        self._workdir = workdir
        self.log_path = workdir / "server.log"
        self._final_log: str | None = None

    def log(self) -> str:
        """The server's output so far (still available after :meth:`stop`)."""
        if self._final_log is not None:
            return self._final_log
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL) to the server process."""
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._final_log is None:
            self._final_log = self.log()
        shutil.rmtree(self._workdir, ignore_errors=True)


def start_server(
    *,
    engine: str = "digest",
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 120.0,
    **options: Any,
) -> ThreadServerHandle:
    """Start a server in a background thread; return once it accepts requests.

    :param engine: ``digest`` (default, instant) or ``whisper`` (loads the model first).
    :param api_key: the accepted key; a random ``sk-test-...`` when omitted (unless
        ``no_auth=True``).
    :param port: 0 picks a free port.
    :param options: further server options: ``latency_ms``, ``latency_jitter_ms``,
        ``fail_503_rate``, ``rate_limit_rate``, ``retry_after``, ``drop_rate``,
        ``envelope_200_rate``, ``seed``, ``allow_fault_header``, ``credits``, ``max_upload_bytes``, ``workers``,
        ``cpu_threads``, ``beam_size``, ``model_dir``, ``spool_dir``, ``api_keys``, ``no_auth``,
        ``max_in_flight``, ``latency_ms_per_audio_second``, ``max_audio_seconds``, ``too_large_style``.
    """
    from linkai_provider.server.config import ServerConfig
    from linkai_provider.server.runner import ServerThread

    if api_key is None and not options.get("no_auth"):
        api_key = _new_key()
    config = ServerConfig.from_options(engine=engine, api_key=api_key, host=host, port=port, **options)
    thread = ServerThread(config).start(timeout=timeout)
    return ThreadServerHandle(thread, f"http://{host}:{thread.port}", api_key, engine)


def start_server_process(
    *,
    engine: str = "digest",
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    **flags: Any,
) -> ProcessServerHandle:
    """Start ``linkai-server`` as a child process; return once ``/healthz`` answers.

    The key is passed in ``$LINKAI_SERVER_API_KEYS`` (with any keys ``env`` sets there), not on
    the command line, so it does not show in ``ps``. ``flags`` are the CLI flags with
    underscores: ``True`` adds a bare flag, ``None``/``False`` leaves it out, anything else
    becomes its value. The bound port (useful with ``port=0``) is :attr:`ProcessServerHandle.port`;
    the server's output is :meth:`ProcessServerHandle.log`.

    :raises RuntimeError: the server exited or did not become ready within ``timeout``.
    """
    if api_key is None and not flags.get("no_auth"):
        api_key = _new_key()
    workdir = Path(tempfile.mkdtemp(prefix="linkai-server-"))
    ready = workdir / "ready.json"
    cmd = [
        sys.executable,
        "-m",
        "linkai_provider.server",
        "--engine",
        engine,
        "--host",
        host,
        "--port",
        str(port),
        "--ready-file",
        str(ready),
    ]
    for name, value in flags.items():
        if value is None or value is False:
            continue
        cmd.append("--" + name.replace("_", "-"))
        if isinstance(value, (list, tuple)):  # e.g. models=("whisper-1", "tiny") -> --models whisper-1,tiny
            value = ",".join(map(str, value))
        if value is not True:
            cmd.append(str(value))
    child_env = {**os.environ, **(env or {})}
    # The child must import this very package, installed or not (e.g. a source checkout).
    package_root = str(Path(__file__).resolve().parents[2])
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, child_env.get("PYTHONPATH")]))
    # Keys given in ``env`` are kept next to ``api_key`` (tests of multi-key setups).
    child_env["LINKAI_SERVER_API_KEYS"] = ",".join(filter(None, [api_key, (env or {}).get("LINKAI_SERVER_API_KEYS")]))
    with open(workdir / "server.log", "wb") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            output = (workdir / "server.log").read_text(errors="replace")
            if process.poll() is None:
                process.kill()
                process.wait()
            shutil.rmtree(workdir, ignore_errors=True)
            raise RuntimeError(f"linkai-server did not start (exit {process.returncode}):\n{output[-4000:]}")
        time.sleep(0.02)
    url = json.loads(ready.read_text())["url"]
    handle = ProcessServerHandle(process, url, api_key, engine, workdir)
    _wait_healthy(handle, deadline)
    return handle


def _wait_healthy(handle: ProcessServerHandle, deadline: float) -> None:
    while True:
        try:
            handle.healthz()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline or handle.process.poll() is not None:
                handle.stop()
                raise RuntimeError(f"linkai-server at {handle.url} never answered /healthz") from None
            time.sleep(0.05)
