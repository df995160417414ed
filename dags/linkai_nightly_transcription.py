"""Nightly: transcribe the day's audio drop into the Hive-partitioned transcript dataset."""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param

from linkai_provider.lineage import transcript_alias, transcript_asset
from linkai_provider.operators.transcribe import TranscribeAudioOperator

# Read at parse time (by the dag-processor, and again by each worker): the dataset root is the Asset's URI,
# which must not change from run to run.
TRANSCRIPTS_URL = os.environ.get("LINKAI_TRANSCRIPTS_URL", "file:///tmp/linkai-demo/transcripts").rstrip("/")
# Jinja expressions, evaluated at run time: a trigger's params win, then the Variables, then the demo defaults.
AUDIO_ROOT = "var.value.get('linkai_audio_url', 'file:///tmp/linkai-demo/audio').rstrip('/')"
SOURCE_CONN = "params.source_conn_id or var.value.get('linkai_source_conn_id', '')"
DESTINATION_CONN = "params.destination_conn_id or var.value.get('linkai_destination_conn_id', '')"
# The run's day: its logical date, or for a run triggered without one (Airflow 3's default for manual runs)
# the day it was triggered (run_after, UTC). `ds` alone is undefined in such runs.
RUN_DAY = "((dag_run.logical_date or dag_run.run_after) | ds)"
SCHEDULE = os.environ.get("LINKAI_NIGHTLY_SCHEDULE", "@daily")
RETRIES = int(os.environ.get("LINKAI_TASK_RETRIES", "3"))

TRANSCRIPTS = transcript_asset(TRANSCRIPTS_URL)
ALIAS = transcript_alias(TRANSCRIPTS)

DOC_MD = f"""
### LinkAI nightly transcription

Every night, every audio file of the day's folder `<audio root>/<day>/` (the ten formats, any
depth) is sent to LinkAI and written as one row per file to the Parquet dataset
`{TRANSCRIPTS_URL}/dt=<day>/`. The day is the run's logical date; a manual run triggered without
one (the UI's and `airflow dags trigger`'s default in Airflow 3) uses the day it was triggered (UTC).
A rerun of the same day sends only the files without an `ok`
row (incremental), so retrying after an outage costs nothing for the files already done.
When it wrote rows, the task adds one event to the Asset `{TRANSCRIPTS.uri}` (through the
AssetAlias `{ALIAS.name}`), which schedules `linkai_transcript_analytics`; a run that wrote nothing
adds none.

#### Pointing it at a real bucket and a real LinkAI key
1. **LinkAI key**: a connection `linkai_default` of type `linkai`, e.g.
   `AIRFLOW_CONN_LINKAI_DEFAULT='{{"conn_type": "linkai", "host": "https://api.linkai.cloud",
   "password": "<your key>"}}'`
   (or Admin → Connections). The key is sent as a Bearer token and never logged.
2. **Audio**: the Variable `linkai_audio_url` (UI, or env `AIRFLOW_VAR_LINKAI_AUDIO_URL`), e.g.
   `s3://my-bucket/calls`; the DAG reads `s3://my-bucket/calls/<day>/`. Credentials: an `aws` (or
   `google_cloud_platform`) connection named by the Variable `linkai_source_conn_id`.
   A manual run can override both with the params `source` and `source_conn_id`.
3. **Transcripts**: the env var `LINKAI_TRANSCRIPTS_URL` on the dag-processor and every worker, the
   same value on all, e.g. `s3://my-bucket/transcripts` (read when the file is parsed, because it is
   the Asset's URI; a worker writing outside the Asset fails the task);
   credentials from the Variable `linkai_destination_conn_id` or the param `destination_conn_id`.

Other knobs (env, parse time): `LINKAI_NIGHTLY_SCHEDULE` (default `@daily`), `LINKAI_TASK_RETRIES`
(default 3; retries back off exponentially from 2 minutes, capped at 1 hour). A day whose folder does
not exist fails and is retried: late deliveries are picked up by the retries.

#### When files fail
A file LinkAI refuses (corrupt, too large, moderated) or that still fails after the hook's own retries
is written as a `failed` row with its reason, and the task fails *after* writing every row; each task
retry resends only the failed files. Fix or remove the file and clear the task, or pass
`fail_on_partial_error=False` to keep nights green and watch `failed` / `failure_reasons` in the
analytics summary instead (a failed task updates no Asset, so analytics waits for the next success).
Auth, credit and plan errors stop the batch at once and fail the task with LinkAI's message.
"""

with DAG(
    dag_id="linkai_nightly_transcription",
    description="Transcribe the day's audio folder with LinkAI into Parquet",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=DOC_MD,
    tags=["linkai", "example"],
    default_args={
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(hours=1),
    },
    params={
        "source": Param(
            None,
            type=["null", "string"],
            description="Audio URL (file, folder, prefix or glob); empty: <Variable linkai_audio_url>/<day>/",
        ),
        "source_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of the audio; empty: Variable"
        ),
        "destination_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of the transcripts; empty: Variable"
        ),
    },
) as dag:
    TranscribeAudioOperator(
        task_id="transcribe",
        source="{{ params.source or (" + AUDIO_ROOT + " ~ '/' ~ " + RUN_DAY + " ~ '/') }}",
        destination=TRANSCRIPTS_URL + "/dt={{ " + RUN_DAY + " }}/",
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        destination_conn_id="{{ " + DESTINATION_CONN + " }}",
        linkai_conn_id="linkai_default",
        max_concurrency=4,
        outlets=[ALIAS],  # one Asset event when rows were written, none otherwise
    )
