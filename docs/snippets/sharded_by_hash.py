"""A backlog spread over 16 task instances by a stable hash of each file's URL: no listing task,
no manifest, no file list in XCom (each shard lists the source and keeps its slice)."""

import pendulum
from airflow.sdk import DAG

from linkai_provider.operators.transcribe import TranscribeAudioOperator

SHARDS = 16

# --8<-- [start:shards]
with DAG(
    dag_id="transcribe_backlog_by_hash",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
):
    TranscribeAudioOperator.partial(
        task_id="transcribe",
        source="s3://my-bucket/calls/backlog/",
        destination="s3://my-bucket/transcripts/dt={{ (dag_run.logical_date or dag_run.run_after) | ds }}/",
        incremental_scope="s3://my-bucket/transcripts",  # skip files done on any earlier day
        source_conn_id="aws_default",
        destination_conn_id="aws_default",
        shard_count=SHARDS,
        max_concurrency=4,
    ).expand(shard_index=list(range(SHARDS)))
# --8<-- [end:shards]
