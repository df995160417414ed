"""Run the app under uvicorn: in the foreground (the CLI) or in a background thread (tests).

The listening socket is bound here, before uvicorn starts, so ``port=0`` yields a known free
port at once and a port already in use fails with a plain ``OSError`` instead of a uvicorn
exit. The engine is loaded before the socket accepts anything: when the server answers
``/healthz`` it can also transcribe.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from linkai_provider.server.app import create_app
from linkai_provider.server.config import ServerConfig
from linkai_provider.server.connections import abortable_protocol_class
from linkai_provider.server.engines import Engine, create_engine

__all__ = ["ServerThread", "bind_socket", "build_server", "load_engine"]

log = logging.getLogger("linkai_provider.server")

# In-flight requests get this long to finish on shutdown; a test's stop() must not hang.
_GRACEFUL_SHUTDOWN_S = 3


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host:port`` (IPv6 when ``host`` contains ':')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def load_engine(config: ServerConfig) -> Engine:
    """Create and load the configured engine (the whisper model loads here, once)."""
    engine = create_engine(
        config.engine,
        model_dir=config.model_dir,
        workers=config.workers,
        cpu_threads=config.cpu_threads,
        beam_size=config.beam_size,
    )
    started = time.perf_counter()
    engine.load()
    log.info("engine %s ready in %.2fs", config.engine, time.perf_counter() - started)
    return engine


class _Server(uvicorn.Server):
    """uvicorn's server with a hook called once it accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None = None):
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and self._on_started is not None:
            self._on_started()


def build_server(
    config: ServerConfig,
    engine: Engine | None = None,
    on_started: Callable[[], None] | None = None,
) -> tuple[uvicorn.Server, socket.socket]:
    """A uvicorn server for ``config`` and its bound socket; the engine is loaded first.

    :param on_started: called (on the server's loop) once connections are accepted.
    """
    engine = engine if engine is not None else load_engine(config)
    sock = bind_socket(config.host, config.port)
    uv_config = uvicorn.Config(
        create_app(config, engine),
        http=abortable_protocol_class(),
        ws="none",
        lifespan="on",
        log_config=None,  # keep the host's logging untouched (tests run in-process)
        access_log=False,  # the app logs its own access line, without client details
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )
    return _Server(uv_config, on_started), sock


class ServerThread:
    """A server running in a daemon thread of this process; see :meth:`start` / :meth:`stop`."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None):
        self.config = config
        self._engine = engine
        self._server: uvicorn.Server | None = None
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.port: int = 0

    @property
    def app_state(self) -> Any:
        """The app's :class:`~linkai_provider.server.app.ServerState` (stats, config)."""
        assert self._server is not None
        app: Any = self._server.config.app  # our Starlette app (uvicorn types it loosely)
        return app.state.linkai

    def start(self, timeout: float = 120.0) -> ServerThread:
        """Load the engine, bind, serve in a thread; return once requests are accepted."""
        self._server, self._sock = build_server(self.config, self._engine)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"linkai-server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"linkai-server failed to start: {self._error!r}") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"linkai-server did not start within {timeout}s")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit from uvicorn on startup failure, too
            self._error = exc

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and wait for its thread; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
