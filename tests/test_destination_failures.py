"""A destination that fails mid-batch, end to end (linkai-server over HTTP, moto S3 in server mode):
while journal writes fail, no new request is sent; if the store comes back nothing is lost; if it stays
broken, sending stops and the batch fails naming the destination and the cause."""

from __future__ import annotations

import json
import threading
import time

import pytest

from linkai_provider.batch import Batch, BatchOptions
from linkai_provider.dataset import part_files, read_rows
from linkai_provider.hooks.linkai import LinkAIHook
from linkai_provider.journal import DestinationWriteError, WriterIdentity
from tests.test_resilience import make_inputs

pytestmark = pytest.mark.usefixtures("airflow_home")


def batch(tmp_path, fs_conn_id: str, dest: str, **options) -> Batch:
    return Batch(
        LinkAIHook(max_connections=8),
        source=str(tmp_path / "in"),
        destination=dest,
        destination_conn_id=fs_conn_id,
        identity=WriterIdentity.new(),
        row_context={
            "endpoint": None,
            "dag_id": None,
            "task_id": None,
            "run_id": None,
            "map_index": None,
            "try_number": None,
        },  # fmt: skip
        options=BatchOptions(max_concurrency=8, **options),
    )


def moto_conn(conn_env, moto) -> None:
    fs = moto.fs()
    endpoint = fs.client_kwargs["endpoint_url"]
    conn_env(outage_s3={"conn_type": "generic", "extra": {
        "key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}})  # fmt: skip


def watch(server, at_ok: int, action) -> threading.Thread:
    def run() -> None:
        while server.stats()["transcriptions_ok"] < at_ok:
            time.sleep(0.005)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_store_down_mid_batch_holds_sending_and_loses_nothing(tmp_path, own_moto, linkai_server_factory, conn_env):
    server = linkai_server_factory(latency_ms=30)
    conn_env(linkai_default=json.loads(server.airflow_conn_json))
    moto_conn(conn_env, own_moto)
    own_moto.fs().mkdir("outage")
    inputs = make_inputs(tmp_path / "in", 150)
    seen: dict[str, int] = {}

    def outage() -> None:
        own_moto.stop()
        time.sleep(1.5)  # the first failed write holds sending
        seen["held_from"] = server.stats()["requests_total"]
        time.sleep(1.5)
        seen["held_to"] = server.stats()["requests_total"]
        own_moto.start()

    watcher = watch(server, 40, outage)
    outcome = batch(tmp_path, "outage_s3", "s3://outage/transcripts/dt=2026-11-24", destination_retry_seconds=60).run()
    watcher.join()

    assert outcome.result.fatal is None and outcome.summary["transcribed"] == 150
    assert seen["held_from"] == seen["held_to"], seen  # nothing sent while the store was down
    fs = own_moto.fs()
    root = "outage/transcripts/dt=2026-11-24"
    assert len(part_files(fs, root)) == 1
    assert sorted(read_rows(fs, root).column("source_uri").to_pylist()) == sorted(
        uri.replace("file://", "file://") for uri in inputs
    )
    assert server.stats()["transcriptions_ok"] == 150  # none paid twice


def test_store_that_stays_down_stops_sending_and_names_the_destination(
    tmp_path, own_moto, linkai_server_factory, conn_env
):
    server = linkai_server_factory(latency_ms=30)
    conn_env(linkai_default=json.loads(server.airflow_conn_json))
    moto_conn(conn_env, own_moto)
    own_moto.fs().mkdir("broken")
    make_inputs(tmp_path / "in", 400)
    stopped: dict[str, int] = {}

    def outage() -> None:
        own_moto.stop()
        stopped["at"] = server.stats()["requests_total"]

    watcher = watch(server, 40, outage)
    try:
        outcome = batch(tmp_path, "outage_s3", "s3://broken/transcripts/dt=2026-11-24",
                        destination_retry_seconds=2).run()  # fmt: skip
    finally:
        watcher.join()
        own_moto.start()

    fatal = outcome.result.fatal
    assert isinstance(fatal, DestinationWriteError), fatal
    assert str(fatal).startswith("cannot write to s3://broken/transcripts/dt=2026-11-24 ("), str(fatal)
    # sending stopped: at most what was in flight, plus a backlog of 2 × max_concurrency rows waiting to be stored
    assert server.stats()["requests_total"] <= stopped["at"] + 3 * 8, (stopped, server.stats()["requests_total"])
    assert outcome.summary["transcribed"] < 150 and outcome.result.not_sent > 200
    # what was journaled before the outage counts as done for the next run (and is adopted then)
    from linkai_provider.dataset import completed_keys

    assert len(completed_keys(own_moto.fs(), "broken/transcripts/dt=2026-11-24")) >= 30
