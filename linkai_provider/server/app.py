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
7. check the fields: a ``model`` of ``--models`` (404 ``model_not_found``), a known
   ``response_format`` (400); then the account's ``--credits`` (406; OpenAI: 429);
8. validate: a ``file`` part, not empty, content sniffed as one of the ten formats, audio not
   longer than ``--max-audio-seconds``, a known ``language`` (400);
9. wait ``--latency-ms-per-audio-second`` times the audio's duration, recognise in the bounded
   worker pool and answer in the ``response_format`` (``{"text": ...}`` by default; with
   ``X-LinkAI-Audio-Seconds`` when the duration is known).

Errors are answered in the ``--error-style``: LinkAI's envelope or OpenAI's ``{"error": {...}}``.
An upload over ``--max-upload-bytes`` (steps 2 and 5) is answered in the ``--too-large-style``:
that error body, or the HTML page nginx sends as a front proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from linkai_provider.server.audio import ACCEPTED_EXTENSIONS, describe_content, sniff
from linkai_provider.server.config import ServerConfig, parse_settings
from linkai_provider.server.connections import abort_connection
from linkai_provider.server.duration import audio_duration
from linkai_provider.server.engines import AudioDecodeError, Engine, Job, UnsupportedLanguageError
from linkai_provider.server.errors import ApiError, envelope_bytes, model_not_found, out_of_credits, unknown_route
from linkai_provider.server.faults import Fault
from linkai_provider.server.response_formats import Recognition, check_response_format, render
from linkai_provider.server.state import ServerState
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


class _Dropped(Exception):
    """The connection was dropped on purpose; nothing more is sent."""


class _Answer:
    """Sends a response while remembering its status and size for stats and the access log."""

    def __init__(self, send: Send, style: str):
        self._send = send
        self.style = style
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
        """``err`` in the server's ``--error-style``."""
        await self.raw(err.status_for(self.style), err.body(self.style), "application/json", err.headers)


class TranscriptionEndpoint:
    """``POST /v1/audio/transcriptions`` as a plain ASGI app, for control over the body stream."""

    def __init__(self, state: ServerState):
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        request = Request(scope, receive)
        answer = _Answer(send, state.config.error_style)
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
                return
            response_format = self._check_fields(upload)
            if not state.spend_credit():
                raise out_of_credits()
            try:
                recognition, seconds, audio_seconds = await self._recognise(upload)
            except BaseException:
                state.refund_credit()  # only a recognised file costs a credit
                raise
            headers = {AUDIO_SECONDS_HEADER: f"{audio_seconds:.3f}"} if audio_seconds is not None else None
            body, content_type = render(response_format, recognition)
            await answer.raw(200, body, content_type, headers)
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
            raise ApiError(
                401,
                "Authentication failed: send the API key as 'Authorization: Bearer <key>'",
                openai_message="You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        key = key.strip()
        # Compare against every key in constant time so timing does not reveal a prefix.
        matched = False
        for candidate in config.api_keys:
            matched |= hmac.compare_digest(key.encode(), candidate.encode())
        if not matched:  # the key is never echoed, unlike OpenAI's "Incorrect API key provided: sk-ab***cd"
            raise ApiError(
                401,
                "Authentication failed, please check if your API Key is correct",
                code="invalid_api_key",
                openai_message="Incorrect API key provided.",
            )

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
            raise too_large(limit, int(raw))

    def _check_fields(self, upload: Upload) -> str:
        """The ``model`` against ``--models`` (404 ``model_not_found``), and the ``response_format``."""
        served = self.state.config.models
        model = upload.fields.get("model", "").strip()
        if served and model and model not in served:
            raise model_not_found(model, served)
        return check_response_format(upload.fields.get("response_format"))

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

    async def _recognise(self, upload: Upload) -> tuple[Recognition, float, float | None]:
        """Validate the upload and run the engine.

        :return: the recognition, the engine's seconds, and the audio's duration (``None``: unknown).
        """
        state = self.state
        if not upload.has_file:
            raise ApiError(400, "Invalid request format: missing multipart field 'file'", param="file")
        if upload.size == 0:
            raise ApiError(400, "Invalid request format: the uploaded file is empty", param="file")
        assert upload.path is not None
        family = await asyncio.to_thread(sniff, upload.path)
        if family is None:
            name = upload.filename or "file"
            raise ApiError(
                400,
                f"Invalid request format: {name!r} is not a supported audio file (content is "
                f"{describe_content(upload.head)}); supported formats: {', '.join(ACCEPTED_EXTENSIONS)}",
                param="file",
            )
        audio_seconds = await asyncio.to_thread(audio_duration, upload.path, family)
        limit = state.config.max_audio_seconds
        if audio_seconds is not None and limit is not None and audio_seconds > limit:
            raise ApiError(
                400,
                f"Audio too long: {audio_seconds:.1f} s; this API accepts at most {limit:g} s per request",
                param="file",
            )
        try:
            language = state.engine.check_language(upload.fields.get("language"))
        except UnsupportedLanguageError as exc:
            raise ApiError(400, str(exc), param="language") from exc
        per_second = state.config.latency_ms_per_audio_second
        if per_second > 0 and audio_seconds is not None:
            wait_s = per_second * audio_seconds / 1000.0
            state.stats.audio_latency(wait_s)
            await asyncio.sleep(wait_s)
        job = Job(upload.path, family, upload.size, upload.sha256, language, audio_seconds)
        started = time.perf_counter()
        try:
            if state.engine.blocking:
                loop = asyncio.get_running_loop()
                recognition = await loop.run_in_executor(state.executor, state.engine.transcribe, job)
            else:
                recognition = state.engine.transcribe(job)
        except AudioDecodeError as exc:
            raise ApiError(400, str(exc), param="file") from exc
        return recognition, time.perf_counter() - started, audio_seconds


def create_app(config: ServerConfig, engine: Engine) -> Starlette:
    """The ASGI app for ``config``; ``engine`` should already be loaded (see the runner)."""
    state = ServerState(config=config, engine=engine)

    async def healthz(request: Request) -> Response:
        return JSONResponse(state.health())

    async def get_config(request: Request) -> Response:
        return JSONResponse(state.settings())

    async def set_config(request: Request) -> Response:
        try:
            changes = parse_settings(await request.body())
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
        err = unknown_route(status, request.method, request.url.path) if status in (404, 405) else ApiError(status)
        style = config.error_style
        return Response(err.body(style), status_code=err.status_for(style), media_type="application/json")

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
