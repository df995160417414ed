"""Bad input, batch-fatal errors and secrets, through real Airflow and real HTTP: every case gets a
clear message naming the file or setting, and nothing already done is lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from linkai_provider.dataset import read_rows
from tests.helpers import HostileServer, digest_text, get_dag, task_states, xcom_return

pytestmark = pytest.mark.usefixtures("airflow_home")


def run(**conf):
    dag_run = get_dag("linkai_test_transcribe").test(run_conf=conf)
    return task_states(dag_run)["transcribe"], xcom_return(dag_run, "transcribe")


def rows_by_name(dest: Path) -> dict[str, list[dict]]:
    import fsspec

    table: pa.Table = read_rows(fsspec.filesystem("file"), str(dest))
    out: dict[str, list[dict]] = {}
    for row in sorted(table.to_pylist(), key=lambda r: r["transcribed_at"]):
        out.setdefault(row["source_uri"].rsplit("/", 1)[1], []).append(row)
    return out


def bad_folder(tmp_path: Path, speech) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(speech.dir / "clip_06.wav", folder / "with space.wav")
    shutil.copy(speech.dir / "clip_00.mp3", folder / "ünïcödé.mp3")
    shutil.copy(speech.dir / "clip_05.ogg", folder / "hash#1 q?.ogg")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "text.wav").write_text("this is a text file, not audio\n" * 20)
    (folder / "garbage.flac").write_bytes(os.urandom(5000))
    (folder / "big.wav").write_bytes((speech.dir / "clip_06.wav").read_bytes() + b"\0" * 400_000)
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_bad_files_become_failed_rows_and_the_batch_goes_on(tmp_path, speech, linkai_conn, monkeypatch):
    monkeypatch.setenv("LINKAI_TEST_MAX_FILE_SIZE", "300000")
    folder, dest = bad_folder(tmp_path, speech), tmp_path / "out"

    state, summary = run(source=str(folder), destination=str(dest))

    assert state == "failed"  # fail_on_partial_error, after every row was written
    rows = {name: found[-1] for name, found in rows_by_name(dest).items()}
    assert sorted(rows) == sorted(p.name for p in folder.iterdir() if p.suffix != ".txt")
    for name in ("with space.wav", "ünïcödé.mp3", "hash#1 q?.ogg"):
        assert rows[name]["status"] == "ok"
        assert rows[name]["text"] == digest_text((folder / name).read_bytes())
    assert rows["empty.wav"]["error_message"] == "file is empty (0 bytes); not uploaded"
    assert "over max_file_size_bytes=300000; not uploaded" in rows["big.wav"]["error_message"]
    assert (rows["empty.wav"]["attempts"], rows["big.wav"]["attempts"]) == (0, 0)
    for name in ("text.wav", "garbage.flac"):
        # nothing in them decodes as audio: refused locally, never uploaded, never paid for
        assert (rows[name]["status"], rows[name]["error_type"], rows[name]["error_code"]) == (
            "failed",
            "UnreadableFileError",
            None,
        )
        assert "as audio" in rows[name]["error_message"] and rows[name]["error_message"].endswith("not uploaded")
        assert (rows[name]["attempts"], rows[name]["content_sha256"]) == (0, None)
    assert rows["empty.wav"]["content_sha256"] is None and rows["big.wav"]["content_sha256"] is None
    stats = linkai_conn.stats()
    assert stats["requests_total"] == 3  # only the three good files: the bad ones never uploaded

    # Next run: only the failed files are tried again; the ok ones are not paid twice.
    monkeypatch.setenv("LINKAI_TEST_FAIL_ON_PARTIAL", "0")
    linkai_conn.reset_stats()
    state, summary = run(source=str(folder), destination=str(dest))
    assert state == "success"
    assert (summary["skipped_existing"], summary["failed"], summary["skipped_unsupported"]) == (3, 4, 1)
    assert linkai_conn.stats()["requests_total"] == 0


def test_source_matching_nothing_is_configurable(tmp_path, linkai_conn, monkeypatch):
    (tmp_path / "in").mkdir()
    state, summary = run(source=str(tmp_path / "in" / "*.wav"), destination=str(tmp_path / "out"))
    assert state == "success" and summary["files_found"] == 0
    monkeypatch.setenv("LINKAI_TEST_FAIL_ON_EMPTY", "1")
    state, _ = run(source=str(tmp_path / "in"), destination=str(tmp_path / "out"))
    assert state == "failed"
    assert linkai_conn.stats()["requests_total"] == 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing_source", "does not exist (no such file, folder or prefix)"),
        ("missing_bucket", "s3://no-such-bucket-linkai/calls"),
        ("unwritable_destination", "is not writable"),
        ("no_key", "connection 'linkai_default' has no API key"),
    ],
)
def test_setup_errors_fail_before_any_api_call(
    case, expected, tmp_path, speech, linkai_conn, conn_env, moto_endpoint, capfd
):
    conf = {"source": str(speech.dir), "destination": str(tmp_path / "out")}
    if case == "missing_source":
        conf["source"] = str(tmp_path / "nope")
    elif case == "missing_bucket":
        conn_env(s3={"conn_type": "generic", "extra": {"client_kwargs": {"endpoint_url": moto_endpoint}}})
        conf.update(source="s3://no-such-bucket-linkai/calls", source_conn_id="s3")
    elif case == "unwritable_destination":
        (tmp_path / "a-file").write_text("x")
        conf["destination"] = str(tmp_path / "a-file" / "out")
    elif case == "no_key":
        conn_env(linkai_default={"conn_type": "linkai", "host": linkai_conn.url})

    state, _ = run(**conf)

    assert state == "failed"
    out, err = capfd.readouterr()
    assert expected in out + err
    assert linkai_conn.stats()["requests_total"] == 0


def test_wrong_key_is_batch_fatal_and_stops_within_the_in_flight_window(tmp_path, speech, linkai_conn, conn_env, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(40):
        shutil.copy(speech.dir / "clip_06.wav", folder / f"{i:02d}.wav")
    conn_env(linkai_default={"conn_type": "linkai", "host": linkai_conn.url, "password": "sk-wrong-key"})

    state, _ = run(source=str(folder), destination=str(tmp_path / "out"))

    assert state == "failed"
    out, err = capfd.readouterr()
    assert "Authentication failed" in out + err
    sent = linkai_conn.stats()["requests_total"]
    assert 1 <= sent <= 4  # max_concurrency=4: what was in flight when the first 401 came back
    rows = rows_by_name(tmp_path / "out")
    assert 1 <= len(rows) <= sent and all(r[-1]["error_type"] == "AuthenticationError" for r in rows.values())


def test_non_json_answers_are_failed_rows(tmp_path, speech, conn_env):
    server = HostileServer()
    try:
        conn_env(linkai_default={"conn_type": "linkai", "host": server.url, "password": "sk-hostile"})
        folder = tmp_path / "in"
        folder.mkdir()
        shutil.copy(speech.dir / "clip_06.wav", folder / "fine.wav")
        shutil.copy(speech.dir / "clip_06.wav", folder / "nonjson.wav")
        state, _ = run(source=str(folder), destination=str(tmp_path / "out"))
    finally:
        server.stop()
    assert state == "failed"
    rows = rows_by_name(tmp_path / "out")
    assert rows["fine.wav"][-1]["text"] == "fine"
    bad = rows["nonjson.wav"][-1]
    assert bad["error_type"] == "MalformedResponseError" and "not JSON: <html>" in bad["error_message"]


def test_api_key_never_leaks(tmp_path, speech, conn_env, capfd, airflow_home):
    """A batch with failures, against a server that quotes the key back: the key is in no log line,
    XCom value, Parquet cell, rendered template field or exception text."""
    key = "sk-LEAKCHECK-3f9a7c1e5b"
    server = HostileServer()
    try:
        conn_env(linkai_default={"conn_type": "linkai", "host": server.url, "password": key})
        folder = tmp_path / "in"
        folder.mkdir()
        for name in ("fine.wav", "echo.wav", "nonjson.wav"):
            shutil.copy(speech.dir / "clip_06.wav", folder / name)
        (folder / "empty.mp3").write_bytes(b"")
        dag_run = get_dag("linkai_test_transcribe").test(
            run_conf={"source": str(folder), "destination": str(tmp_path / "out"), "extra_fields": {"tag": "x"}}
        )
    finally:
        server.stop()
    out, err = capfd.readouterr()
    assert "rejected request with header" in out + err  # the hostile message was logged ...
    assert key not in out + err  # ... with the key masked

    import fsspec

    table = read_rows(fsspec.filesystem("file"), str(tmp_path / "out"))
    assert table.num_rows == 4
    cells = json.dumps(table.to_pylist(), default=str)
    assert "rejected request with header Bearer ***" in cells and key not in cells

    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        xcoms = session.scalars(select(XComModel).where(XComModel.run_id == dag_run.run_id)).all()
        rendered = session.scalars(
            select(RenderedTaskInstanceFields).where(RenderedTaskInstanceFields.run_id == dag_run.run_id)
        ).all()
        stored = json.dumps([x.value for x in xcoms] + [r.rendered_fields for r in rendered], default=str)
    assert rendered and key not in stored
    for log_file in Path(airflow_home, "logs").rglob("*"):
        if log_file.is_file():
            assert key not in log_file.read_text(errors="replace"), log_file


def test_credits_running_out_mid_batch_keeps_finished_rows_and_resumes(
    tmp_path, speech, linkai_server_factory, conn_env, capfd
):
    """406 after 12 paid transcriptions: sending stops within the in-flight window, the 12 ok rows are
    kept, and once credits are topped up the next run sends exactly the files not yet done."""
    server = linkai_server_factory(credits=12, latency_ms=20)
    conn_env(linkai_default=json.loads(server.airflow_conn_json))
    folder = tmp_path / "in"
    folder.mkdir()
    wav = (speech.dir / "clip_06.wav").read_bytes()
    for i in range(20):
        (folder / f"{i:02d}.wav").write_bytes(wav + i.to_bytes(2, "big"))  # distinct files
    dest = tmp_path / "out"

    state, _ = run(source=str(folder), destination=str(dest))

    assert state == "failed"
    out, err = capfd.readouterr()
    assert "Insufficient account credits" in out + err
    rows = rows_by_name(dest)
    ok = [name for name, found in rows.items() if found[-1]["status"] == "ok"]
    refused = [name for name, found in rows.items() if found[-1]["error_type"] == "InsufficientCreditsError"]
    assert len(ok) == 12 and 1 <= len(refused) <= 4  # max_concurrency=4 in flight when the 406 came
    assert server.stats()["requests_total"] <= 12 + 4

    server.reset_stats()  # tops the balance up again
    state, summary = run(source=str(folder), destination=str(dest))
    assert state == "success" and summary["skipped_existing"] == 12
    assert server.stats()["transcriptions_ok"] == 8 == server.stats()["requests_total"]
