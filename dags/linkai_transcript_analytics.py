"""Analytics: whenever the transcript dataset changes, summarise the days that changed with DuckDB into Parquet."""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, Param, get_current_context, task

from linkai_provider import settings
from linkai_provider.analytics import SUMMARY_SQL
from linkai_provider.operators.transcribe import transcript_asset

# [linkai] transcripts_url (AIRFLOW__LINKAI__TRANSCRIPTS_URL), read at parse time: the Asset's URI.
TRANSCRIPTS_URL = settings.transcripts_url(default="file:///tmp/linkai-demo/transcripts")
# Beside the dataset, never inside it: the operator's incremental check takes every Parquet file under
# the dataset root for transcripts, and so would tools reading the dataset.
SUMMARY_URL = os.environ.get("LINKAI_SUMMARY_URL", TRANSCRIPTS_URL.rsplit("/", 1)[0] + "/transcript_summary").rstrip(
    "/"
)

TRANSCRIPTS = transcript_asset(TRANSCRIPTS_URL)
SUMMARY = Asset(SUMMARY_URL if "://" in SUMMARY_URL else "file://" + SUMMARY_URL)

DOC_MD = f"""
### LinkAI transcript analytics

Scheduled on the Asset `{TRANSCRIPTS.uri}`: it runs after every nightly or sharded run that wrote
transcripts. It keeps the **current transcript per file** (the latest row per `source_uri` by
`transcribed_at`, so a file that failed and later succeeded counts once, as ok) and writes one summary
row per day to `{SUMMARY_URL}/dt=<day>/summary.parquet` (rewritten each time the day changes):
`files`, `ok`, `failed`, `failure_reasons` (list of error type and file count), `words`,
`audio_seconds` (sum over files whose format has a readable duration; `files_with_duration` says how
many), `audio_seconds_billed` (the audio of every `ok` row written that day, re-transcriptions
included: what the API billed, so the cost per day is one query over the summary), `bytes`,
`attempt_rows`, first/last `transcribed_at`. A file counts for the day of its current row.

**Only what changed is recomputed.** The transcribing run's Asset event names the partitions it wrote
(`extra["partitions"]`); the run recomputes those days and the days holding earlier rows of the files
they hold (a file that failed on one day and was transcribed on a later one leaves the earlier day),
reading only the columns the summary needs (pyarrow through fsspec: on object stores, each part's
footer and those columns' byte ranges), and summarises them with DuckDB. Several events queued into
one run are recomputed together. A run with no such event (triggered by hand, or by a producer that
does not name partitions) recomputes every day, unless the param `partitions` names some (e.g.
`["dt=2026-11-28"]`). The XCom says which: `mode` is `incremental` or `full`, `days_written` lists the
days written.

Configuration: `[linkai] transcripts_url` (as the transcribing DAGs), `LINKAI_SUMMARY_URL`
(default: `transcript_summary` beside the dataset), and the storage connection from the param or
Variable `linkai_destination_conn_id`. Query the result directly, e.g.
`duckdb -c "SELECT * FROM read_parquet('{SUMMARY_URL}/*/*.parquet')"`.

The query (`linkai_provider.analytics.SUMMARY_SQL`), over the rows read as `transcript_rows`:

```sql
{SUMMARY_SQL.strip()}
```
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
        "partitions": Param(
            None,
            type=["null", "array"],
            description='Without a triggering event: the partitions to recompute (e.g. ["dt=2026-11-28"]); '
            "empty: every day",
        ),
    },
) as dag:

    @task(outlets=[SUMMARY])
    def summarize(conn_id: str) -> dict[str, Any]:
        import pyarrow.compute as pc

        from linkai_provider import analytics
        from linkai_provider.io.storage import is_local, resolve

        context = get_current_context()
        events = context["triggering_asset_events"].get(TRANSCRIPTS, [])
        written = analytics.partitions_of_events(events) if events else (context["params"]["partitions"] or None)
        fs, root = resolve(TRANSCRIPTS_URL, conn_id or None)
        plan = analytics.plan_recompute(fs, root, written)
        mode = "full" if plan.full else "incremental"
        print(f"{len(events)} triggering event(s), partitions written: {written}: {mode} recompute")
        if not plan.full:
            print(f"Days: {plan.days} ({len(plan.parts)} part(s); keys of {len(plan.others)} other part(s))")
        summary = analytics.summarize(fs, plan)
        if summary is None:
            print(f"No transcripts under {TRANSCRIPTS_URL} for these days")
            return {"mode": mode, "days": 0, "days_written": [], "partitions": written, "files": 0, "ok": 0,
                    "failed": 0, "words": 0}  # fmt: skip
        print(f"Summary of {len(plan.parts)} part file(s) under {TRANSCRIPTS_URL}:")
        print(summary.drop_columns(["generated_at", "first_transcribed_at", "failure_reasons"]).to_pandas())

        out_fs, out_root = resolve(SUMMARY_URL, conn_id or None)
        days = summary.column("dt").to_pylist()
        for day in days:
            # Hive layout: the day is the folder name, not a column in the file
            rows = summary.filter(pc.equal(summary["dt"], day)).drop_columns(["dt"])
            _write_parquet(out_fs, f"{out_root}/dt={day}/summary.parquet", rows, atomic=is_local(out_fs))
        totals = {key: int(sum(summary.column(key).to_pylist())) for key in ("files", "ok", "failed", "words")}
        return {"mode": mode, "days": len(days), "days_written": days, "partitions": written, **totals,
                "summary_url": SUMMARY_URL}  # fmt: skip

    summarize(conn_id="{{ params.destination_conn_id or var.value.get('linkai_destination_conn_id', '') }}")
