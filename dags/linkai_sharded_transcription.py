"""Sharded: list a large input once into a manifest, transcribe its shards in parallel task instances."""

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
from linkai_provider.operators.transcribe import TranscribeAudioOperator

# [linkai] transcripts_url (AIRFLOW__LINKAI__TRANSCRIPTS_URL), read at parse time: the Asset's URI.
TRANSCRIPTS_URL = settings.transcripts_url(default="file:///tmp/linkai-demo/transcripts")
# Jinja expressions, evaluated at run time: a trigger's params win, then the Variables, then the demo defaults.
AUDIO_ROOT = "var.value.get('linkai_audio_url', 'file:///tmp/linkai-demo/audio')"
SOURCE_CONN = "params.source_conn_id or var.value.get('linkai_source_conn_id', '')"
DESTINATION_CONN = "params.destination_conn_id or var.value.get('linkai_destination_conn_id', '')"
RETRIES = int(os.environ.get("LINKAI_TASK_RETRIES", "3"))
# The run's day: its logical date, or the day it was triggered (UTC) for a run without one.
RUN_DAY = "((dag_run.logical_date or dag_run.run_after) | ds)"
POOL = os.environ.get("LINKAI_POOL", "default_pool")
log = logging.getLogger("airflow.task")

TRANSCRIPTS = transcript_asset(TRANSCRIPTS_URL)
ALIAS = transcript_alias(TRANSCRIPTS)

DOC_MD = f"""
### LinkAI sharded transcription (backfills and large inputs)

`list_shards` lists the whole input once and writes a **manifest** (Parquet, one row group per
shard, `linkai_provider.sharding.write_manifest`) into the dataset's hidden folder
`{TRANSCRIPTS_URL}/_linkai/manifests/` (never read as data). `transcribe` is mapped over the shard
numbers (`TranscribeAudioOperator.partial(manifest=...).expand(shard_index=...)`): each shard is its
own task instance with its own retries, and reads only its own row group of the manifest. XCom carries
the manifest's URL, counts and the shards' summaries, never file names: about 0.5 KB per shard
whatever the number of files. Every shard writes its own part files (named by map index, try and a
random suffix) into the one dataset `{TRANSCRIPTS_URL}/dt=<day>/` (the run's logical date, or the day
it was triggered for a manual run without one), and skips files that already have an `ok` row
anywhere in the dataset (`incremental_scope` is the dataset root), so it can be rerun and it never
repeats the nightly DAG's work. `report` adds up the shards' summaries (also when some failed), adds
**one** event to the Asset `{TRANSCRIPTS.uri}` if the shards wrote rows (none after a rerun that sent
nothing), so `linkai_transcript_analytics` runs once per run, over all of it, and removes the manifest
once every shard succeeded (a failed shard's retry still needs it; older ones are swept after 7 days).
`all_shards_succeeded` fails the run if any shard failed.

Configuration is the nightly DAG's: Variable `linkai_audio_url` (default: the demo folder; here the
whole root, every day), Variables `linkai_source_conn_id` / `linkai_destination_conn_id`, env
`LINKAI_TRANSCRIPTS_URL`; params `source` and `shards` per run.

#### Outgrowing one machine (see the docs' "Scaling out" page)
* Each shard keeps up to `max_concurrency` requests in flight and adapts below it under 429s, down to
  less than one (one request, a pause, the next), so shards that together exceed the plan's
  concurrency limit slow down instead of failing. Total load on LinkAI is at most shards running at
  once x `max_concurrency`.
* With the **LocalExecutor** shards run as parallel processes on one host
  (`[core] parallelism`). With the **CeleryExecutor** or **KubernetesExecutor** the same DAG
  spreads shards over workers or pods unchanged: the operator keeps no local state, reads and writes
  object storage, and part names never collide.
* Cap concurrency with a **pool** (env `LINKAI_POOL`, e.g. `airflow pools set linkai 8 "LinkAI API"`)
  shared by every LinkAI DAG, and per run with `max_active_tis_per_dagrun`.
* One listing for the whole run: a million files are about 1,000 LIST calls and 300 MB of memory
  in `list_shards`; a shard's read of the manifest is a few range reads.
"""


def add_up(summaries: list[dict[str, Any] | None], shards: int) -> dict[str, Any]:
    """The summaries of the ``shards`` shards added up; a shard that failed returned none."""
    done = [s for s in summaries if s]
    keys = ("files_found", "transcribed", "skipped", "failed", "not_sent", "parts_written", "rows_written")
    total: dict[str, Any] = {key: sum(s.get(key) or 0 for s in done) for key in keys}
    # each shard rounds to milliseconds; their float sum would print as 66.00000000000001
    total["audio_seconds"] = round(sum(s.get("audio_seconds") or 0.0 for s in done), 3)
    total["shards"] = shards
    total["shards_reporting"] = len(done)
    return total


