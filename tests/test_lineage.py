"""Lineage: the transcript Asset, its alias, one Asset event only when rows were written, the destination
checked against the Asset, and the OpenLineage names. Unit cases, then real Airflow (``dag.test()``)."""

from __future__ import annotations

import logging
import shutil

import pytest
from airflow.providers.common.compat.openlineage.facet import Dataset
from airflow.sdk import Asset, AssetAlias
from airflow.sdk.exceptions import AirflowFailException

from linkai_provider.lineage import (
    contains,
    emit_for_summaries,
    openlineage_name,
    set_default_outlets,
    transcript_alias,
    transcript_asset,
)
from linkai_provider.operators.transcribe import TranscribeAudioOperator
from linkai_provider.operators.transcribe import transcript_asset as reexported
from tests.helpers import get_dag, task_states

LOG = logging.getLogger(__name__)


class Events:
    """A stand-in for ``context["outlet_events"]`` that records what is added."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, dict]] = []

    def __getitem__(self, outlet):
        events = self

        class Accessor:
            def add(self, asset, extra=None):
                events.added.append((outlet.name, asset.uri, extra or {}))

        return Accessor()


# -- unit ----------------------------------------------------------------------------------------------


def test_default_outlet_is_the_alias_of_the_dataset_root():
    op = TranscribeAudioOperator(task_id="t", source="/in", destination="s3://lake/transcripts/dt={{ ds }}/")
    assert op.outlets == [AssetAlias("linkai-transcripts:s3://lake/transcripts")]
    run_day = "/var/lake/t/dt={{ ((dag_run.logical_date or dag_run.run_after) | ds) }}/"
    assert transcript_alias(transcript_asset(run_day)).name == "linkai-transcripts:file:///var/lake/t"
    assert transcript_asset("/var/lake/t/{{ ds }}").uri == "file:///var/lake/t"
    assert reexported is transcript_asset  # still importable from the operator module
    templated = TranscribeAudioOperator(task_id="u", source="/in", destination="{{ params.dest }}")
    assert templated.outlets == []
    explicit = TranscribeAudioOperator(task_id="v", source="/in", destination="/x/y", outlets=[Asset("s3://b/k")])
    assert explicit.outlets == [Asset("s3://b/k")]
    kwargs: dict = {}
    set_default_outlets(kwargs, ["not", "a", "string"])
    assert kwargs == {}


def test_contains_compares_urls_not_strings():
    root = Asset("file:///data/transcripts")
    assert contains(root, "/data/transcripts/dt=2026-11-20/")
    assert contains(root, "file:///data/transcripts")
    assert not contains(root, "/data/transcripts2/dt=2026-11-20")
    assert not contains(root, "s3://data/transcripts/dt=1")
    assert contains(Asset("s3://lake/t"), "s3://lake/t/dt=2026-11-20/")


def test_one_event_per_alias_only_when_rows_were_written():
    alias = transcript_alias("s3://lake/t")
    events = Events()
    summaries = [
        {"destination": "s3://lake/t/dt=1", "rows_written": 3},
        None,  # a failed shard
        {"destination": "s3://lake/t/dt=1", "rows_written": 2},
    ]
    assert emit_for_summaries([alias], {"outlet_events": events}, summaries, LOG) == 5
    assert events.added == [
        (alias.name, "s3://lake/t", {"rows_written": 5, "destinations": ["s3://lake/t/dt=1"], "partitions": ["dt=1"]})
    ]

    nothing = Events()
    summary = {"destination": "s3://lake/t/dt=1", "rows_written": 0}
    assert emit_for_summaries([alias], {"outlet_events": nothing}, [summary], LOG) == 0
    assert nothing.added == []


def test_the_event_names_the_partitions_that_got_rows():
    alias = transcript_alias("s3://lake/t")
    events = Events()
    summaries = [
        {"destination": "s3://lake/t/dt=2026-11-28/", "rows_written": 3},
        {"destination": "s3://lake/t/dt=2026-11-26", "rows_written": 0},  # looked back, nothing new
        {"destination": "s3://lake/t/region=eu/dt=2026-11-27", "rows_written": 1},
        {"destination": "s3://lake/t", "rows_written": 2},  # the root itself: partition ""
    ]
    emit_for_summaries([alias], {"outlet_events": events}, summaries, LOG)
    ((_, _, extra),) = events.added
    assert extra["partitions"] == ["", "dt=2026-11-28", "region=eu/dt=2026-11-27"]
    assert extra["rows_written"] == 6 and len(extra["destinations"]) == 4


def test_destination_outside_the_asset_fails_the_task():
    events = Events()
    outside = {"destination": "s3://other/t/dt=1", "rows_written": 4}
    for outlets in ([transcript_alias("s3://lake/t")], [Asset("s3://lake/t")]):
        with pytest.raises(AirflowFailException, match="outside the Asset") as info:
            emit_for_summaries(outlets, {"outlet_events": events}, [outside], LOG)
        assert "s3://other/t/dt=1" in str(info.value) and "[linkai] transcripts_url" in str(info.value)
    assert events.added == []
    # no transcript outlet at all (outlets=[] or someone else's alias): nothing to check, nothing emitted
    assert emit_for_summaries([], {"outlet_events": events}, [outside], LOG) == 4
    assert emit_for_summaries([AssetAlias("theirs")], {"outlet_events": events}, [outside], LOG) == 4
    assert events.added == []


def test_facets_name_inputs_and_output_per_the_naming_spec():
    op = TranscribeAudioOperator(
        task_id="t",
        source=["s3://calls/2026-11-20/", "/data/extra/a.wav"],
        destination="gs://lake/transcripts/dt=2026-11-20",
    )
    lineage = op.get_openlineage_facets_on_complete(task_instance=None)
    assert lineage.inputs == [Dataset("s3://calls", "2026-11-20"), Dataset("file", "/data/extra/a.wav")]
    assert lineage.outputs == [Dataset("gs://lake", "transcripts/dt=2026-11-20")]


def test_openlineage_names():
    assert openlineage_name("file:///tmp/x/") == ("file", "/tmp/x")
    assert openlineage_name("s3://bucket") == ("s3://bucket", "/")


# -- real Airflow ----------------------------------------------------------------------------------------


def asset_events(uri: str) -> list[dict]:
    """Every AssetEvent recorded for the Asset ``uri`` in the metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id).where(AssetModel.uri == uri)
        return [{"extra": e.extra, "run_id": e.source_run_id} for e in session.scalars(query)]


