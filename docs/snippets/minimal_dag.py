"""Transcribe each day's audio drop in S3 into a Hive-partitioned Parquet dataset, and react to it."""

# --8<-- [start:producer]
import pendulum
from airflow.sdk import DAG, task

from linkai_provider.nightly import MACROS, nightly_timetable
from linkai_provider.operators.transcribe import TranscribeAudioOperator, transcript_asset

# The day a run covers, UTC: for the scheduled run due at midnight, the day that ended (not `{{ ds }}`,
# which Airflow 3's @daily sets to the day just starting); for a manual run, its logical date's day,
# or without one (Airflow 3's default) the day that ended before it was triggered.
DAY = "{{ run_day(dag_run) }}"
DESTINATION = f"s3://my-bucket/transcripts/dt={DAY}/"

with DAG(
    dag_id="transcribe_calls",
    schedule=nightly_timetable(),  # daily at 00:00 UTC, each run's data interval the day that ended
    user_defined_macros=MACROS,  # run_day
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    TranscribeAudioOperator(
        task_id="transcribe",
        source=f"s3://my-bucket/calls/{DAY}/",  # a folder, a glob, a file, or a list of them
        destination=DESTINATION,
        linkai_conn_id="linkai_default",
        source_conn_id="aws_default",
        destination_conn_id="aws_default",
        max_concurrency=8,
        extra_fields={"language": "en"},
    )
# --8<-- [end:producer]

# --8<-- [start:consumer]
# The operator updates Asset("s3://my-bucket/transcripts"): the destination cut before its first
# templated or dt=... segment, so every daily partition updates the one Asset. It adds an event only
# when it wrote rows (its outlet is an AssetAlias), so a rerun that sent nothing triggers nothing.
with DAG(
    dag_id="report_on_transcripts",
    schedule=[transcript_asset(DESTINATION)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):

    @task
    def report(triggering_asset_events=None):
        for asset, events in triggering_asset_events.items():
            print(asset.uri, "updated by", [(e.source_dag_id, e.source_run_id) for e in events])

    report()
# --8<-- [end:consumer]