with DAG(
    dag_id="linkai_sharded_transcription",
    description="List a large audio input, split it into shards and transcribe them in parallel",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
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
            None, type=["null", "string"], description="Audio URL (folder, prefix, glob); empty: the Variable"
        ),
        "source_conn_id": Param(None, type=["null", "string"], description="Storage connection of the audio"),
        "destination_conn_id": Param(
            None, type=["null", "string"], description="Storage connection of the transcripts"
        ),
        "shards": Param(4, type="integer", minimum=1, maximum=1024, description="How many task instances"),
    },
) as dag:

    @task
    def list_shards(source: str, source_conn_id: str, destination_conn_id: str, shards: int) -> list[int]:
        """List the input once into a manifest of at most ``shards`` non-empty shards. Returns the shard
        numbers to map over; the manifest's URL and counts go to XCom key ``listing``."""
        from linkai_provider.sharding import manifest_url, sweep_manifests, write_manifest

        context = get_current_context()
        conn = destination_conn_id or None
        url = manifest_url(TRANSCRIPTS_URL, context["dag"].dag_id, context["run_id"])
        # fewer shards than asked when there are fewer audio files: no task with nothing to send
        listed = write_manifest(source, url, int(shards), source_conn_id=source_conn_id or None, manifest_conn_id=conn)
        swept = sweep_manifests(TRANSCRIPTS_URL, conn)
        print(
            f"{listed.audio_files} audio file(s) in {listed.shards} shard(s) of {listed.smallest_shard}-"
            f"{listed.largest_shard}; {listed.unsupported} not audio; manifest {listed.manifest} "
            f"({listed.bytes} bytes); {swept} old manifest(s) removed"
        )
        context["ti"].xcom_push(key="listing", value=listed.as_dict())
        return list(range(listed.shards))

    @task(trigger_rule="all_done", outlets=[ALIAS])
    def report(summaries: list[dict[str, Any]], destination_conn_id: str) -> dict[str, Any]:
        """The shards' summaries added up (a failed shard returns none: its rows are still in the dataset),
        the run's one Asset event if the shards wrote rows, and the manifest removed once every shard is done."""
        from linkai_provider.sharding import remove_manifest

        listed = get_current_context()["ti"].xcom_pull(task_ids="list_shards", key="listing")
        summaries = [summaries[i] for i in range(len(summaries))]  # one fetch each, no probing past the end
        total = add_up(summaries, listed["shards"])  # only the shards that succeeded return a summary
        print(f"All shards: {total}")
        emit_for_summaries([ALIAS], get_current_context(), summaries, log)
        if total["shards_reporting"] == total["shards"]:
            remove_manifest(listed["manifest"], destination_conn_id or None)
        return total

    @task
    def all_shards_succeeded(total: dict[str, Any]) -> None:
        """The run's leaf: a run whose shards failed ends failed (``report`` alone would end it green)."""
        missing = total["shards"] - total["shards_reporting"]
        if missing:
            raise AirflowFailException(
                f"{missing} of {total['shards']} shard(s) failed; their rows are in the dataset. "
                "Clear the failed transcribe instances to retry only their failed files."
            )

    shard_indices = list_shards(
        source="{{ params.source or " + AUDIO_ROOT + " }}",
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        destination_conn_id="{{ " + DESTINATION_CONN + " }}",
        shards="{{ params.shards }}",
    )
    transcribed = TranscribeAudioOperator.partial(
        task_id="transcribe",
        source="{{ params.source or " + AUDIO_ROOT + " }}",  # lineage; the files come from the manifest
        manifest="{{ ti.xcom_pull(task_ids='list_shards', key='listing')['manifest'] }}",
        destination=TRANSCRIPTS_URL + "/dt={{ " + RUN_DAY + " }}/",
        incremental_scope=TRANSCRIPTS_URL,
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        destination_conn_id="{{ " + DESTINATION_CONN + " }}",
        linkai_conn_id="linkai_default",
        max_concurrency=4,
        pool=POOL,
        max_active_tis_per_dagrun=8,
        outlets=[],  # no event per shard: report adds the run's one event
    ).expand(shard_index=shard_indices)
    all_shards_succeeded(report(transcribed.output, "{{ " + DESTINATION_CONN + " }}"))
