"""A DAG for the operator's end-to-end tests: every knob comes from ``params`` (set by run_conf)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset

from linkai_provider.operators.transcribe import TranscribeAudioOperator

with DAG(
    dag_id="linkai_test_transcribe",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "source": "/nonexistent",
        "destination": "/nonexistent-out",
        "source_conn_id": None,
        "destination_conn_id": None,
        "max_concurrency": 4,
        "extra_fields": {},
    },
    render_template_as_native_obj=True,
):
    TranscribeAudioOperator(
        task_id="transcribe",
        source="{{ params.source }}",
        destination="{{ params.destination }}",
        source_conn_id="{{ params.source_conn_id }}",
        destination_conn_id="{{ params.destination_conn_id }}",
        extra_fields="{{ params.extra_fields }}",
        max_concurrency=4,
        max_retries=3,
        outlets=[Asset("file:///linkai-test/transcripts")],
    )
