"""The Transcripts page's FastAPI app, mounted by the api-server under ``/linkai``.

| path | answer |
| --- | --- |
| ``/`` | the page (HTML; its script and style sheet under ``/static/``) |
| ``/api/search?q=&limit=&offset=`` | files whose current transcript holds the phrase |
| ``/api/days?limit=&offset=`` | files, failures and audio billed per day, newest first |
| ``/api/days/{dt}/failures?examples=`` | why a day's files failed |
| ``/api/runs/{dag_id}/{run_id}?status=&limit=&offset=`` | every file of one DAG run |
| ``/api/status`` | the dataset shown and how fresh the cache is |

Every path, unknown ones included, needs an Airflow token (:mod:`.auth`); data paths also need
permission to read DAG runs. Nothing here takes a file path or URL from a request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from linkai_provider.plugins import auth, queries
from linkai_provider.plugins.config import load
from linkai_provider.plugins.store import DatasetUnavailable, TranscriptStore

log = logging.getLogger(__name__)

# The page's files: a fixed list, so no request names a file on disk.
STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "icon-dark.svg": "image/svg+xml",
}
# The page runs only what the plugin serves: no CDN, no inline script, no other origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'self'"
)
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}

User = Annotated[Any, Depends(auth.current_user)]
Limit = Annotated[int, Query(ge=1, le=200, description="at most this many items")]
Offset = Annotated[int, Query(ge=0, le=1_000_000, description="skip this many items (paging)")]


class _Stores:
    """One cache per api-server process, opened on the first request (never at import), and opened
    anew if the configuration it was made for changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._store: TranscriptStore | None = None

    def get(self) -> TranscriptStore:
        try:
            config = load()
        except Exception as exc:  # a bad value in [linkai]: the deployment's problem, not the request's
            raise DatasetUnavailable(f"the [linkai] settings are not valid: {exc}") from exc
        with self._lock:
            if self._store is None or self._store.config != config:
                if self._store is not None:
                    self._store.close()
                    self._store = None
                self._store = TranscriptStore(config)
            return self._store


STORES = _Stores()


def _static(name: str) -> bytes:
    return resources.files("linkai_provider.plugins").joinpath("static", name).read_bytes()


def create_app() -> FastAPI:
    app = FastAPI(
        title="LinkAI transcripts",
        description="Search, days and a run's transcripts of the LinkAI transcript dataset.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(DatasetUnavailable)
    async def unavailable(request: Request, exc: DatasetUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Cache-Control": "no-store"})

    @app.exception_handler(ValueError)
    async def bad_value(request: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400, headers={"Cache-Control": "no-store"})

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")  # transcripts stay out of shared caches
        return response

    @app.get("/", include_in_schema=False)
    def page(user: User) -> Response:
        html = _static("index.html")
        return Response(html, media_type="text/html; charset=utf-8", headers={"Content-Security-Policy": CSP})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str, user: User, request: Request) -> Response:
        if name not in STATIC:
            raise HTTPException(404, "Not found")
        body = _static(name)
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        headers = {"ETag": etag, "Cache-Control": "private, no-cache"}  # revalidated: a new version shows at once
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(body, media_type=STATIC[name], headers=headers)

    @app.get("/api/status")
    def dataset_status(user: User) -> dict[str, Any]:
        auth.require_run_reader(user)
        store = STORES.get()
        store.ensure_fresh()
        return {
            "dataset": _redact(store.url),
            "refreshed_at": store.refreshed_at,
            "refresh_seconds": store.config.refresh_seconds,
            "last_refresh": dataclasses.asdict(store.last_refresh) if store.last_refresh else None,
        }

    @app.get("/api/search")
    def search(
        user: User,
        q: Annotated[str, Query(max_length=1000, description="the word or phrase to look for")],
        limit: Limit = 20,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        phrase = queries.normalize_phrase(q)
        store, con, access = _open(user)
        with con:  # the version read after the refresh _open made: cached hits match these rows
            return queries.search(con, phrase, access, limit, offset, store.hits, store.version)

    @app.get("/api/days")
    def days(user: User, limit: Annotated[int, Query(ge=1, le=1000)] = 30, offset: Offset = 0) -> dict[str, Any]:
        _, con, access = _open(user)
        with con:
            return queries.days(con, access, limit, offset)

    @app.get("/api/days/{dt}/failures")
    def failures(user: User, dt: str, examples: Annotated[int, Query(ge=0, le=20)] = 3) -> dict[str, Any]:
        if not queries.DAY_RE.match(dt):
            raise ValueError(f"dt: not a partition value: {dt[:50]!r}")
        _, con, access = _open(user)
        with con:
            return queries.failures(con, dt, access, examples)

    @app.get("/api/runs/{dag_id}/{run_id:path}")
    def run(
        user: User,
        dag_id: str,
        run_id: str,
        status: Annotated[str | None, Query(pattern="^(ok|failed)$")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        auth.require_dag_run_reader(user, dag_id)
        store = STORES.get()
        con = store.cursor()
        with con:
            return queries.run_files(con, dag_id, run_id, status, limit, offset)

    @app.get("/{rest:path}", include_in_schema=False)
    def unknown(rest: str, user: User) -> Response:
        raise HTTPException(404, "Not found")

    return app


def _open(user: Any) -> tuple[TranscriptStore, Any, queries.Access]:
    """The store, a cursor on its up-to-date cache, and the rows ``user`` may see (403 if none)."""
    auth.require_run_reader(user)
    store = STORES.get()
    con = store.cursor()
    return store, con, auth.access_of(user, store.dag_ids)


def _redact(url: str) -> str:
    """The dataset URL without any user or password in it."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        return urlunsplit(parts._replace(netloc=parts.hostname or ""))
    return url
