"""The server's configuration: one explicit object shared by the CLI and the test helpers."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from linkai_provider.server.errors import ERROR_STYLES, ApiError
from linkai_provider.server.faults import FaultConfig

__all__ = [
    "API_KEYS_ENV",
    "DEFAULT_HOST",
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_PORT",
    "ERROR_STYLES",
    "TOO_LARGE_STYLES",
    "ServerConfig",
    "check_max_in_flight",
    "is_loopback",
    "keys_from_env",
    "parse_models",
    "parse_settings",
]

API_KEYS_ENV = "LINKAI_SERVER_API_KEYS"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_BYTES = 100 * 1024 * 1024
TOO_LARGE_STYLES: tuple[str, ...] = ("envelope", "nginx")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_max_in_flight(value: object) -> int | None:
    """``value`` if it is a valid ``max_in_flight`` (an integer >= 1, or ``None`` for no limit).

    :raises ValueError: naming the bad value.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_in_flight must be an integer >= 1 or null (no limit), got {value!r}")
    return value


def parse_models(text: str) -> tuple[str, ...]:
    """``"whisper-1, gpt-4o-transcribe"`` -> ``("whisper-1", "gpt-4o-transcribe")`` (blanks dropped)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


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
    :param max_in_flight: transcription requests admitted at once (after authentication, from
        arrival until answered); one more is answered 429 with ``Retry-After`` at once. ``None``:
        no limit. Changeable while running through ``POST /_linkai/config``.
    :param latency_ms_per_audio_second: extra latency per second of uploaded audio, on top of
        ``latency_ms``, before a recognition (like a real API, whose answer takes longer for
        longer audio).
    :param max_audio_seconds: longest accepted audio; longer is a 400 "Audio too long".
    :param too_large_style: how an upload over ``max_upload_bytes`` is answered: ``envelope``
        (413 with the API's JSON error body, in ``error_style``) or ``nginx`` (413 with nginx's
        HTML page, as a front proxy answers).
    :param error_style: the dialect of every error body: ``linkai`` (the envelope) or ``openai``
        (``{"error": {"message", "type", "param", "code"}}``, with OpenAI's statuses and codes).
    :param models: the ``model`` values served; another is answered 404 ``model_not_found``.
        Empty: any ``model`` (or none) is accepted and ignored. A request without ``model`` is
        always accepted (LinkAI's API has no such field).
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
    max_in_flight: int | None = None
    latency_ms_per_audio_second: float = 0.0
    max_audio_seconds: float | None = None
    too_large_style: str = "envelope"
    error_style: str = "linkai"
    models: tuple[str, ...] = ()
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
        check_max_in_flight(self.max_in_flight)
        per_second = self.latency_ms_per_audio_second
        if not _is_number(per_second) or not per_second >= 0:
            raise ValueError(f"latency_ms_per_audio_second must be a number >= 0, got {per_second!r}")
        longest = self.max_audio_seconds
        if longest is not None and (not _is_number(longest) or not longest > 0):
            raise ValueError(f"max_audio_seconds must be a positive number of seconds or None, got {longest!r}")
        if self.too_large_style not in TOO_LARGE_STYLES:
            raise ValueError(
                f"unknown too_large_style {self.too_large_style!r}; choose one of {', '.join(TOO_LARGE_STYLES)}"
            )
        if self.error_style not in ERROR_STYLES:
            raise ValueError(f"unknown error_style {self.error_style!r}; choose one of {', '.join(ERROR_STYLES)}")
        if any(not isinstance(m, str) or not m.strip() or m != m.strip() for m in self.models):
            raise ValueError(f"models must be non-empty names without surrounding spaces, got {list(self.models)!r}")

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
        if isinstance(options.get("models"), str):
            options["models"] = parse_models(options["models"])
        elif options.get("models") is not None:
            options["models"] = tuple(options["models"])
        for name in ("model_dir", "spool_dir"):
            if options.get(name) is not None:
                options[name] = Path(options[name])
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise TypeError(f"unknown server option(s): {', '.join(sorted(unknown))}")
        return cls(faults=FaultConfig(**fault_opts), **options)


#: Settings ``POST /_linkai/config`` accepts, each with its validator.
_SETTABLE: dict[str, Callable[[Any], Any]] = {"max_in_flight": check_max_in_flight}


def parse_settings(body: bytes) -> dict[str, Any]:
    """The validated settings of a ``POST /_linkai/config`` body.

    :raises ApiError: 400 naming what is wrong (not JSON, not an object, an unknown setting, a
        bad value).
    """
    example = 'e.g. {"max_in_flight": 3} (null for no limit)'
    if not body.strip():
        raise ApiError(400, f"Invalid request format: the config body is empty; send {example}")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400, f"Invalid request format: the config body is not valid JSON ({exc}); send {example}"
        ) from None
    if not isinstance(payload, dict):
        kind = type(payload).__name__ if payload is not None else "null"
        raise ApiError(400, f"Invalid request format: the config body must be a JSON object, {example}; got {kind}")
    unknown = sorted(set(payload) - set(_SETTABLE))
    if unknown:
        raise ApiError(
            400,
            f"Invalid request format: unknown setting(s) {', '.join(map(repr, unknown))}; "
            f"settable: {', '.join(_SETTABLE)}",
        )
    changes: dict[str, Any] = {}
    for name, value in payload.items():
        try:
            changes[name] = _SETTABLE[name](value)
        except ValueError as exc:
            raise ApiError(400, f"Invalid request format: {exc}") from None
    return changes
