"""The Transcripts page's JSON API, as the api-server serves it: Airflow's own app with the plugin
mounted from the provider's entry point, Airflow's auth manager issuing and checking tokens, and the
dataset read by DuckDB from local disk and from S3 (moto server)."""

from __future__ import annotations

import datetime as dt
import json
import time

import jwt
import pytest

from tests.plugins import calls
from tests.plugins.calls import D1, D2, QUOTED, RUN1, RUN2, SALES, SUPPORT

PATHS = ("/linkai/", "/linkai/static/app.js", "/linkai/api/search?q=refund", "/linkai/api/days", "/linkai/api/status",
         f"/linkai/api/days/{D1}/failures", f"/linkai/api/runs/{SALES}/{RUN1}", "/linkai/no/such/path")  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return calls.write(tmp_path_factory.mktemp("calls") / "transcripts")


@pytest.fixture
def local(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW__LINKAI__TRANSCRIPTS_URL", f"file://{dataset}")
    monkeypatch.delenv("AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID", raising=False)
    monkeypatch.setenv("AIRFLOW__LINKAI__UI_CACHE_DIR", str(tmp_path / "cache"))
    return dataset


def get(client, path: str, token: str | None = None, **params):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get(path, params=params or None, headers=headers)


def ok(client, path: str, token: str, **params) -> dict:
    answer = get(client, path, token, **params)
    assert answer.status_code == 200, answer.text
    return answer.json()


# -- who may ask ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_every_path_refuses_a_request_without_a_token(airflow_app, local, path):
    answer = get(airflow_app, path)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    # the plugin answered (the api-server's own catch-all would serve its page with 200), and nothing else
    assert answer.json() == {"detail": "Not authenticated: log in to Airflow, or send an Airflow token as Bearer"}


def forged_tokens(real: str) -> dict[str, str]:
    claims = jwt.decode(real, options={"verify_signature": False})
    header = jwt.get_unverified_header(real)
    later = {**claims, "exp": int(time.time()) + 3600}
    other_secret = "not-the-deployment-secret-" + "0123456789abcdef" * 3
    return {
        "other secret": jwt.encode(later, other_secret, algorithm=header["alg"]),
        "unsigned": jwt.encode(later, key=None, algorithm="none"),
        "tampered role": real.rsplit(".", 2)[0]
        + "."
        + jwt.utils.base64url_encode(json.dumps({**claims, "sub": "admin", "role": "admin"}).encode()).decode()
        + "."
        + real.rsplit(".", 1)[1],
        "garbage": "not-a-jwt",
    }


@pytest.mark.parametrize("kind", ["other secret", "unsigned", "tampered role", "garbage"])
def test_a_forged_token_is_refused(airflow_app, tokens, local, kind):
    forged = forged_tokens(tokens["guest"])[kind]
    for path in ("/linkai/api/search?q=refund", "/linkai/"):
        answer = get(airflow_app, path, forged)
        assert answer.status_code == 401, (kind, answer.text)
        assert "refund" not in answer.text and "Invalid token" in answer.json()["detail"]
    airflow_app.cookies.set("_token", forged)
    try:
        assert airflow_app.get("/linkai/api/days").status_code == 401
    finally:
        airflow_app.cookies.clear()


def test_an_expired_token_is_refused(airflow_app, local):
    from airflow.api_fastapi.app import get_auth_manager

    manager = get_auth_manager()
    expired = manager.generate_jwt(manager.get_users()[0], expiration_time_in_seconds=-3600)
    answer = get(airflow_app, "/linkai/api/days", expired)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_the_ui_cookie_and_a_bearer_token_are_both_accepted(airflow_app, tokens, local):
    airflow_app.cookies.set("_token", tokens["admin"])  # what the UI's login sets
    try:
        page = airflow_app.get("/linkai/")
    finally:
        airflow_app.cookies.clear()
    assert page.status_code == 200 and "<title>Transcripts</title>" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    script = get(airflow_app, "/linkai/static/app.js", tokens["admin"])
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert get(airflow_app, "/linkai/static/../config.py", tokens["admin"]).status_code == 404
    unknown = get(airflow_app, "/linkai/no/such/path", tokens["admin"])
    assert unknown.status_code == 404 and unknown.json() == {"detail": "Not found"}


def test_a_user_who_may_not_read_dag_runs_gets_403(airflow_app, tokens, local):
    for path in PATHS[2:7]:
        answer = get(airflow_app, path, tokens["guest"])
        assert answer.status_code == 403, (path, answer.text)
        assert "refund" not in answer.text


def test_a_user_sees_only_the_dags_they_may_read(airflow_app, tokens, local):
    analyst = tokens["analyst"]
    found = ok(airflow_app, "/linkai/api/search", analyst, q="refund for my order")
    assert [m["source_uri"] for m in found["matches"]] == [calls.uri("call-a.wav")]  # not the note outside any DAG
    assert found["total"] == 1
    assert ok(airflow_app, "/linkai/api/search", analyst, q="charged twice")["total"] == 0  # support_calls
    days = ok(airflow_app, "/linkai/api/days", analyst)["days"]
    # call-b's current row is support_calls': the analyst sees its sales_calls attempt, not as current
    assert days == [{"dt": D1, "files": 2, "ok": 1, "failed": 1, "attempts": 3,
                     "audio_seconds_billed": calls.ok_seconds(calls.DAY1, {SALES})}]  # fmt: skip
    assert get(airflow_app, f"/linkai/api/runs/{SUPPORT}/{RUN2}", analyst).status_code == 403
    assert ok(airflow_app, f"/linkai/api/runs/{SALES}/{RUN1}", analyst)["total"] == 3


# -- what the page shows --------------------------------------------------------------------------------


def test_search_finds_the_file_the_day_and_the_minute(airflow_app, tokens, local):
    found = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="  Refund for MY order ")
    assert found["total"] == 2 and found["next"] is None
    by_uri = {m["source_uri"]: m for m in found["matches"]}
    call_a = by_uri[calls.uri("call-a.wav")]
    assert {k: call_a[k] for k in ("dt", "status", "start_s", "end_s", "channel", "dag_id", "run_id")} == {
        "dt": D1, "status": "ok", "start_s": 60.0, "end_s": 125.0, "channel": None, "dag_id": SALES, "run_id": RUN1,
    }  # fmt: skip
    assert "i would like a refund for my order please" in call_a["snippet"]
    assert by_uri[calls.uri("note-z.wav")]["dag_id"] is None  # admin may read every DAG: rows outside DAGs too
    # newest first
    assert [m["source_uri"] for m in found["matches"]] == [calls.uri("note-z.wav"), calls.uri("call-a.wav")]


