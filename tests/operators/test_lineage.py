"""OpenLineage: the operator reports its source folders and the transcript dataset."""

from __future__ import annotations

from airflow.providers.common.compat.openlineage.facet import Dataset

from linkai_provider.operators.transcribe import TranscribeAudioOperator, openlineage_name, transcript_asset


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


def test_outlet_asset_is_the_dataset_root():
    op = TranscribeAudioOperator(task_id="t", source="/in", destination="s3://lake/transcripts/dt={{ ds }}/")
    assert [a.uri for a in op.outlets] == ["s3://lake/transcripts"]
    assert transcript_asset("/var/lake/t/{{ ds }}").uri == "file:///var/lake/t"
    templated = TranscribeAudioOperator(task_id="u", source="/in", destination="{{ params.dest }}")
    assert templated.outlets == []
