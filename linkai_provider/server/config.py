"""The server's configuration: one explicit object shared by the CLI and the test helpers."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from linkai_provider.server.faults import FaultConfig

__all__ = [
    "API_KEYS_ENV",
    "DEFAULT_HOST",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PORT",
    "ServerConfig",
    "is_loopback",
    "keys_from_env",
]

API_KEYS_ENV = "LINKAI_SERVER_API_KEYS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024


def keys_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The comma-separated keys of ``$LINKAI_SERVER_API_KEYS`` (blanks dropped)."""
    raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``linkai-server`` can be told; field names match the CLI flags.

    :param api_keys: accepted Bearer keys; empty requires ``no_auth``.
    :param no_auth: accept requests without a key (must be asked for explicitly).
    :param engine: ``whisper`` or ``digest``.
    :param max_upload_bytes: largest accepted ``file``; larger is a 413.
    :param workers: recognitions run at the same time; more requests wait their turn.
    :param spool_dir: where uploads are spooled (default: the system temp folder).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    engine: str = "digest"
    api_keys: tuple[str, ...] = ()
    no_auth: bool = False
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    workers: int = 1
    cpu_threads: int | None = None
    beam_size: int = 5
    model_dir: Path | None = None
    spool_dir: Path | None = None
    faults: FaultConfig = field(default_factory=FaultConfig)

    def __post_init__(self) -> None:
        if not self.api_keys and not self.no_auth:
            raise ValueError(
                f"no API key configured: pass --api-key KEY, set {API_KEYS_ENV}=key1,key2, "
                "or run without authentication with --no-auth"
            )
        if self.max_upload_bytes < 1:
            raise ValueError("max_upload_bytes must be positive")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.engine not in ("whisper", "digest"):
            raise ValueError(f"unknown engine {self.engine!r}; choose 'whisper' or 'digest'")

    @classmethod
    def from_options(cls, **options: Any) -> ServerConfig:
        """Build from flat keyword options (``latency_ms=...`` next to ``port=...``).

        Fault options (the fields of :class:`FaultConfig`) are gathered into ``faults``; a
        single ``api_key`` is accepted as a shorthand for ``api_keys``.
        """
        fault_names = {f.name for f in fields(FaultConfig)}
        fault_opts = {k: options.pop(k) for k in list(options) if k in fault_names}
        if "api_key" in options:
            key = options.pop("api_key")
            options["api_keys"] = tuple(options.get("api_keys", ())) + ((key,) if key else ())
        if "api_keys" in options:
            options["api_keys"] = tuple(options["api_keys"])
        for name in ("model_dir", "spool_dir"):
            if options.get(name) is not None:
                options[name] = Path(options[name])
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        return cls(faults=FaultConfig(**fault_opts), **options)