def test_search_gives_the_channel_of_a_call_transcribed_per_channel(airflow_app, tokens, local):
    (match,) = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="charged twice")["matches"]
    assert (match["source_uri"], match["dt"], match["start_s"], match["end_s"], match["channel"]) == (
        calls.uri("call-d.wav"), D2, 125.0, 150.0, 1,
    )  # fmt: skip


def test_search_looks_only_at_each_files_current_transcript(airflow_app, tokens, local):
    # call-b failed on day 1 (no text) and was transcribed on day 2: found by its day-2 text, on day 2
    (match,) = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="never came")["matches"]
    assert (match["source_uri"], match["dt"]) == (calls.uri("call-b.wav"), D2)


@pytest.mark.parametrize(
    "phrase",
    [QUOTED, "'; DROP TABLE rows; --", '"100% sure"', "O'Brien_s", "%", "_", "' OR '1'='1", "\\", "$q", "?"],
)
def test_a_phrase_full_of_quotes_and_sql_is_only_data(airflow_app, tokens, local, phrase):
    found = ok(airflow_app, "/linkai/api/search", tokens["admin"], q=phrase)
    expect = [calls.uri("call-e.wav")] if phrase.lower() in QUOTED.lower() else []
    assert [m["source_uri"] for m in found["matches"]] == expect, phrase  # % and _ are no wildcards either
    # and the cache is whole afterwards
    assert ok(airflow_app, "/linkai/api/search", tokens["admin"], q="order status")["total"] == 25


def test_search_pages_through_every_match_once(airflow_app, tokens, local):
    seen, offset, totals = [], 0, set()
    while offset is not None:
        page = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="order status", limit=7, offset=offset)
        assert len(page["matches"]) <= 7
        totals.add(page["total"])
        seen += [m["source_uri"] for m in page["matches"]]
        offset = page["next"]
    assert totals == {25}
    assert sorted(seen) == sorted(calls.uri(f"bulk-{i:02d}.wav") for i in range(25))
    assert seen == [calls.uri(f"bulk-{i:02d}.wav") for i in reversed(range(25))]  # newest first, stable
    beyond = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="order status", offset=100)
    assert (beyond["matches"], beyond["total"], beyond["next"]) == ([], 25, None)


