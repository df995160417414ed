"""What the page asks of the cache: search, days, a day's failures, a run's files.

Every value from a request is a bound parameter: a phrase full of quotes and SQL is only a string
DuckDB looks for (``contains``: no wildcards either). Every answer is bounded by ``limit`` and pages
with ``offset``. Rows are filtered to the DAGs the user may read (:class:`Access`) inside the query,
so counts and pages never include, or hint at, rows the user may not see.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

MAX_PHRASE = 200
SNIPPET_CHARS = 220
ISO = "%Y-%m-%dT%H:%M:%SZ"
DAY_RE = re.compile(r"^[0-9A-Za-z_.:+-]{1,40}$")  # a dt partition value, e.g. 2026-11-28


@dataclass(frozen=True)
class Access:
    """The rows a user may see: those of ``dag_ids`` (None: every DAG), and rows written outside any
    DAG (no ``dag_id``: the ``linkai-transcribe`` CLI, bulk loads) only if ``undagged``."""

    dag_ids: frozenset[str] | None
    undagged: bool

    def where(self, alias: str = "") -> tuple[str, dict[str, Any]]:
        col = f"{alias}.dag_id" if alias else "dag_id"
        if self.dag_ids is None:
            return ("TRUE" if self.undagged else f"{col} IS NOT NULL"), {}
        clause = f"({col} IN (SELECT unnest($acl_dags::VARCHAR[]))"
        clause += f" OR {col} IS NULL)" if self.undagged else ")"
        return clause, {"acl_dags": sorted(self.dag_ids)}


def normalize_phrase(q: str) -> str:
    """The phrase as searched: whitespace collapsed (transcripts have single spaces)."""
    phrase = " ".join(q.split())
    if not phrase:
        raise ValueError("q: give a word or phrase to look for")
    if len(phrase) > MAX_PHRASE:
        raise ValueError(f"q: at most {MAX_PHRASE} characters ({len(phrase)} given)")
    return phrase


class HitCache:
    """The ranked matches (row ids, newest first) of recent searches, for one version of the cache:
    the next page, or the same search by anyone with the same access, is read from here instead of
    scanning every transcript again. Bounded by entries and by row ids held."""

    def __init__(self, entries: int = 16, max_rids: int = 8_000_000) -> None:
        self._lock = threading.Lock()
        self._hits: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.entries = entries
        self.max_rids = max_rids

    def get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            hits = self._hits.get(key)
            if hits is not None:
                self._hits.move_to_end(key)
            return hits

    def put(self, key: tuple[Any, ...], hits: Any) -> None:
        with self._lock:
            self._hits[key] = hits
            while len(self._hits) > self.entries or sum(len(h) for h in self._hits.values()) > self.max_rids:
                if len(self._hits) == 1:
                    break
                self._hits.popitem(last=False)


def search(
    con: duckdb.DuckDBPyConnection,
    phrase: str,
    access: Access,
    limit: int,
    offset: int,
    cache: HitCache | None = None,
    version: Any = None,
) -> dict[str, Any]:
    """Files whose current transcript holds ``phrase`` (case-insensitive), newest first. The scan reads
    three narrow columns; the wide ones are read for the page's rows only."""
    acl, params = access.where()
    key = (version, phrase.lower(), access)
    hits = cache.get(key) if cache is not None else None
    if hits is None:
        sql = f"""
            SELECT rid FROM rows WHERE is_current AND contains(lt, lower($q)) AND {acl}
            ORDER BY transcribed_at DESC, rid DESC
        """
        hits = con.sql(sql, params={**params, "q": phrase}).to_arrow_table().column("rid")
        if cache is not None:
            cache.put(key, hits)
    page = hits.slice(offset, limit).to_pylist()
    found = {}
    if page:
        cols = "rid, source_uri, dt, status, dag_id, run_id, strftime(transcribed_at, $iso), text, segments"
        rows = con.execute(f"SELECT {cols} FROM rows WHERE rid = ANY($r)", {"r": page, "iso": ISO}).fetchall()
        found = {r[0]: r[1:] for r in rows}
    matches = []
    for rid in page:
        if rid not in found:  # its part was removed since the search: the next request searches anew
            continue
        uri, day, status, dag_id, run_id, at, text, segments = found[rid]
        where = locate(phrase, text or "", segments or [])
        matches.append(
            {
                "source_uri": uri,
                "dt": day,
                "status": status,
                **where,
                "dag_id": dag_id,
                "run_id": run_id,
                "transcribed_at": at,
            }
        )
    total = len(hits)
    return {"matches": matches, "total": total, "offset": offset, "next": _next(offset, len(page), total)}


