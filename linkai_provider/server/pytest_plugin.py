"""pytest fixtures for tests that talk to a real LinkAI-compatible server on loopback.

Registered through the ``pytest11`` entry point, so any project with
``airflow-provider-linkai[server]`` installed gets:

``linkai_server`` (session scope)
    a digest-engine server on a free ``127.0.0.1`` port, in a background thread. It is
    shared by the whole session: call ``linkai_server.reset_stats()`` first when a test
    counts requests.
``linkai_server_factory`` (function scope)
    ``linkai_server_factory(**options)`` starts a server with its own options (fault
    injection, limits such as ``max_in_flight=4``, ``latency_ms_per_audio_second=250``,
    ``max_audio_seconds=600``, ``too_large_style="nginx"``, ``error_style="openai"``,
    ``models=("whisper-1",)``, ``engine="whisper"``;
    ``process=True`` for a child process); every server it started is stopped when the test
    ends.

Both give a :class:`~linkai_provider.server.testing.LinkAIServerHandle`: ``.url``,
``.api_key``, ``.stats()``, ``.reset_stats()``, ``.airflow_conn_uri``,
``.airflow_conn_json``, ``.airflow_conn_env()``, ``.configure(max_in_flight=...)``, ``.stop()``::

    def test_retries_503(linkai_server_factory, monkeypatch):
        server = linkai_server_factory(allow_fault_header=True, fail_503_rate=0.5, seed=1)
        monkeypatch.setenv("AIRFLOW_CONN_LINKAI_DEFAULT", server.airflow_conn_json)
        ...

This module imports only pytest at import time. Without Starlette/uvicorn installed, the
fixtures skip the test instead of breaking collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from linkai_provider.server.testing import LinkAIServerHandle


def _testing_module() -> Any:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"linkai-server needs airflow-provider-linkai[server-light] ({exc.name} is missing)")
    from linkai_provider.server import testing

    return testing


@pytest.fixture(scope="session")
def linkai_server() -> Iterator[LinkAIServerHandle]:
    """A session-wide digest-engine server on 127.0.0.1 (reset its stats before counting)."""
    testing = _testing_module()
    handle = testing.start_server(engine="digest")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def linkai_server_factory() -> Iterator[Callable[..., LinkAIServerHandle]]:
    """Start servers with options; ``process=True`` runs one as a child process."""
    testing = _testing_module()
    started: list[LinkAIServerHandle] = []

    def factory(*, process: bool = False, **options: Any) -> LinkAIServerHandle:
        start = testing.start_server_process if process else testing.start_server
        handle = start(**options)
        started.append(handle)
        return handle

    try:
        yield factory
    finally:
        for handle in reversed(started):
            handle.stop()
