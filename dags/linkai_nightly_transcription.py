"""Nightly: transcribe the audio of the day that ended into the Hive-partitioned transcript dataset."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from linkai_provider import settings
from linkai_provider.lineage import emit_for_summaries, transcript_alias, transcript_asset
from linkai_provider.nightly import DEFAULT_CRON, lookback, nightly_timetable, run_day
from linkai_provider.operators.transcribe import TranscribeAudioOperator

# Read at parse time (by the dag-processor, and again by each worker): the dataset root is the Asset's URI,
# which must not change from run to run. [linkai] transcripts_url (AIRFLOW__LINKAI__TRANSCRIPTS_URL).
TRANSCRIPTS_URL = settings.transcripts_url(default="file:///tmp/linkai-demo/transcripts")
TRANSCRIPTS_CONN = settings.transcripts_conn_id()
# Jinja expressions, evaluated at run time: a trigger's params win, then the Variables, then the demo defaults.
AUDIO_ROOT = "var.value.get('linkai_audio_url', 'file:///tmp/linkai-demo/audio')"
SOURCE_CONN = "params.source_conn_id or var.value.get('linkai_source_conn_id', '')"
DESTINATION_CONN = "params.destination_conn_id or var.value.get('linkai_destination_conn_id', '') or " + repr(
    TRANSCRIPTS_CONN or ""
)
SCHEDULE = os.environ.get("LINKAI_NIGHTLY_SCHEDULE", DEFAULT_CRON)
LOOKBACK_DAYS = int(os.environ.get("LINKAI_LOOKBACK_DAYS", "3"))
RETRIES = int(os.environ.get("LINKAI_TASK_RETRIES", "3"))
log = logging.getLogger("airflow.task")

TRANSCRIPTS = transcript_asset(TRANSCRIPTS_URL)
ALIAS = transcript_alias(TRANSCRIPTS)

DOC_MD = f"""
### LinkAI nightly transcription

Every night, right after a day ends (cron `{SCHEDULE}`, UTC), the audio files of **the day that
ended**, `<audio root>/<day>/` (the ten formats, any depth), are sent to LinkAI and written as one row
per file to the Parquet dataset `{TRANSCRIPTS_URL}/dt=<day>/`.