def locate(phrase: str, text: str, segments: list[dict[str, Any]]) -> dict[str, Any]:
    """Where ``phrase`` was said: the first segment whose text holds it (its span and channel), and a
    snippet of the transcript around the first occurrence."""
    needle = phrase.lower()
    seg = next((s for s in segments if needle in (s.get("text") or "").lower()), None)
    pos = text.lower().find(needle)
    if seg is None and pos >= 0 and segments:
        # Said across two pieces: the piece where the phrase starts, by position in the joined text.
        seen = 0
        for s in segments:
            seen += len(s.get("text") or "") + 1
            if seen > pos:
                seg = s
                break
    return {
        "start_s": seg.get("start_s") if seg else None,
        "end_s": seg.get("end_s") if seg else None,
        "channel": seg.get("channel") if seg else None,
        "snippet": snippet(text, pos, len(phrase)),
    }


def snippet(text: str, pos: int, length: int, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around ``pos``, cut at spaces, with ellipses."""
    if pos < 0:
        return text[:width] + ("…" if len(text) > width else "")
    start = max(0, pos - (width - length) // 2)
    end = min(len(text), start + width)
    start = max(0, end - width)
    if start > 0:
        cut = text.find(" ", start, pos)
        start = cut + 1 if cut >= 0 else start
    if end < len(text):
        cut = text.rfind(" ", pos + length, end)
        end = cut if cut >= 0 else end
    return ("…" if start > 0 else "") + text[start:end] + ("…" if end < len(text) else "")


def days(con: duckdb.DuckDBPyConnection, access: Access, limit: int, offset: int) -> dict[str, Any]:
    """Per day (``dt``), newest first: files counted on the day of their current row, as the analytics
    DAG counts them; the audio billed is every ``ok`` row written that day, re-transcriptions included."""
    acl, params = access.where()
    sql = f"""
        SELECT dt,
               count(*) FILTER (WHERE is_current) AS files,
               count(*) FILTER (WHERE is_current AND status = 'ok') AS ok,
               count(*) FILTER (WHERE is_current AND status <> 'ok') AS failed,
               coalesce(sum(audio_duration_s) FILTER (WHERE status = 'ok'), 0) AS billed,
               count(*) AS attempts,
               count(*) OVER () AS total
        FROM rows WHERE {acl}
        GROUP BY dt ORDER BY dt DESC LIMIT $limit OFFSET $offset
    """
    found = con.execute(sql, {**params, "limit": limit, "offset": offset}).fetchall()
    total = int(found[0][-1]) if found else _count_days(con, acl, params)
    out = [
        {
            "dt": d,
            "files": int(files),
            "ok": int(ok),
            "failed": int(failed),
            "audio_seconds_billed": round(float(billed), 3),
            "attempts": int(attempts),
        }
        for d, files, ok, failed, billed, attempts, _ in found
    ]
    return {"days": out, "total": total, "offset": offset, "next": _next(offset, len(out), total)}


def _count_days(con: duckdb.DuckDBPyConnection, acl: str, params: dict[str, Any]) -> int:
    row = con.execute(f"SELECT count(DISTINCT dt) FROM rows WHERE {acl}", params).fetchone()
    return int(row[0]) if row else 0


def failures(con: duckdb.DuckDBPyConnection, day: str, access: Access, examples: int) -> dict[str, Any]:
    """Why the files of ``day`` failed: reasons (error type and code) with their file counts and a few
    example files and messages; and how many files that failed that day have succeeded since."""
    acl, params = access.where()
    sql = f"""
        SELECT coalesce(error_type, 'unknown'), error_code, count(*) AS files,
               list({{'source_uri': source_uri, 'error_message': error_message, 'dag_id': dag_id,
                      'run_id': run_id, 'transcribed_at': strftime(transcribed_at, '{ISO}')}}
                    ORDER BY transcribed_at DESC)[1:$examples]
        FROM rows WHERE dt = $dt AND is_current AND status <> 'ok' AND {acl}
        GROUP BY ALL ORDER BY files DESC, 1 LIMIT 100
    """
    found = con.execute(sql, {**params, "dt": day, "examples": examples}).fetchall()
    acl_f, _ = access.where("f")
    recovered = con.execute(
        f"""
        SELECT count(DISTINCT f.source_uri) FROM rows f
        JOIN rows c ON c.source_uri = f.source_uri AND c.is_current AND c.status = 'ok'
        WHERE f.dt = $dt AND f.status <> 'ok' AND {acl_f}
        """,
        {**params, "dt": day},
    ).fetchone()
    reasons = [
        {"error_type": et, "error_code": code, "files": int(n), "examples": list(ex)} for et, code, n, ex in found
    ]
    return {
        "dt": day,
        "failed": sum(r["files"] for r in reasons),
        "recovered": int(recovered[0]) if recovered else 0,
        "reasons": reasons,
    }


RUN_COLUMNS = (
    "source_uri",
    "dt",
    "status",
    "text",
    "error_type",
    "error_code",
    "error_message",
    "task_id",
    "map_index",
    "try_number",
    "attempts",
    "audio_format",
    "audio_duration_s",
    "chunks",
    "warnings",
    "is_current",
)


def run_files(
    con: duckdb.DuckDBPyConnection, dag_id: str, run_id: str, status: str | None, limit: int, offset: int
) -> dict[str, Any]:
    """Every file one DAG run wrote a row for (its last row in that run), failed ones first."""
    status_clause = "" if status is None else ("AND status = 'ok'" if status == "ok" else "AND status <> 'ok'")
    sql = f"""
        WITH latest AS MATERIALIZED (
            SELECT * FROM rows WHERE dag_id = $dag AND run_id = $run
            QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC, rid DESC) = 1
        )
        SELECT (SELECT count(*) FROM latest), (SELECT count(*) FROM latest WHERE status = 'ok'),
               {", ".join(f"l.{c}" for c in RUN_COLUMNS)}, strftime(l.transcribed_at, '{ISO}')
        FROM (SELECT 1) LEFT JOIN (
            SELECT * FROM latest WHERE TRUE {status_clause}
            ORDER BY status = 'ok', source_uri LIMIT $limit OFFSET $offset
        ) l ON TRUE
        ORDER BY l.status = 'ok', l.source_uri
    """
    found = con.execute(sql, {"dag": dag_id, "run": run_id, "limit": limit, "offset": offset}).fetchall()
    total, ok = (int(found[0][0]), int(found[0][1])) if found else (0, 0)
    files = [
        {**dict(zip(RUN_COLUMNS, r[2:-1], strict=True)), "transcribed_at": r[-1]} for r in found if r[2] is not None
    ]
    for f in files:
        f["current"] = f.pop("is_current")
    shown = total if status is None else (ok if status == "ok" else total - ok)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "files": files,
        "total": total,
        "ok": ok,
        "failed": total - ok,
        "offset": offset,
        "next": _next(offset, len(files), shown),
    }


def _next(offset: int, count: int, total: int) -> int | None:
    return offset + count if count and offset + count < total else None
