"""Dropping a connection on purpose, so a client sees a transport error and no HTTP status.

ASGI gives an app no handle on its socket, and the usual trick (raise after
``http.response.start``) still sends a status line first. The server therefore runs uvicorn
with a protocol subclass that registers each connection's transport under
``(server address, client address)`` -- the same pair the ASGI scope carries -- so the app can
call :func:`abort_connection` and have the socket reset before a single response byte is
written. Outside this server (another ASGI host) :func:`abort_connection` returns ``False``
and the app falls back to an incomplete response.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import MutableMapping
from typing import Any

from uvicorn.protocols.utils import get_local_addr, get_remote_addr

__all__ = ["abort_connection", "abortable_protocol_class"]

_Key = tuple[Any, Any]
_transports: MutableMapping[_Key, asyncio.Transport] = {}
_lock = threading.Lock()  # several in-process servers (threads) share the registry


def _key(server: Any, client: Any) -> _Key:
    return (tuple(server) if server else None, tuple(client) if client else None)


def abort_connection(scope: MutableMapping[str, Any]) -> bool:
    """Reset the connection that carried ``scope``; ``False`` if it is not registered."""
    with _lock:
        transport = _transports.get(_key(scope.get("server"), scope.get("client")))
    if transport is None or transport.is_closing():
        return False
    # abort() closes at once and discards buffered output: the peer gets a reset, not a reply.
    transport.abort()
    return True


def abortable_protocol_class() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol (httptools if installed, else h11), made abortable."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # pragma: no cover - httptools is optional in uvicorn
        from uvicorn.protocols.http.h11_impl import H11Protocol as base  # type: ignore[assignment]

    class AbortableProtocol(base):  # type: ignore[valid-type, misc]
        """Registers its transport for :func:`abort_connection` while connected."""

        _linkai_key: _Key | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._linkai_key = _key(get_local_addr(transport), get_remote_addr(transport))
            with _lock:
                _transports[self._linkai_key] = transport

        def connection_lost(self, exc: Exception | None) -> None:
            if self._linkai_key is not None:
                with _lock:
                    if _transports.get(self._linkai_key) is self.transport:
                        del _transports[self._linkai_key]
            super().connection_lost(exc)

    return AbortableProtocol