@pytest.mark.usefixtures("airflow_home")
def test_operator_emits_one_event_when_it_wrote_rows_and_none_on_a_rerun(tmp_path, speech, linkai_conn, monkeypatch):
    audio = tmp_path / "in"
    audio.mkdir()
    for name in sorted(speech.truth)[:3]:
        shutil.copy(speech.dir / name, audio / name)
    root = f"file://{tmp_path}/lake/transcripts"
    monkeypatch.setenv("LINKAI_TEST_OUTLET", root)
    dag = get_dag("linkai_test_transcribe")
    conf = {"source": str(audio), "destination": f"{root}/dt=2026-11-20/"}

    first = dag.test(run_conf=conf)
    assert task_states(first)["transcribe"] == "success"
    (event,) = asset_events(root)
    assert event["run_id"] == first.run_id
    assert event["extra"]["rows_written"] == 3
    assert event["extra"]["partitions"] == ["dt=2026-11-20"]

    again = dag.test(run_conf=conf)  # everything already transcribed: nothing sent, nothing written
    assert task_states(again)["transcribe"] == "success"
    assert len(asset_events(root)) == 1


@pytest.mark.usefixtures("airflow_home")
def test_operator_writing_outside_its_asset_fails_after_writing(tmp_path, speech, linkai_conn, monkeypatch):
    """The worker's destination disagrees with the Asset (e.g. [linkai] transcripts_url set differently)."""
    audio = tmp_path / "in"
    audio.mkdir()
    shutil.copy(speech.dir / sorted(speech.truth)[0], audio / "a.wav")
    asset_root = f"file://{tmp_path}/lake/transcripts"
    monkeypatch.setenv("LINKAI_TEST_OUTLET", asset_root)
    elsewhere = tmp_path / "elsewhere" / "transcripts" / "dt=2026-11-20"

    run = get_dag("linkai_test_transcribe").test(run_conf={"source": str(audio), "destination": str(elsewhere)})
    assert task_states(run)["transcribe"] == "failed"
    assert len(list(elsewhere.glob("*.parquet"))) == 1  # the rows stay: the check runs after writing
    assert asset_events(asset_root) == []
