"""The ASGI application: the LinkAI transcription contract plus health and stats endpoints.

Order of work for ``POST /v1/audio/transcriptions`` (each step can answer early):

1. authenticate the Bearer key (401) -- before any body byte is read, so a client can probe a
   key cheaply and a stranger cannot make the server spool or decode anything;
2. refuse an oversized ``Content-Length`` (413) -- again before reading;
3. admit the request under ``--max-in-flight`` (429 with ``Retry-After`` at once when the
   limit is reached; the slot is held until the answer is sent);
4. draw the fault decision (after auth, so faults never mask a 401);
5. stream the multipart body to disk with the size limit (413 the moment it is crossed, 400
   for a malformed body);
6. wait the injected latency (``asyncio.sleep``: other requests go on), answer an injected fault;
7. validate: a ``file`` part, not empty, content sniffed as one of the ten formats, audio not
   longer than ``--max-audio-seconds``, a known ``language`` (400);
8. wait ``--latency-ms-per-audio-second`` times the audio's duration, recognise in the bounded
   worker pool and answer ``{"text": ...}`` (with ``X-LinkAI-Audio-Seconds`` when known).

An upload over ``--max-upload-bytes`` (steps 2 and 5) is answered in the ``--too-large-style``:
the error envelope, or the HTML page nginx sends as a front proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from linkai_provider import __version__
from linkai_provider.server.audio import ACCEPTED_EXTENSIONS, describe_content, sniff
from linkai_provider.server.config import ServerConfig, check_max_in_flight
from linkai_provider.server.connections import abort_connection
from linkai_provider.server.duration import audio_duration
from linkai_provider.server.engines import AudioDecodeError, Engine, Job, UnsupportedLanguageError
from linkai_provider.server.errors import ApiError, envelope_bytes
from linkai_provider.server.faults import Fault, FaultInjector
from linkai_provider.server.stats import Stats
from linkai_provider.server.upload import FORM_OVERHEAD_BYTES, TooLargeError, Upload, receive_upload, too_large

__all__ = ["AUDIO_SECONDS_HEADER", "NGINX_413_BODY", "TRANSCRIPTIONS_PATH", "ServerState", "create_app"]

TRANSCRIPTIONS_PATH = "/v1/audio/transcriptions"
#: Response header of a successful transcription: the audio duration the server measured.
AUDIO_SECONDS_HEADER = "X-LinkAI-Audio-Seconds"
#: What nginx answers for a body over ``client_max_body_size`` (``--too-large-style nginx``).
NGINX_413_BODY = (
    b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n"
    b"<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

access_log = logging.getLogger("linkai_provider.server.access")
log = logging.getLogger("linkai_provider.server")


@dataclass
class ServerState:
    """What one server instance shares between requests."""

    config: ServerConfig
    engine: Engine
    stats: Stats = field(default_factory=Stats)
    injector: FaultInjector | None = None
    executor: ThreadPoolExecutor | None = None

    def __post_init__(self) -> None:
        if self.injector is None:
            self.injector = FaultInjector(self.config.faults)
        self._credits_spent = 0
        self._credits_lock = threading.Lock()
        #: The live ``--max-in-flight`` (``POST /_linkai/config`` changes it).
        self.max_in_flight: int | None = self.config.max_in_flight

    def settings(self) -> dict[str, Any]:
        """The settings ``POST /_linkai/config`` can change, as they are now."""
        return {"max_in_flight": self.max_in_flight}

    def spend_credit(self) -> bool:
        """Reserve one recognition against ``--credits``; False once the balance is spent."""
        limit = self.config.faults.credits
        if limit is None:
            return True
        with self._credits_lock:
            if self._credits_spent >= limit:
                return False
            self._credits_spent += 1
            return True

    def refund_credit(self) -> None:
        if self.config.faults.credits is not None:
            with self._credits_lock:
                self._credits_spent -= 1

    def reset_credits(self) -> None:
        with self._credits_lock:
            self._credits_spent = 0


class _Dropped(Exception):
    """The connection was dropped on purpose; nothing more is sent."""


class _Answer:
    """Sends a response while remembering its status and size for stats and the access log."""

    def __init__(self, send: Send):
        self._send = send
        self.status: int | None = None
        self.bytes_out = 0

    async def raw(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await self._send({"type": "http.response.body", "body": body})
        self.status, self.bytes_out = status, len(body)

    async def start_only(self, status: int) -> None:
        """Send the status line and headers only (the fallback way to break a response)."""
        await self._send({"type": "http.response.start", "status": status, "headers": []})

    async def json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        await self.raw(status, body, "application/json", headers)

    async def error(self, err: ApiError) -> None:
        await self.raw(err.status, envelope_bytes(err.status, err.message), "application/json", err.headers)


class TranscriptionEndpoint:
    """``POST /v1/audio/transcriptions`` as a plain ASGI app, for control over the body stream."""

    def __init__(self, state: ServerState):
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        request = Request(scope, receive)
        answer = _Answer(send)
        upload: Upload | None = None
        outcome: str | None = None
        started = time.perf_counter()
        admitted = False
        state.stats.request_started()
        try:
            self._authenticate(request)
            self._check_content_length(request)
            admitted = self._admit()
            assert state.injector is not None
            decision = state.injector.decide(request.headers)
            upload = await receive_upload(
                request.stream(),
                request.headers.get("content-type"),
                max_file_bytes=state.config.max_upload_bytes,
                spool_dir=state.config.spool_dir,
            )
            if decision.delay_s > 0:
                await asyncio.sleep(decision.delay_s)
            if decision.fault is not None:
                await self._inject(scope, answer, decision.fault)
            elif not state.spend_credit():
                raise ApiError(406)
            else:
                try:
                    text, seconds, audio_seconds = await self._recognise(upload)
                except BaseException:
                    state.refund_credit()  # only a recognised file costs a credit
                    raise
                headers = {AUDIO_SECONDS_HEADER: f"{audio_seconds:.3f}"} if audio_seconds is not None else None
                await answer.json(200, {"text": text}, headers)
                state.stats.transcribed(upload.sha256, seconds, audio_seconds)
        except _Dropped:
            outcome = "dropped"
        except ClientDisconnect:
            outcome = "client-disconnected"  # nobody to answer
        except TooLargeError as err:
            if state.config.too_large_style == "nginx":
                await answer.raw(413, NGINX_413_BODY, "text/html")
            else:
                await answer.error(err)
        except ApiError as err:
            await answer.error(err)
        except Exception:  # a bug, not the client's fault: answer 500 in the envelope, keep serving
            log.exception("unexpected error while handling %s", TRANSCRIPTIONS_PATH)
            if answer.status is None:  # nothing sent yet, so an answer is still possible
                await answer.error(ApiError(500))
        finally:
            body_bytes = upload.body_bytes if upload is not None else 0
            if upload is not None:
                upload.cleanup()
            if admitted:
                state.stats.release()
            state.stats.request_finished(answer.status, body_bytes, outcome=outcome)
            access_log.info(
                "%s %s %s in=%dB out=%dB %.1fms",
                request.method,
                scope.get("path", ""),
                answer.status or outcome,
                body_bytes,
                answer.bytes_out,
                (time.perf_counter() - started) * 1000.0,
            )

    def _authenticate(self, request: Request) -> None:
        config = self.state.config
        if config.no_auth:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise ApiError(401, "Authentication failed: send the API key as 'Authorization: Bearer <key>'")
        key = key.strip()
        # Compare against every key in constant time so timing does not reveal a prefix.
        matched = False
        for candidate in config.api_keys:
            matched |= hmac.compare_digest(key.encode(), candidate.encode())
        if not matched:
            raise ApiError(401, "Authentication failed, please check if your API Key is correct")

    def _admit(self) -> bool:
        """Take an in-flight slot; 429 with ``Retry-After`` at once when none is free."""
        state = self.state
        limit = state.max_in_flight
        if state.stats.try_admit(limit):
            return True
        raise ApiError(
            429,
            f"Too many concurrent requests: the limit is {limit} at once; please retry later",
            headers={"Retry-After": str(state.config.faults.retry_after)},
        )

    def _check_content_length(self, request: Request) -> None:
        raw = request.headers.get("content-length")
        limit = self.state.config.max_upload_bytes
        if raw is not None and raw.isdigit() and int(raw) > limit + FORM_OVERHEAD_BYTES:
            raise too_large(limit)

    async def _inject(self, scope: Scope, answer: _Answer, fault: Fault) -> None:
        if fault.kind == "drop":
            if abort_connection(scope):
                # Let connection_lost run first, so uvicorn sees a disconnect, not a silent app.
                for _ in range(3):
                    await asyncio.sleep(0)
            else:
                # Not under our uvicorn protocol: start a response and never finish it.
                await answer.start_only(200)
            raise _Dropped()
        if fault.kind == "envelope200":
            err = ApiError(503)
            await answer.raw(200, envelope_bytes(err.status, err.message), "application/json")
        elif fault.kind == "nonjson":
            page = f"<html><body><h1>{fault.status}</h1><p>upstream gateway says hello</p></body></html>"
            await answer.raw(fault.status, page.encode(), "text/html; charset=utf-8")
        elif fault.kind == "notext":
            await answer.json(200, {"result": "ok", "data": None})
        else:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            raise ApiError(fault.status, headers=headers)

    async def _recognise(self, upload: Upload) -> tuple[str, float, float | None]:
        """Validate the upload and run the engine.

        :return: the text, the engine's seconds, and the audio's duration (``None``: unknown).
        """
        state = self.state
        if not upload.has_file:
            raise ApiError(400, "Invalid request format: missing multipart field 'file'")
        if upload.size == 0:
            raise ApiError(400, "Invalid request format: the uploaded file is empty")
        assert upload.path is not None
        family = await asyncio.to_thread(sniff, upload.path)
        if family is None:
            name = upload.filename or "file"
            raise ApiError(
                400,
                f"Invalid request format: {name!r} is not a supported audio file (content is "
                f"{describe_content(upload.head)}); supported formats: {', '.join(ACCEPTED_EXTENSIONS)}",
            )
        audio_seconds = await asyncio.to_thread(audio_duration, upload.path, family)
        limit = state.config.max_audio_seconds
        if audio_seconds is not None and limit is not None and audio_seconds > limit:
            raise ApiError(
                400, f"Audio too long: {audio_seconds:.1f} s; this API accepts at most {limit:g} s per request"
            )
        try:
            language = state.engine.check_language(upload.fields.get("language"))
        except UnsupportedLanguageError as exc:
            raise ApiError(400, str(exc)) from exc
        per_second = state.config.latency_ms_per_audio_second
        if per_second > 0 and audio_seconds is not None:
            wait_s = per_second * audio_seconds / 1000.0
            state.stats.audio_latency(wait_s)
            await asyncio.sleep(wait_s)
        job = Job(upload.path, family, upload.size, upload.sha256, language)
        started = time.perf_counter()
        try:
            if state.engine.blocking:
                loop = asyncio.get_running_loop()
                text = await loop.run_in_executor(state.executor, state.engine.transcribe, job)
            else:
                text = state.engine.transcribe(job)
        except AudioDecodeError as exc:
            raise ApiError(400, str(exc)) from exc
        return text, time.perf_counter() - started, audio_seconds


def create_app(config: ServerConfig, engine: Engine) -> Starlette:
    """The ASGI app for ``config``; ``engine`` should already be loaded (see the runner)."""
    state = ServerState(config=config, engine=engine)

    async def healthz(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "auth": not config.no_auth,
                "max_upload_bytes": config.max_upload_bytes,
                "max_in_flight": state.max_in_flight,
                "retry_after": config.faults.retry_after,
                "latency_ms_per_audio_second": config.latency_ms_per_audio_second,
                "max_audio_seconds": config.max_audio_seconds,
                "too_large_style": config.too_large_style,
                **engine.info(),
            }
        )

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.settings())

    async def set_config(request: Request) -> Response:
        try:
            changes = _parse_settings(await request.body())
        except ApiError as err:
            body = envelope_bytes(err.status, err.message)
            return Response(body, status_code=err.status, media_type="application/json")
        if "max_in_flight" in changes:
            state.max_in_flight = changes["max_in_flight"]
            log.info("max_in_flight set to %s", state.max_in_flight)
        return JSONResponse(state.settings())

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.snapshot())

    async def reset_stats(request: Request) -> Response:
        state.stats.reset()
        state.reset_credits()
        assert state.injector is not None
        state.injector.reset()  # so a seeded fault sequence can be replayed from the start
        return JSONResponse(state.stats.snapshot())

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        err = ApiError(status)
        return Response(envelope_bytes(status, err.message), status_code=status, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state.executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="linkai-recognise")
        try:
            yield
        finally:
            state.executor.shutdown(wait=False, cancel_futures=True)

    app = Starlette(
        routes=[
            Route(TRANSCRIPTIONS_PATH, TranscriptionEndpoint(state), methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/_linkai/stats", stats, methods=["GET"]),
            Route("/_linkai/stats/reset", reset_stats, methods=["POST"]),
            Route("/_linkai/config", get_config, methods=["GET"]),
            Route("/_linkai/config", set_config, methods=["POST"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.linkai = state
    return app


#: Settings ``POST /_linkai/config`` accepts, each with its validator.
_SETTABLE: dict[str, Callable[[Any], Any]] = {"max_in_flight": check_max_in_flight}


def _parse_settings(body: bytes) -> dict[str, Any]:
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