@pytest.mark.parametrize(
    ("params", "problem"),
    [({"q": ""}, "give a word"), ({"q": "   "}, "give a word"), ({"q": "x" * 201}, "at most 200"),
     ({"q": "a", "limit": 0}, "limit"), ({"q": "a", "limit": 201}, "limit"), ({"q": "a", "offset": -1}, "offset")],
)  # fmt: skip
def test_bounds_are_enforced_with_a_clear_error(airflow_app, tokens, local, params, problem):
    answer = get(airflow_app, "/linkai/api/search", tokens["admin"], **params)
    assert answer.status_code in (400, 422)
    assert problem in answer.text


def test_days_count_files_failures_and_audio_billed(airflow_app, tokens, local):
    days = ok(airflow_app, "/linkai/api/days", tokens["admin"])
    assert days["total"] == 2 and days["next"] is None
    assert days["days"] == [
        {"dt": D2, "files": 29, "ok": 28, "failed": 1, "attempts": 29,
         "audio_seconds_billed": round(calls.ok_seconds(calls.DAY2), 3)},
        {"dt": D1, "files": 3, "ok": 2, "failed": 1, "attempts": 4,
         "audio_seconds_billed": round(calls.ok_seconds(calls.DAY1), 3)},
    ]  # fmt: skip
    first = ok(airflow_app, "/linkai/api/days", tokens["admin"], limit=1)
    assert [d["dt"] for d in first["days"]] == [D2] and first["next"] == 1


def test_failures_of_a_day_with_reasons_examples_and_recoveries(airflow_app, tokens, local):
    day1 = ok(airflow_app, f"/linkai/api/days/{D1}/failures", tokens["admin"])
    assert (day1["failed"], day1["recovered"]) == (1, 1)  # call-b failed that day and succeeded on day 2
    (reason,) = day1["reasons"]
    assert (reason["error_type"], reason["error_code"], reason["files"]) == ("FileTooLargeError", 413, 1)
    assert reason["examples"][0]["source_uri"] == calls.uri("call-c.wav")
    assert reason["examples"][0]["run_id"] == RUN1
    day2 = ok(airflow_app, f"/linkai/api/days/{D2}/failures", tokens["admin"], examples=1)
    assert [(r["error_type"], r["files"], len(r["examples"])) for r in day2["reasons"]] == [("LinkAIServerError", 1, 1)]
    nothing = ok(airflow_app, "/linkai/api/days/2020-01-01/failures", tokens["admin"])
    assert nothing == {"dt": "2020-01-01", "failed": 0, "recovered": 0, "reasons": []}
    assert get(airflow_app, "/linkai/api/days/..%2F..%2Fetc/failures", tokens["admin"]).status_code in (400, 404)


def test_a_runs_files_failed_first_with_text_and_error(airflow_app, tokens, local):
    run = ok(airflow_app, f"/linkai/api/runs/{SALES}/{RUN1}", tokens["admin"])
    assert (run["total"], run["ok"], run["failed"], run["next"]) == (3, 1, 2, None)
    assert [(f["source_uri"].rsplit("/", 1)[1], f["status"], f["current"]) for f in run["files"]] == [
        ("call-b.wav", "failed", False),  # superseded by day 2's ok row
        ("call-c.wav", "failed", True),
        ("call-a.wav", "ok", True),
    ]
    assert run["files"][1]["error_message"] == "File is larger than max_file_size_bytes (104857600)"
    assert run["files"][2]["text"].startswith("hello thank you for calling")
    failed_only = ok(airflow_app, f"/linkai/api/runs/{SALES}/{RUN1}", tokens["admin"], status="failed")
    assert [f["status"] for f in failed_only["files"]] == ["failed", "failed"]
    paged = ok(airflow_app, f"/linkai/api/runs/{SUPPORT}/{RUN2}", tokens["admin"], limit=10, offset=20)
    assert (paged["total"], len(paged["files"]), paged["next"]) == (29, 9, None)
    missing = ok(airflow_app, f"/linkai/api/runs/{SALES}/no-such-run", tokens["admin"])
    assert (missing["total"], missing["files"]) == (0, [])


