"""LinkAIHook: the connection to the LinkAI speech recognition API."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import IO, Any, cast
from urllib.parse import urlsplit

import httpx
import tenacity
from airflow.sdk import BaseHook

from linkai_provider import __version__
from linkai_provider._api import (
    AttemptLog,
    HashingReader,
    RetryPolicy,
    parse_response,
    translate_transport_error,
)
from linkai_provider.exceptions import (
    EndpointNotFoundError,
    InvalidRequestError,
    LinkAIConfigurationError,
    LinkAIError,
    LinkAIFatalError,
    LinkAITransientError,
    ModelNotFoundError,
    PayloadTooLargeError,
    UnreadableFileError,
)
from linkai_provider.formats import content_type as content_type_for
from linkai_provider.scheduler import PRIORITY_FILE, RequestScheduler

DEFAULT_BASE_URL = "https://api.linkai.cloud"
TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
DEFAULT_TIMEOUT = 300.0
DEFAULT_MAX_RETRIES = 5
CONNECT_TIMEOUT = 10.0
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}

FileInput = str | os.PathLike[str] | bytes | IO[bytes] | Callable[[], IO[bytes]]


@dataclass(frozen=True)
class Transcription:
    """One file's answer: the text and what it took to get it."""

    text: str
    attempts: int
    latency_ms: int
    content_sha256: str
    size_bytes: int


@dataclass(frozen=True)
class LinkAIConfig:
    """Everything the hook reads from the connection, overrides applied. ``repr`` never shows the key."""

    conn_id: str
    base_url: str
    api_key: str
    timeout: float
    max_retries: int
    proxy: str | None
    verify: bool | str
    extra_fields: Mapping[str, str]

    @property
    def endpoint(self) -> str:
        # accept both "https://host" and OpenAI-style "https://host/v1" base URLs
        if self.base_url.endswith("/v1"):
            return self.base_url + TRANSCRIPTIONS_PATH[3:]
        return self.base_url + TRANSCRIPTIONS_PATH

    def __repr__(self) -> str:
        return f"LinkAIConfig(conn_id={self.conn_id!r}, base_url={self.base_url!r}, api_key=***)"


