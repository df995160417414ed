"""Fixtures for the server's own tests: real servers on 127.0.0.1, real spoken audio."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from linkai_provider.server.audio_fixtures import synthesize
from linkai_provider.server.testing import LinkAIServerHandle, start_server

Clip = Callable[..., Path]


@pytest.fixture(scope="session")
def fault_server() -> Iterator[LinkAIServerHandle]:
    """A digest server that honours the X-LinkAI-Fault headers; shared, so reset its stats."""
    with start_server(engine="digest", allow_fault_header=True) as server:
        yield server


@pytest.fixture(scope="session")
def whisper_server() -> Iterator[LinkAIServerHandle]:
    """The real recognizer, loaded once per session."""
    with start_server(engine="whisper", allow_fault_header=True) as server:
        yield server


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Clip:
    """``clip(text, fmt, voice="en", name=None)`` -> a spoken file (cached across runs)."""
    folder = tmp_path_factory.mktemp("clips")

    def make(text: str, fmt: str, voice: str = "en", name: str | None = None) -> Path:
        dest = folder / (name or f"{voice}-{abs(hash(text)) % 10**8}.{fmt}")
        if not dest.exists():
            synthesize(text, dest, fmt, voice=voice)
        return dest

    return make


@pytest.fixture
def auth(fault_server: LinkAIServerHandle) -> dict[str, str]:
    return {"Authorization": f"Bearer {fault_server.api_key}"}