| run | day it reads and files under (UTC) |
| --- | --- |
| scheduled (due at 00:00 on the 29th), or a backfill | the day that ended: the 28th (the run's data interval) |
| manual, with the param `day` | that day |
| manual, with a logical date | the logical date's day |
| manual, without a logical date (Airflow 3's default) | the day that ended before it was triggered |

**Late files are not lost.** Each run also looks back over the `lookback_days - 1` days before its day
(param, default {LOOKBACK_DAYS}): a file that lands in a day's folder after that night's run is sent by
the next run, and filed under its own day. The incremental check covers the whole dataset
(`incremental_scope` is the root), so a file already transcribed on any day is never sent again: the
days looked back over cost a listing, not credits.

The day's own folder must exist (a day with no folder fails and is retried, so a delivery a little
late is picked up by the retries); the earlier days' folders are read when they exist.

When rows were written, `report` adds one event to the Asset `{TRANSCRIPTS.uri}` (through the
AssetAlias `{ALIAS.name}`), naming the partitions written, which schedules
`linkai_transcript_analytics`; a run that wrote nothing adds none. `all_days_succeeded` fails the run
if a day's task failed (after its rows were written).

#### Pointing it at a real bucket and a real LinkAI key
1. **LinkAI key**: a connection `linkai_default` of type `linkai`, e.g.
   `AIRFLOW_CONN_LINKAI_DEFAULT='{{"conn_type": "linkai", "host": "https://api.linkai.cloud",
   "password": "<your key>"}}'`
   (or Admin → Connections). The key is sent as a Bearer token and never logged.
2. **Audio**: the Variable `linkai_audio_url` (UI, or env `AIRFLOW_VAR_LINKAI_AUDIO_URL`), e.g.
   `s3://my-bucket/calls`; the DAG reads `s3://my-bucket/calls/<day>/`. Credentials: an `aws` (or
   `google_cloud_platform`) connection named by the Variable `linkai_source_conn_id`.
   A manual run can override both with the params `source` and `source_conn_id`.
3. **Transcripts**: `[linkai] transcripts_url` (env `AIRFLOW__LINKAI__TRANSCRIPTS_URL`) on the
   dag-processor and every worker, the same value on all, e.g. `s3://my-bucket/transcripts` (read when
   the file is parsed, because it is the Asset's URI; a worker writing outside the Asset fails the task);
   credentials from `[linkai] transcripts_conn_id`, or the Variable `linkai_destination_conn_id`, or the
   param `destination_conn_id`.

Other knobs (env, parse time): `LINKAI_NIGHTLY_SCHEDULE` (cron, default `{DEFAULT_CRON}`: midnight
UTC), `LINKAI_LOOKBACK_DAYS` (default 3), `LINKAI_TASK_RETRIES` (default 3; retries back off
exponentially from 2 minutes, capped at 1 hour).

#### When files fail
A file LinkAI refuses (corrupt, too large, moderated) or that still fails after the hook's own retries
is written as a `failed` row with its reason, and the day's task fails *after* writing every row; each
task retry resends only the failed files, and so does the next night's run while the day is in its
lookback. Fix or remove the file and clear the task, or pass `fail_on_partial_error=False` to keep
nights green and watch `failed` / `failure_reasons` in the analytics summary instead.
Auth, credit and plan errors stop the batch at once and fail the task with LinkAI's message.
"""

with DAG(
    dag_id="linkai_nightly_transcription",
    description="Transcribe the audio of the day that ended with LinkAI into Parquet",
    schedule=nightly_timetable(SCHEDULE),
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
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            description="The day to transcribe (YYYY-MM-DD); empty: the day that ended (see the DAG docs)",
        ),
        "lookback_days": Param(
            LOOKBACK_DAYS,
            type="integer",
            minimum=1,
            maximum=31,
            description="The day and the days before it that are read for files not yet transcribed",
        ),
        "source": Param(
            None,
            type=["null", "string"],
            description="Audio URL (file, folder, prefix or glob) instead of <Variable linkai_audio_url>/<day>/",
        ),
        "source_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of the audio; empty: Variable"
        ),
        "destination_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of the transcripts; empty: Variable"
        ),
    },
) as dag:

    @task
    def plan_days(
        audio_root: str, source: str | None, source_conn_id: str, day: str | None, lookback_days: int
    ) -> list[dict[str, str]]:
        """One ``transcribe`` instance per day: the run's day (its folder must exist), and the days
        before it whose folders exist."""
        from linkai_provider.io.sources import SourceNotFoundError
        from linkai_provider.io.storage import resolve

        covered = run_day(get_current_context()["dag_run"], day)
        destination = f"{TRANSCRIPTS_URL}/dt={covered:%Y-%m-%d}/"
        if source:  # a manual run's own input, filed under the run's day
            print(f"Day {covered}: {source} (param source)")
            return [{"source": source, "destination": destination}]
        root = audio_root.rstrip("/")
        fs, _ = resolve(root, source_conn_id or None)
        days = []
        for n, when in enumerate(lookback(covered, int(lookback_days))):
            folder = f"{root}/{when:%Y-%m-%d}/"
            if fs.exists(resolve(folder, source_conn_id or None)[1]):
                days.append({"source": folder, "destination": f"{TRANSCRIPTS_URL}/dt={when:%Y-%m-%d}/"})
            elif n == 0:
                raise SourceNotFoundError(
                    f"the day's folder {folder} does not exist (yet): nothing delivered for {covered}? "
                    "The task is retried; a folder that appears later is also read by the next nights' runs."
                )
        print(f"Day {covered}; reading {', '.join(d['source'] for d in days)}")
        return days

    @task(trigger_rule="all_done", outlets=[ALIAS])
    def report(summaries: list[dict[str, Any] | None], days: list[dict[str, str]] | None) -> dict[str, Any]:
        """The days' summaries added up (a failed day returns none: its rows are still in the dataset),
        and the run's one Asset event if they wrote rows."""
        if days is None:
            raise AirflowFailException("plan_days failed: no day was read (see its log)")
        summaries = [summaries[i] for i in range(len(summaries))]  # one fetch each, no probing past the end
        done = [s for s in summaries if s]
        keys = ("files_found", "transcribed", "skipped", "skipped_existing", "failed", "held_back", "rows_written")
        total: dict[str, Any] = {key: sum(int(s.get(key) or 0) for s in done) for key in keys}
        total["audio_seconds"] = round(sum(float(s.get("audio_seconds") or 0.0) for s in done), 3)
        total["days"] = len(days)
        total["days_reporting"] = len(done)
        total["destinations"] = [s.get("destination") for s in done]
        print(f"All days: {total}")
        emit_for_summaries([ALIAS], get_current_context(), summaries, log)
        return total

    @task
    def all_days_succeeded(total: dict[str, Any]) -> None:
        """The run's leaf: a run whose days failed ends failed (``report`` alone would end it green)."""
        missing = total["days"] - total["days_reporting"]
        if missing:
            raise AirflowFailException(
                f"{missing} of {total['days']} day(s) failed; their rows are in the dataset. "
                "Clear the failed transcribe instances to retry only their failed files."
            )

    days = plan_days(
        audio_root="{{ " + AUDIO_ROOT + " }}",
        source="{{ params.source or '' }}",
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        day="{{ params.day or '' }}",
        lookback_days="{{ params.lookback_days }}",
    )
    transcribed = TranscribeAudioOperator.partial(
        task_id="transcribe",
        # every day already transcribed anywhere in the dataset is skipped: a late file goes once
        incremental_scope=TRANSCRIPTS_URL,
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        destination_conn_id="{{ " + DESTINATION_CONN + " }}",
        linkai_conn_id="linkai_default",
        max_concurrency=4,
        outlets=[],  # no event per day: report adds the run's one event
    ).expand_kwargs(days)
    all_days_succeeded(report(transcribed.output, days))