def normalize_base_url(host: str | None, port: int | None = None) -> str:
    """Base URL from the connection's host: scheme optional (http for loopback, else https)."""
    host = (host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        name = host.split("/")[0].rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        host = ("http://" if name in _LOOPBACK else "https://") + host
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LinkAIConfigurationError(f"host {host!r} is not an http(s) URL")
    if port and not parts.port:
        host = f"{parts.scheme}://{parts.netloc}:{port}{parts.path}".rstrip("/")
    return host


def _as_fields(value: Any, where: str) -> dict[str, str]:
    if value in (None, "", {}):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise LinkAIConfigurationError(f"{where}: extra_fields is not valid JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise LinkAIConfigurationError(f"{where}: extra_fields must be a JSON object, got {type(value).__name__}")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def _as_bool(value: Any) -> bool | str:
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on", ""):
        return True
    return value if isinstance(value, str) else bool(value)  # a string may be a CA bundle path


class LinkAIHook(BaseHook):
    """Talks to the LinkAI speech recognition API (or any server with the same contract).

    The connection's host is the base URL (default ``https://api.linkai.cloud``), its password the
    API key. Extras: ``timeout`` (seconds), ``max_retries``, ``proxy``, ``verify``, ``extra_fields``.

    :param linkai_conn_id: Airflow connection id of type ``linkai``.
    :param timeout: overrides the connection's ``timeout``.
    :param max_retries: overrides the connection's ``max_retries``.
    :param extra_fields: form fields sent with every upload, merged over the connection's.
    :param max_connections: size of the HTTP connection pool (the operator sets its concurrency).
    """

    conn_name_attr = "linkai_conn_id"
    default_conn_name = "linkai_default"
    conn_type = "linkai"
    hook_name = "LinkAI"

    def __init__(
        self,
        linkai_conn_id: str = default_conn_name,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        max_connections: int = 32,
        retry_policy: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.linkai_conn_id = linkai_conn_id
        self._timeout = timeout
        self._max_retries = max_retries
        self._extra_fields = dict(extra_fields or {})
        self._max_connections = max_connections
        self._retry_policy = retry_policy

    # -- configuration ---------------------------------------------------------------------------
    @cached_property
    def config(self) -> LinkAIConfig:
        conn = self.get_connection(self.linkai_conn_id)
        where = f"connection {self.linkai_conn_id!r}"
        if not conn.password:
            raise LinkAIConfigurationError(
                f"{where} has no API key: set its password (shown as 'API Key' in the UI) to your LinkAI key"
            )
        self._mask(conn.password)
        extra = conn.extra_dejson
        try:
            # 0 is a value (an invalid one, refused below), not "unset": only None or "" mean the default
            raw_timeout = self._timeout if self._timeout is not None else extra.get("timeout")
            timeout = float(DEFAULT_TIMEOUT if raw_timeout in (None, "") else raw_timeout)
            retries = self._max_retries if self._max_retries is not None else extra.get("max_retries")
            max_retries = int(DEFAULT_MAX_RETRIES if retries in (None, "") else retries)
        except (TypeError, ValueError) as exc:
            raise LinkAIConfigurationError(f"{where}: timeout/max_retries must be numbers ({exc})") from None
        if timeout <= 0 or max_retries < 0:
            raise LinkAIConfigurationError(f"{where}: timeout must be > 0 and max_retries >= 0")
        return LinkAIConfig(
            conn_id=self.linkai_conn_id,
            base_url=normalize_base_url(conn.host, conn.port),
            api_key=conn.password,
            timeout=timeout,
            max_retries=max_retries,
            proxy=extra.get("proxy") or None,
            verify=_as_bool(extra.get("verify", True)),
            extra_fields={**_as_fields(extra.get("extra_fields"), where), **_as_fields(self._extra_fields, where)},
        )

    @staticmethod
    def _mask(secret: str) -> None:
        try:
            from airflow.sdk.log import mask_secret
        except ImportError:  # pragma: no cover - older task SDKs
            from airflow.sdk.execution_time.secrets_masker import mask_secret  # type: ignore[no-redef]
        mask_secret(secret)

    def _redact(self, text: str) -> str:
        key = self.config.api_key
        return text.replace(key, "***") if key and key in text else text

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return self._retry_policy or RetryPolicy(max_retries=self.config.max_retries)

    @cached_property
    def client(self) -> httpx.Client:
        """One pooled keep-alive client per hook; thread-safe, shared by the operator's workers."""
        cfg = self.config
        return httpx.Client(
            timeout=httpx.Timeout(cfg.timeout, connect=min(CONNECT_TIMEOUT, cfg.timeout)),
            limits=httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections),
            headers={
                "Authorization": f"Bearer {cfg.api_key}",
                "User-Agent": f"airflow-provider-linkai/{__version__}",
            },
            proxy=cfg.proxy,
            verify=cfg.verify,
            follow_redirects=False,
        )

    def close(self) -> None:
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    # -- the API ---------------------------------------------------------------------------------
    def transcribe(
        self,
        file: FileInput,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        extra_fields: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
        gate: RequestScheduler | None = None,
        priority: int = PRIORITY_FILE,
    ) -> Transcription:
        """Upload one audio file and return its transcript.

        ``file`` is a path, bytes, an open binary file, or a callable that opens one. The file is
        streamed in 64 KiB chunks (never read whole) and re-read from its start on each retry.
        Transient errors are retried per the retry policy; setting ``cancel`` stops further tries.
        With ``gate`` (the batch's :class:`~linkai_provider.scheduler.RequestScheduler`) every attempt
        waits for a slot and reports how it ended, so the batch adapts its concurrency; no slot is
        held while a retry waits.

        :raises LinkAIError: a subclass that says what went wrong; ``attempts`` tells how many tries.
        """
        name = filename or self._name_of(file)
        fields = {**self.config.extra_fields, **_as_fields(extra_fields, "extra_fields")}
        attempts = AttemptLog()
        try:
            raw = self._open(file)
        except OSError as exc:
            raise UnreadableFileError(f"cannot open {name}: {exc}") from exc
        reader = HashingReader(raw)
        try:
            ctype = content_type or content_type_for(name)
            text = self.retry_policy.call(
                lambda: self._send_once(reader, name, ctype, fields, attempts, gate, priority),
                cancel=cancel,
                on_retry=self._log_retry(name),
            )
        except LinkAIError as exc:
            exc.attempts = attempts.count
            if exc.status_code is not None and reader.complete:
                exc.content_sha256 = reader.sha256.hexdigest()  # the server saw this exact content
            raise
        finally:
            reader.close()
        started = attempts.first_sent or time.monotonic()
        return Transcription(
            text=text,
            attempts=attempts.count,
            latency_ms=int((time.monotonic() - started) * 1000),
            content_sha256=reader.sha256.hexdigest(),
            size_bytes=reader.bytes_read,
        )

    def _send_once(
        self,
        reader: HashingReader,
        filename: str,
        ctype: str,
        fields: Mapping[str, str],
        attempts: AttemptLog,
        gate: RequestScheduler | None = None,
        priority: int = PRIORITY_FILE,
    ) -> str:
        ticket = gate.acquire(priority) if gate is not None else None  # SchedulerCancelled: never sent
        attempts.count += 1
        if attempts.first_sent is None:
            attempts.first_sent = time.monotonic()
        error: BaseException | None = None
        try:
            try:
                response = self.client.post(
                    self.config.endpoint,
                    files={"file": (filename, cast(IO[bytes], reader), ctype)},
                    data=dict(fields),
                )
            except httpx.TransportError as exc:
                raise translate_transport_error(exc, self._redact) from exc
            return parse_response(response, self._redact, model=fields.get("model"))
        except BaseException as exc:
            error = exc
            raise
        finally:
            if gate is not None and ticket is not None:
                gate.release(ticket, error)

    def _log_retry(self, name: str) -> Callable[[tenacity.RetryCallState], None]:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self.log.warning("%s: attempt %d failed (%s); retrying in %.1fs", name, state.attempt_number, error, wait)

        return before_sleep

    @staticmethod
    def _name_of(file: FileInput) -> str:
        if isinstance(file, (str, os.PathLike)):
            return os.path.basename(os.fspath(file))
        name = getattr(file, "name", None)
        return os.path.basename(name) if isinstance(name, str) else "audio"

    @staticmethod
    def _open(file: FileInput) -> IO[bytes]:
        if isinstance(file, (str, os.PathLike)):
            return open(file, "rb")  # noqa: SIM115 - closed by transcribe()
        if isinstance(file, (bytes, bytearray)):
            import io

            return io.BytesIO(file)
        if callable(file) and not hasattr(file, "read"):
            return file()
        return file  # type: ignore[return-value]

    # -- Airflow UI ------------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """Check URL and key without spending credits.

        Uploads an empty ``.wav``: a LinkAI server checks the key first (401 on a wrong key), then
        rejects the empty file with 400 before any recognition runs. So 400 means "reachable, key
        accepted"; 401/402/403/406/408 name what is wrong with the account; a transport error means
        the host cannot be reached; 404 means the URL serves no LinkAI API, but ``model_not_found``
        that the ``model`` of ``extra_fields`` is not served there.
        """
        try:
            cfg = self.config
            probe = LinkAIHook(self.linkai_conn_id, max_retries=0, timeout=min(cfg.timeout, 30.0))
            probe.transcribe(b"", filename="linkai-connection-test.wav")
        except (InvalidRequestError, PayloadTooLargeError):
            return (
                True,
                f"Connection successful: {cfg.endpoint} accepted the API key "
                "(empty probe file rejected, no credits spent)",
            )
        except LinkAIConfigurationError as exc:
            return False, exc.message
        except ModelNotFoundError as exc:
            return False, f"{cfg.endpoint} does not serve the model {exc.model!r} (extra_fields 'model'): {exc}"
        except EndpointNotFoundError as exc:
            return False, f"{cfg.endpoint} is not a LinkAI transcription endpoint: {exc}"
        except LinkAIFatalError as exc:
            return False, f"{cfg.endpoint} refused the API key: {exc}"
        except LinkAITransientError as exc:
            return False, f"Cannot reach {cfg.endpoint}: {exc}"
        except LinkAIError as exc:
            return False, f"Unexpected answer from {cfg.endpoint}: {exc}"
        return True, f"Connection successful: {cfg.endpoint} answered the probe upload"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 3.1's form; 3.2+ reads the same from ``get_provider_info()`` without the hook."""
        from linkai_provider import get_provider_info

        behaviour = get_provider_info()["connection-types"][0]["ui-field-behaviour"]
        return {key.replace("-", "_"): value for key, value in behaviour.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for Airflow 3.1's form (3.2+ reads ``conn-fields`` from the provider info)."""
        from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
        from flask_babel import lazy_gettext
        from wtforms import BooleanField, IntegerField, StringField
        from wtforms.validators import NumberRange, Optional

        return {
            "timeout": IntegerField(
                lazy_gettext("Timeout (seconds)"),
                validators=[Optional(), NumberRange(min=1)],
                widget=BS3TextFieldWidget(),
            ),
            "max_retries": IntegerField(
                lazy_gettext("Max retries"), validators=[Optional(), NumberRange(min=0)], widget=BS3TextFieldWidget()
            ),
            "proxy": StringField(lazy_gettext("Proxy URL"), widget=BS3TextFieldWidget()),
            "verify": BooleanField(lazy_gettext("Verify TLS"), default=True),
            "extra_fields": StringField(lazy_gettext("Extra form fields (JSON)"), widget=BS3TextFieldWidget()),
        }
