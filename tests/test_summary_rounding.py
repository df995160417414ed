"""Audio seconds in every summary print to the millisecond: a float sum of durations printed as
5806.494124999999 in a run's summary (issue 19). Covered here: the operator's and the CLI's summary
(``planning.summarize``), the dry-run report, and the analytics DAG's daily summary (its SQL run by
DuckDB). The sharded DAG's ``add_up`` has its own test in ``tests/dags_examples``; the nightly DAG's
``report`` rounds the same way."""

from __future__ import annotations

import runpy
from pathlib import Path

import duckdb
import pyarrow as pa

from linkai_provider.io.sources import AudioFile, Listing
from linkai_provider.pipeline import BatchResult
from linkai_provider.planning import Plan, dry_run_report, summarize

REPO = Path(__file__).resolve().parent.parent
# three recordings' durations whose float sum is not what a person would write down
DURATIONS = (0.1, 0.2, 5806.194125)


def noisy_sum() -> float:
    total = 0.0
    for seconds in DURATIONS:  # as the pipeline adds each ok row's duration
        total += seconds
    return total


def decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text else 0


def test_the_sum_is_noisy_without_rounding():
    assert decimals(noisy_sum()) > 3, noisy_sum()  # else the tests below would prove nothing


def test_run_and_dry_run_summaries_round_to_milliseconds():
    files = [AudioFile(uri=f"file:///in/{i}.wav", path=f"/in/{i}.wav", size=10, fingerprint=str(i),
                       audio_format="wav", fs=None) for i in range(3)]  # fmt: skip
    plan = Plan(
        Listing(files=files, unsupported=[]),
        todo=files,
        durations=dict(zip([f.uri for f in files], DURATIONS, strict=True)),
    )
    summary = summarize(plan, BatchResult(total=3, ok=3, audio_seconds=noisy_sum()), "file:///out")
    assert summary["audio_seconds"] == round(noisy_sum(), 3) and decimals(summary["audio_seconds"]) <= 3
    assert decimals(plan.audio_seconds) > 3
    report = dry_run_report(plan, max_upload_bytes=2**20, max_chunk_seconds=600, split=True)
    assert report["would_send_audio_seconds"] == round(plan.audio_seconds, 3)
    assert decimals(report["would_send_audio_seconds"]) <= 3


def test_analytics_daily_summary_rounds_to_milliseconds():
    """The analytics DAG's SQL as it runs in the DAG, over rows whose durations add up noisily."""
    sql = runpy.run_path(str(REPO / "dags" / "linkai_transcript_analytics.py"))["SUMMARY_SQL"]
    n = len(DURATIONS)
    rows = pa.table(
        {
            "filename": [f"/lake/transcripts/dt=2026-11-28/part-{i}.parquet" for i in range(n)],
            "source_uri": [f"file:///in/{i}.wav" for i in range(n)],
            "status": ["ok"] * n,
            "text": ["hello"] * n,
            "error_type": [None] * n,
            "audio_duration_s": list(DURATIONS),
            "source_size_bytes": [10] * n,
            "transcribed_at": pa.array([1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="UTC")),
        }
    )
    con = duckdb.connect()
    con.register("transcript_rows", rows)
    assert decimals(con.sql("SELECT sum(audio_duration_s) FROM transcript_rows").fetchall()[0][0]) > 3
    (seconds, billed), *_ = con.sql(f"SELECT audio_seconds, audio_seconds_billed FROM ({sql})").fetchall()
    assert seconds == billed == round(sum(DURATIONS), 3)
    assert repr(seconds) == "5806.494"
