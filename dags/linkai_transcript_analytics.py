"""Analytics: whenever the transcript dataset changes, summarise it per day with DuckDB into Parquet."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from linkai_provider import settings
from linkai_provider.operators.transcribe import transcript_asset

# [linkai] transcripts_url (AIRFLOW__LINKAI__TRANSCRIPTS_URL), read at parse time: the Asset's URI.
TRANSCRIPTS_URL = settings.transcripts_url(default="file:///tmp/linkai-demo/transcripts")
# Beside the dataset, never inside it: the operator's incremental check reads every Parquet file
# under the dataset root, and tools reading the dataset would mistake summaries for transcripts.
SUMMARY_URL = os.environ.get("LINKAI_SUMMARY_URL", TRANSCRIPTS_URL.rsplit("/", 1)[0] + "/transcript_summary").rstrip(
    "/"
)

TRANSCRIPTS = transcript_asset(TRANSCRIPTS_URL)
SUMMARY = Asset(SUMMARY_URL if "://" in SUMMARY_URL else "file://" + SUMMARY_URL)

# One row per file: its latest attempt wins ("current transcript per file"); the file counts for the
# day (dt partition) of that row. Days whose files all moved on still get a row, with zeros.
SUMMARY_SQL = """
WITH rows AS (
    SELECT *, coalesce(nullif(regexp_extract(filename, '/dt=([^/]+)/', 1), ''), 'none') AS dt
    FROM transcript_rows
),
current AS (
    SELECT * FROM rows
    QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC, filename DESC) = 1
),
per_day AS (
    SELECT
        dt,
        count(*) AS files,
        count(*) FILTER (WHERE status = 'ok') AS ok,
        count(*) FILTER (WHERE status <> 'ok') AS failed,
        sum(CASE WHEN status = 'ok' AND trim(coalesce(text, '')) <> ''
                 THEN len(regexp_split_to_array(trim(text), '\\s+')) ELSE 0 END) AS words,
        sum(audio_duration_s) AS audio_seconds,
        count(audio_duration_s) AS files_with_duration,
        sum(source_size_bytes) AS bytes
    FROM current GROUP BY dt
),
reasons AS (
    SELECT dt, list({'error_type': error_type, 'files': n} ORDER BY n DESC, error_type) AS failure_reasons
    FROM (
        SELECT dt, coalesce(error_type, 'unknown') AS error_type, count(*) AS n
        FROM current WHERE status <> 'ok' GROUP BY ALL
    ) GROUP BY dt
),
attempts AS (
    SELECT dt, count(*) AS attempt_rows, min(transcribed_at) AS first_transcribed_at,
           max(transcribed_at) AS last_transcribed_at,
           -- what the API billed: every ok row's audio, re-transcriptions included
           sum(audio_duration_s) FILTER (WHERE status = 'ok') AS audio_seconds_billed
    FROM rows GROUP BY dt
)
SELECT
    a.dt,
    coalesce(d.files, 0)::BIGINT AS files,
    coalesce(d.ok, 0)::BIGINT AS ok,
    coalesce(d.failed, 0)::BIGINT AS failed,
    coalesce(r.failure_reasons, []) AS failure_reasons,
    coalesce(d.words, 0)::BIGINT AS words,
    -- milliseconds: a float sum prints as 5806.494124999999
    round(d.audio_seconds, 3)::DOUBLE AS audio_seconds,
    coalesce(d.files_with_duration, 0)::BIGINT AS files_with_duration,
    coalesce(d.bytes, 0)::BIGINT AS bytes,
    round(coalesce(a.audio_seconds_billed, 0), 3)::DOUBLE AS audio_seconds_billed,
    a.attempt_rows::BIGINT AS attempt_rows,
    a.first_transcribed_at,
    a.last_transcribed_at,
    now() AS generated_at
FROM attempts a
LEFT JOIN per_day d USING (dt)
LEFT JOIN reasons r USING (dt)
ORDER BY a.dt
"""

DOC_MD = f"""
### LinkAI transcript analytics

