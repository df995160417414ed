"""A DAG for the operator's end-to-end tests: templated knobs come from ``params`` (run_conf), the
others from ``LINKAI_TEST_*`` environment variables read when the file is parsed."""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG

from linkai_provider.lineage import transcript_alias
from linkai_provider.operators.transcribe import TranscribeAudioOperator

env = os.environ.get

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
        "extra_fields": {},
        "incremental_scope": None,
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
        incremental_scope="{{ params.incremental_scope }}",
        max_concurrency=int(env("LINKAI_TEST_MAX_CONCURRENCY", "4")),
        max_file_size_bytes=int(env("LINKAI_TEST_MAX_FILE_SIZE", str(100 * 2**20))),
        fail_on_partial_error=env("LINKAI_TEST_FAIL_ON_PARTIAL", "1") == "1",
        fail_on_empty_source=env("LINKAI_TEST_FAIL_ON_EMPTY", "0") == "1",
        incremental=env("LINKAI_TEST_INCREMENTAL", "1") == "1",
        max_retries=int(env("LINKAI_TEST_MAX_RETRIES", "3")),
        max_upload_bytes=int(env("LINKAI_TEST_MAX_UPLOAD_BYTES", str(25 * 2**20))),
        max_chunk_seconds=float(env("LINKAI_TEST_MAX_CHUNK_SECONDS", "600")),
        dry_run=env("LINKAI_TEST_DRY_RUN", "0") == "1",
        max_files=int(env("LINKAI_TEST_MAX_FILES")) if env("LINKAI_TEST_MAX_FILES") else None,
        max_audio_seconds=float(env("LINKAI_TEST_MAX_AUDIO_S")) if env("LINKAI_TEST_MAX_AUDIO_S") else None,
        # LINKAI_TEST_OUTLET: the dataset root whose Asset the task updates (through its alias); unset: none
        outlets=[transcript_alias(env("LINKAI_TEST_OUTLET"))] if env("LINKAI_TEST_OUTLET") else [],
    )