def test_new_and_removed_parts_show_on_the_next_request(airflow_app, tokens, local):
    again = local / "dt=2026-11-04" / "part-redo.parquet"
    redo = calls.row("call-a.wav", "2026-11-04", 1, SALES, "manual__redo", segments=[calls.seg(0, 9, "all sorted now")])
    calls.write_part(again, [redo])
    try:
        assert ok(airflow_app, "/linkai/api/search", tokens["admin"], q="all sorted now")["total"] == 1
        # call-a's current transcript is the new one: the old phrase is no longer its current text
        found = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="refund for my order")
        assert [m["source_uri"] for m in found["matches"]] == [calls.uri("note-z.wav")]
        assert ok(airflow_app, "/linkai/api/days", tokens["admin"])["days"][0]["dt"] == "2026-11-04"
    finally:
        again.unlink()
    assert ok(airflow_app, "/linkai/api/search", tokens["admin"], q="all sorted now")["total"] == 0
    assert ok(airflow_app, "/linkai/api/search", tokens["admin"], q="refund for my order")["total"] == 2


def test_an_unconfigured_dataset_says_what_to_set(airflow_app, tokens, monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW__LINKAI__TRANSCRIPTS_URL", raising=False)
    monkeypatch.delenv("LINKAI_TRANSCRIPTS_URL", raising=False)
    monkeypatch.setenv("AIRFLOW__LINKAI__UI_CACHE_DIR", str(tmp_path))
    answer = get(airflow_app, "/linkai/api/days", tokens["admin"])
    assert answer.status_code == 503
    assert "[linkai] transcripts_url" in answer.json()["detail"]


def test_the_cache_file_is_private(airflow_app, tokens, local, tmp_path):
    ok(airflow_app, "/linkai/api/days", tokens["admin"])
    (cache,) = (tmp_path / "cache").glob("*/cache.duckdb")
    assert cache.stat().st_mode & 0o077 == 0
    assert cache.parent.stat().st_mode & 0o077 == 0  # and its folder, where the log and spill files go


# -- the dataset on S3 ------------------------------------------------------------------------------------


def test_a_dataset_on_s3(airflow_app, tokens, dataset, moto_endpoint, s3fs_factory, monkeypatch, tmp_path):
    fs = s3fs_factory()
    fs.mkdir("ui-transcripts")
    fs.put(str(dataset), "ui-transcripts/calls", recursive=True)
    conn = {"conn_type": "generic", "extra": {"key": "testing", "secret": "testing",
                                               "client_kwargs": {"endpoint_url": moto_endpoint}}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_UI_S3", json.dumps(conn))
    monkeypatch.setenv("AIRFLOW__LINKAI__TRANSCRIPTS_URL", "s3://ui-transcripts/calls")
    monkeypatch.setenv("AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID", "ui_s3")
    monkeypatch.setenv("AIRFLOW__LINKAI__UI_CACHE_DIR", str(tmp_path / "cache"))
    admin = tokens["admin"]

    status = ok(airflow_app, "/linkai/api/status", admin)
    assert status["dataset"] == "s3://ui-transcripts/calls"
    assert status["last_refresh"]["parts_added"] == 3 and status["last_refresh"]["rows_added"] == 33
    (match,) = ok(airflow_app, "/linkai/api/search", admin, q="charged twice")["matches"]
    assert (match["source_uri"], match["start_s"], match["channel"]) == (calls.uri("call-d.wav"), 125.0, 1)
    assert [d["files"] for d in ok(airflow_app, "/linkai/api/days", admin)["days"]] == [29, 3]
    assert ok(airflow_app, f"/linkai/api/runs/{SALES}/{RUN1}", admin)["failed"] == 2
    # a new part in the bucket shows on the next request
    fs.pipe(
        "ui-transcripts/calls/dt=2026-11-05/part-late.parquet",
        _parquet([calls.row("late.wav", "2026-11-05", 0, SUPPORT, "late", segments=[calls.seg(0, 5, "late call")])]),
    )
    assert ok(airflow_app, "/linkai/api/search", admin, q="late call")["matches"][0]["dt"] == "2026-11-05"


def _parquet(rows: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from linkai_provider.dataset import SCHEMA

    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), sink)
    return sink.getvalue().to_pybytes()


def test_timestamps_are_utc(airflow_app, tokens, local):
    (match,) = ok(airflow_app, "/linkai/api/search", tokens["admin"], q="charged twice")["matches"]
    assert match["transcribed_at"] == (dt.datetime(2026, 11, 3, 2, 2)).strftime("%Y-%m-%dT%H:%M:%SZ")
