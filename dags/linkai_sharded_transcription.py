"""Sharded: list a large input once, split it into shards, transcribe the shards in parallel task instances."""

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

`list_shards` lists the whole input once (`linkai_provider.io.sources.list_audio`) and deals the
audio files into `shards` lists; `transcribe` is mapped over them
(`TranscribeAudioOperator.partial(...).expand(source=...)`), so each shard is its own task
instance with its own retries. Every shard writes its own part files (named by map index, try and
a random suffix) into the one dataset `{TRANSCRIPTS_URL}/dt=<day>/` (the run's logical date, or the
day it was triggered for a manual run without one), and skips files that already
have an `ok` row anywhere in the dataset (`incremental_scope` is the dataset root), so it can be
rerun and it never repeats the nightly DAG's work. `report` adds up the shards' summaries (also
when some failed) and adds **one** event to the Asset `{TRANSCRIPTS.uri}` if the shards wrote rows
(none after a rerun that sent nothing), so `linkai_transcript_analytics` runs once per run, over
all of it. `all_shards_succeeded` fails the run if any shard failed.

Configuration is the nightly DAG's: Variable `linkai_audio_url` (default: the demo folder; here the
whole root, every day), Variables `linkai_source_conn_id` / `linkai_destination_conn_id`, env
`LINKAI_TRANSCRIPTS_URL`; params `source` and `shards` per run.

#### Outgrowing one machine
* Each shard keeps `max_concurrency` requests in flight; total load on LinkAI is
  shards running at once x `max_concurrency`. Keep it under your plan's rate limit (429s are
  retried with backoff, but they waste time).
* With the **LocalExecutor** shards run as parallel processes on one host
  (`[core] parallelism`). With the **CeleryExecutor** or **KubernetesExecutor** the same DAG
  spreads shards over workers or pods unchanged: the operator keeps no local state, reads and writes
  object storage, and part names never collide.
* Cap concurrency with a **pool** (env `LINKAI_POOL`, e.g. `airflow pools set linkai 8 "LinkAI API"`)
  shared by every LinkAI DAG, and per run with `max_active_tis_per_dagrun`.
* Shard lists travel through XCom: up to some 10,000 URLs per run is fine on the metadata DB;
  beyond that, shard by prefix (one folder per shard) or use an object-storage XCom backend.
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
    def list_shards(source: str, source_conn_id: str, shards: int) -> list[list[str]]:
        """Deal the input's audio files round-robin into at most ``shards`` non-empty lists."""
        from linkai_provider.io.sources import list_audio

        listing = list_audio(source, source_conn_id or None)
        uris = [f.uri for f in listing.files]
        count = max(1, min(int(shards), len(uris)))
        split = [uris[i::count] for i in range(count) if uris[i::count]]
        print(f"{len(uris)} audio file(s) in {len(split)} shard(s); {len(listing.unsupported)} not audio")
        return split

    @task(trigger_rule="all_done", outlets=[ALIAS])
    def report(summaries: list[dict[str, Any]], shard_lists: list[list[str]]) -> dict[str, Any]:
        """The shards' summaries added up (a failed shard returns none: its rows are still in the dataset),
        and the run's one Asset event if the shards wrote rows."""
        summaries = [summaries[i] for i in range(len(summaries))]  # one fetch each, no probing past the end
        total = add_up(summaries, len(shard_lists))  # only the shards that succeeded return a summary
        print(f"All shards: {total}")
        emit_for_summaries([ALIAS], get_current_context(), summaries, log)
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

    shards = list_shards(
        source="{{ params.source or " + AUDIO_ROOT + " }}",
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        shards="{{ params.shards }}",
    )
    transcribed = TranscribeAudioOperator.partial(
        task_id="transcribe",
        destination=TRANSCRIPTS_URL + "/dt={{ " + RUN_DAY + " }}/",
        incremental_scope=TRANSCRIPTS_URL,
        source_conn_id="{{ " + SOURCE_CONN + " }}",
        destination_conn_id="{{ " + DESTINATION_CONN + " }}",
        linkai_conn_id="linkai_default",
        max_concurrency=4,
        pool=POOL,
        max_active_tis_per_dagrun=8,
        outlets=[],  # no event per shard: report adds the run's one event
    ).expand(source=shards)
    all_shards_succeeded(report(transcribed.output, shards))