Scheduled on the Asset `{TRANSCRIPTS.uri}`: it runs after every nightly or sharded run that wrote
transcripts. It reads the whole dataset with DuckDB (remote stores through fsspec:
`con.register_filesystem(fs)`), keeps the **current transcript per file** (the latest row per
`source_uri` by `transcribed_at`, so a file that failed and later succeeded counts once, as ok) and
writes one summary row per day to `{SUMMARY_URL}/dt=<day>/summary.parquet` (rewritten each run):
`files`, `ok`, `failed`, `failure_reasons` (list of error type and file count), `words`,
`audio_seconds` (sum over files whose format has a readable duration; `files_with_duration` says how
many), `audio_seconds_billed` (the audio of every `ok` row written that day, re-transcriptions
included: what the API billed, so the cost per day is one query over the summary), `bytes`,
`attempt_rows`, first/last `transcribed_at`. A file counts for the day of its current row.

Configuration: env `LINKAI_TRANSCRIPTS_URL` (as the transcribing DAGs), `LINKAI_SUMMARY_URL`
(default: `transcript_summary` beside the dataset), and the storage connection from the param or
Variable `linkai_destination_conn_id`. Query the result directly, e.g.
`duckdb -c "SELECT * FROM read_parquet('{SUMMARY_URL}/*/*.parquet')"`.
"""


def _write_parquet(fs: Any, path: str, table: Any, *, atomic: bool) -> None:
    import uuid

    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    folder = path.rsplit("/", 1)[0]
    fs.makedirs(folder, exist_ok=True)
    if atomic:  # readers never see half a file: write aside, then rename over the old summary
        tmp = f"{folder}/.summary-{uuid.uuid4().hex[:8]}.tmp"
        fs.pipe_file(tmp, data)
        fs.mv(tmp, path)
    else:  # one PUT on object stores
        fs.pipe_file(path, data)


with DAG(
    dag_id="linkai_transcript_analytics",
    description="Daily transcript summary (DuckDB) beside the transcript dataset",
    schedule=[TRANSCRIPTS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["linkai", "example"],
    params={
        "destination_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of transcripts and summary; empty: Variable"
        ),
    },
) as dag:

    @task(outlets=[SUMMARY])
    def summarize(conn_id: str) -> dict[str, Any]:
        import duckdb
        import pyarrow.compute as pc

        from linkai_provider.dataset import part_files
        from linkai_provider.io.storage import is_local, resolve

        fs, root = resolve(TRANSCRIPTS_URL, conn_id or None)
        files = part_files(fs, root)  # visible parts only: never a half-written or hidden temporary file
        if not files:
            print(f"No transcripts under {TRANSCRIPTS_URL} yet")
            return {"days": 0, "files": 0, "ok": 0, "failed": 0, "words": 0}
        con = duckdb.connect()
        # No extension downloads: remote files go through the same fsspec filesystem the operator uses.
        con.execute("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false")
        if not is_local(fs):
            con.register_filesystem(fs)
            files = [fs.unstrip_protocol(path) for path in files]
        con.read_parquet(files, filename=True, hive_partitioning=False).create_view("transcript_rows")
        result = con.sql(SUMMARY_SQL).arrow()  # a Table before DuckDB 1.4, a RecordBatchReader since
        summary = result.read_all() if hasattr(result, "read_all") else result
        print(f"Summary of {len(files)} part file(s) under {TRANSCRIPTS_URL}:")
        print(con.sql("SELECT * EXCLUDE (generated_at, first_transcribed_at) FROM summary"))

        out_fs, out_root = resolve(SUMMARY_URL, conn_id or None)
        for day in summary.column("dt").to_pylist():
            # Hive layout: the day is the folder name, not a column in the file
            rows = summary.filter(pc.equal(summary["dt"], day)).drop_columns(["dt"])
            _write_parquet(out_fs, f"{out_root}/dt={day}/summary.parquet", rows, atomic=is_local(out_fs))
        totals = {key: int(sum(summary.column(key).to_pylist())) for key in ("files", "ok", "failed", "words")}
        return {"days": summary.num_rows, **totals, "summary_url": SUMMARY_URL}

    summarize(conn_id="{{ params.destination_conn_id or var.value.get('linkai_destination_conn_id', '') }}")
