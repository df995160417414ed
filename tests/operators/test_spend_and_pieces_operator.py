"""The operator's new arguments through real Airflow (``dag.test()``) and linkai-server over HTTP:
a dry run, a budget then the next run, a long recording split into one row, and the deprecated
checkpoint arguments."""

from __future__ import annotations

import warnings

import pytest

from linkai_provider.dataset import read_rows
from tests.helpers import get_dag, task_states, xcom_return
from tests.io.test_split_audio import SENTENCES, join_sentences, write_wav
from tests.test_spend_control import make_wavs

pytestmark = pytest.mark.usefixtures("airflow_home")


def run(**conf):
    dag_run = get_dag("linkai_test_transcribe").test(run_conf=conf)
    return task_states(dag_run)["transcribe"], xcom_return(dag_run, "transcribe")


def local_rows(dest) -> list[dict]:
    import fsspec

    return read_rows(fsspec.filesystem("file"), str(dest)).to_pylist()


def test_dry_run_then_budgeted_runs(tmp_path, linkai_conn, monkeypatch):
    make_wavs(tmp_path / "in", 9, seconds=1.0)
    dest = tmp_path / "out" / "dt=2026-11-24"

    monkeypatch.setenv("LINKAI_TEST_DRY_RUN", "1")
    state, summary = run(source=str(tmp_path / "in"), destination=str(dest))
    assert state == "success" and summary["dry_run"] is True
    assert (summary["would_send"], summary["would_send_audio_seconds"], summary["transcribed"]) == (9, 9.0, 0)
    assert linkai_conn.stats()["requests_total"] == 0 and not dest.exists()

    monkeypatch.setenv("LINKAI_TEST_DRY_RUN", "0")
    monkeypatch.setenv("LINKAI_TEST_MAX_AUDIO_S", "4.5")
    state, summary = run(source=str(tmp_path / "in"), destination=str(dest))
    assert state == "success" and (summary["transcribed"], summary["held_back"]) == (4, 5)
    assert linkai_conn.stats()["requests_total"] == 4 and summary["audio_seconds"] == 4.0

    monkeypatch.delenv("LINKAI_TEST_MAX_AUDIO_S")
    monkeypatch.setenv("LINKAI_TEST_MAX_FILES", "100")
    state, summary = run(source=str(tmp_path / "in"), destination=str(dest))
    assert state == "success" and (summary["transcribed"], summary["skipped_existing"]) == (5, 4)
    assert linkai_conn.stats()["requests_total"] == 9
    assert len(local_rows(dest)) == 9 and len(list(dest.glob("*.parquet"))) == 2  # one part per run that wrote


def test_long_recording_through_the_operator(tmp_path, linkai_conn, monkeypatch):
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(20)], tmp_path, seed=9)
    (tmp_path / "in").mkdir()
    write_wav(tmp_path / "in" / "lecture.wav", rec.samples)
    monkeypatch.setenv("LINKAI_TEST_MAX_UPLOAD_BYTES", "500000")  # the 2.4 MB WAV cannot go whole

    # Over the byte budget: re-encoded compactly (Opus: about 170 kB), it fits in one piece.
    state, summary = run(source=str(tmp_path / "in"), destination=str(tmp_path / "one"))
    assert state == "success" and (summary["transcribed"], summary["split"]) == (1, 1)
    [row] = local_rows(tmp_path / "one")
    assert row["chunks"] == 1 and linkai_conn.stats()["bytes_received"] < 500_000
    assert row["segments"][0]["start_s"] == 0.0
    assert row["segments"][0]["end_s"] == pytest.approx(rec.duration_s, abs=0.05)

    # Over max_chunk_seconds too: pieces cut at silences, one row.
    monkeypatch.setenv("LINKAI_TEST_MAX_CHUNK_SECONDS", "25")
    linkai_conn.reset_stats()
    state, summary = run(source=str(tmp_path / "in"), destination=str(tmp_path / "pieces"))
    assert state == "success" and (summary["transcribed"], summary["split"]) == (1, 1)
    [row] = local_rows(tmp_path / "pieces")
    assert row["chunks"] == len(row["segments"]) == linkai_conn.stats()["transcriptions_ok"] >= 4
    assert (row["dag_id"], row["task_id"]) == ("linkai_test_transcribe", "transcribe")
    assert row["segments"][-1]["end_s"] == pytest.approx(rec.duration_s, abs=0.05)


def test_checkpoint_arguments_are_deprecated_not_broken():
    from airflow.exceptions import AirflowProviderDeprecationWarning

    from linkai_provider.operators.transcribe import TranscribeAudioOperator

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        TranscribeAudioOperator(task_id="t", source="/in", destination="/out", checkpoint_rows=100)
    assert [w.category for w in caught] == [AirflowProviderDeprecationWarning]
    assert "journaled" in str(caught[0].message)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_files": -1}, "max_files must be >= 0"),
        ({"max_audio_seconds": -5}, "max_audio_seconds must be >= 0"),
        ({"max_upload_bytes": 0}, "max_upload_bytes must be positive"),
        ({"max_chunk_seconds": 0}, "max_chunk_seconds must be positive"),
        ({"max_concurrency": 0}, "max_concurrency must be >= 1"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, message):
    from linkai_provider.operators.transcribe import TranscribeAudioOperator

    with pytest.raises(ValueError, match=message):
        TranscribeAudioOperator(task_id="t", source="/in", destination="/out", **kwargs)
