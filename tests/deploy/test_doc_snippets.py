"""Every file under docs/snippets/ (the docs include them, they never copy code) run or checked for real:
queries against a transcript dataset written by the provider's own writer (local, S3 on moto, GCS on
the emulator), DDL checked column by column against ``dataset.SCHEMA``, the DAG parsed and run
through Airflow against linkai-server, the connection examples read by the hook."""

from __future__ import annotations

import json
import logging
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from linkai_provider.dataset import SCHEMA
from tests.deploy.transcripts import CURRENT, schema_columns

REPO = Path(__file__).resolve().parents[2]
SNIPPETS = REPO / "docs" / "snippets"

# which test covers which snippet; test_every_snippet_is_tested keeps this honest
COVERED = {
    "query_duckdb.py": "test_duckdb_snippet_*",
    "duckdb_current.sql": "test_duckdb_cli_sql",
    "duckdb_daily_cost.sql": "test_duckdb_cli_sql",
    "query_pandas.py": "test_pandas_and_polars_*",
    "query_polars.py": "test_pandas_and_polars_*",
    "query_spark.py": "test_spark_snippet",
    "athena.sql": "test_ddl_names_every_column_with_a_compatible_type",
    "athena_current.sql": "test_warehouse_queries_return_the_current_transcripts",
    "bigquery.sql": "test_ddl_names_every_column_with_a_compatible_type",
    "bigquery_current.sql": "test_warehouse_queries_return_the_current_transcripts",
    "minimal_dag.py": "test_minimal_dag_*",
    "sharded_by_hash.py": "test_sharded_by_hash_snippet_maps_over_every_shard",
    "connection_env.sh": "test_connection_env_examples_configure_the_hook",
    "test_connection.sh": "test_connection_test_snippet_against_linkai_server",
    "connection_cli.sh": "test_connection_cli_snippet_stores_a_usable_connection",
    "hook_transcribe.py": "test_hook_snippet_*",
    "transcribe_cli.sh": "test_transcribe_cli_snippet",
    "compose.sh": "test_compose_commands_name_real_services_dags_and_settings",
    "quickstart.sh": "test_quickstart_commands_are_the_ones_ci_runs",
    "install.sh": "tests/deploy/test_production.py (install lines, the wheel, audio everywhere)",
    # wheel, air-gapped and constraints in tests/deploy/test_production.py; env, migrate, components, workers,
    # pool, trigger and events run as written by the real stack in tests/stack
    "production.sh": "tests/deploy/test_production.py and tests/stack",
    "duckdb_segments.sql": "tests/operators/test_long_recordings.py (runs the docs' segments query as written)",
    "ui.sh": "tests/plugins/test_browser.py (the API section against a real api-server, settings, extras)",
}


def load(name: str) -> dict:
    return runpy.run_path(str(SNIPPETS / name))


def as_current(rows) -> dict[str, tuple]:
    """{source_uri: (status, text)} from rows whose first three values are uri, status, text."""
    return {r[0]: (r[1], r[2]) for r in rows}


def test_every_snippet_is_tested():
    assert sorted(p.name for p in SNIPPETS.iterdir() if p.is_file()) == sorted(COVERED)


# -- DuckDB ---------------------------------------------------------------------------------------------
def test_duckdb_snippet_local(transcripts):
    snippet = load("query_duckdb.py")
    for dataset in (str(transcripts.root), f"file://{transcripts.root}"):
        rows = snippet["current_transcripts"](snippet["connect"](dataset), dataset)
        assert as_current(rows) == CURRENT
        # the columns the page promises, dt from the partition folder
        assert {r[0]: str(r[-1]) for r in rows}[f"{'s3://calls/in'}/b.mp3"] == "2026-11-20"
    # the page's FROM clause reads version-2 and version-3 parts as one table
    con = snippet["connect"](str(transcripts.root))
    from_clause = snippet["CURRENT"].split("FROM", 1)[1].split("QUALIFY", 1)[0]
    rows = con.execute(
        "SELECT source_uri, warnings, segments FROM " + from_clause + " WHERE status = 'ok' AND dt = DATE '2026-11-21'"
        " OR source_uri LIKE '%b.mp3'",
        {"glob": str(transcripts.root) + "/**/*.parquet"},
    ).fetchall()
    assert_new_fields_read([{"source_uri": u, "warnings": w, "segments": s} for u, w, s in rows])


def upload(fs, local: Path, remote: str) -> None:
    fs.put(str(local), remote, recursive=True)


def run_snippet(name: str, dataset: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(SNIPPETS / name), dataset],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_printed_current(stdout: str) -> None:
    for uri, (status, text) in CURRENT.items():
        line = next(line for line in stdout.splitlines() if uri in line)
        assert status in line, line
        if text:
            assert text in line, line


@pytest.fixture
def s3_env(moto_endpoint) -> dict[str, str]:
    """What the snippets' docstrings tell a MinIO user to set."""
    return {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


@pytest.fixture
def s3_transcripts(transcripts, s3fs_factory, request) -> str:
    fs = s3fs_factory()
    bucket = "docs-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    fs.mkdir(bucket)
    upload(fs, transcripts.root, f"{bucket}/transcripts")
    return f"s3://{bucket}/transcripts"


def test_duckdb_snippet_over_s3(s3_transcripts, s3_env):
    assert_printed_current(run_snippet("query_duckdb.py", s3_transcripts, s3_env))


def test_duckdb_snippet_over_gcs(transcripts, gcsfs_factory, gcs_endpoint):
    fs = gcsfs_factory()
    fs.mkdir("docs-gcs")
    upload(fs, transcripts.root, "docs-gcs/transcripts")
    env = {"STORAGE_EMULATOR_HOST": gcs_endpoint, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    assert_printed_current(run_snippet("query_duckdb.py", "gs://docs-gcs/transcripts", env))


def test_duckdb_cli_sql(transcripts, monkeypatch):
    """The .sql files are written for `duckdb` run beside the dataset folder."""
    monkeypatch.chdir(transcripts.root.parent)
    con = duckdb.connect()
    current_sql = (SNIPPETS / "duckdb_current.sql").read_text()
    con.execute("EXPLAIN " + current_sql.rstrip().rstrip(";"))
    assert as_current(con.execute(current_sql).fetchall()) == CURRENT

    daily = con.execute((SNIPPETS / "duckdb_daily_cost.sql").read_text()).fetchall()
    by_day = {str(row[0]): row[1:] for row in daily}
    # day 1: b, d, e ok (2 + 4 + 1.5 s), a failed; day 2: a, d ok (3.5 + 4.5 s), c, e failed
    assert by_day["2026-11-20"][:3] == (3, 1, round(7.5 / 3600, 3))
    assert by_day["2026-11-21"][:3] == (2, 2, round(8.0 / 3600, 3))


# -- pandas, Polars, Spark -----------------------------------------------------------------------------
@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_pandas_and_polars_local(transcripts, library):
    frame = load(f"query_{library}.py")["current_transcripts"](str(transcripts.root))
    rows = frame.to_dict("records") if library == "pandas" else frame.to_dicts()
    # pandas shows a missing text as <NA>; `x != x` catches NaN-like missing values of any kind
    missing = [r["text"] is None or r["text"] != r["text"] for r in rows]
    got = {r["source_uri"]: (r["status"], None if gone else r["text"]) for r, gone in zip(rows, missing, strict=True)}
    assert got == CURRENT
    assert set(SCHEMA.names) | {"dt"} == set(rows[0])
    assert len(rows) == len(CURRENT)
    assert_new_fields_read(rows)


def assert_new_fields_read(rows) -> None:
    """The version-3 fields come through beside version-2 parts: d.flac's row (v3) has its warning and
    its segment's channel; b.mp3's (a v2 part) has neither, as nulls."""
    by_uri = {r["source_uri"]: r for r in rows}
    flac, mp3 = by_uri["s3://calls/in/d.flac"], by_uri["s3://calls/in/b.mp3"]
    assert list(flac["warnings"]) == ["channel 1 is silent: not sent"]
    assert [seg["channel"] for seg in flac["segments"]] == [0]
    assert mp3["warnings"] is None or mp3["warnings"] != mp3["warnings"]  # null (pandas: <NA>)
    assert [seg["channel"] for seg in mp3["segments"]] == [None] and mp3["segments"][0]["text"] == "bonjour"


@pytest.mark.parametrize("library", ["pandas", "polars"])
def test_pandas_and_polars_over_s3(s3_transcripts, s3_env, library):
    assert_printed_current(run_snippet(f"query_{library}.py", s3_transcripts, s3_env))


def test_spark_snippet(transcripts):
    """The Spark query runs as written in Spark (pyspark from the test extra, Java from setup-env.sh:
    a missing one is an install problem, never a skip), and unchanged in DuckDB over the same view."""
    from pyspark.sql import SparkSession

    snippet = load("query_spark.py")
    con = duckdb.connect()
    con.read_parquet(f"{transcripts.root}/**/*.parquet", hive_partitioning=True).create_view("transcripts")
    assert as_current(con.execute(snippet["CURRENT"]).fetchall()) == CURRENT
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("linkai-docs")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        frame = snippet["current_transcripts"](spark, str(transcripts.root))
        rows = frame.collect()
        types = dict(frame.dtypes)
        full = spark.sql("SELECT * FROM transcripts WHERE source_uri LIKE '%/d.flac' OR source_uri LIKE '%/b.mp3'")
        full = [r for r in full.collect() if r["status"] == "ok" and str(r["dt"]) in ("2026-11-20", "2026-11-21")]
        full = [r for r in full if not (r["source_uri"].endswith("d.flac") and str(r["dt"]) == "2026-11-20")]
    finally:
        spark.stop()
        # py4j logs "Closing down clientserver connection" from __del__ at interpreter exit, after
        # pytest closed its streams ("--- Logging error ---"): nothing to say by then.
        logging.getLogger("py4j").setLevel(logging.WARNING)
    assert as_current(rows) == CURRENT
    assert types["dt"] == "date"  # the Hive partition is discovered, and typed
    assert_new_fields_read([row.asDict(recursive=True) for row in full])
    assert rows and all(row["transcribed_at"] is not None for row in rows)


# -- Athena, BigQuery ----------------------------------------------------------------------------------
COMPATIBLE = {
    "athena": {"string": {"string"}, "int64": {"bigint"}, "int32": {"int", "integer"}, "double": {"double"},
               "timestamp": {"timestamp"},
               "segments": {"array<struct<start_s:double,end_s:double,text:string,channel:int>>"},
               "warnings": {"array<string>"}},
    "bigquery": {"string": {"STRING"}, "int64": {"INT64"}, "int32": {"INT64"}, "double": {"FLOAT64"},
                 "timestamp": {"TIMESTAMP"},
                 "segments": {"ARRAY<STRUCT<start_s FLOAT64, end_s FLOAT64, text STRING, channel INT64>>"},
                 "warnings": {"ARRAY<STRING>"}},
}  # fmt: skip


def ddl_columns(sql: str) -> tuple[dict[str, str], str]:
    """(column -> type) of the CREATE ... TABLE name ( ... ) list, and the text after it."""
    body = re.sub(r"--[^\n]*", "", sql)
    start = re.search(r"CREATE\b.*?\bTABLE\b[^(]*\(", body, re.S | re.I)
    assert start, "no CREATE TABLE"
    depth, i = 1, start.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(body[i], 0)
        i += 1
    columns, item, nesting = {}, "", 0
    for char in body[start.end() : i - 1] + ",":  # split at top-level commas (struct fields have their own)
        nesting += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and nesting == 0:
            name, kind = item.split(None, 1)
            columns[name.strip("`")] = " ".join(kind.split())
            item = ""
        else:
            item += char
    return columns, body[i:]


@pytest.mark.parametrize("engine", ["athena", "bigquery"])
def test_ddl_names_every_column_with_a_compatible_type(engine):
    columns, rest = ddl_columns((SNIPPETS / f"{engine}.sql").read_text())
    expected = schema_columns()
    assert list(columns) == list(expected), "the DDL must list dataset.SCHEMA's columns, in order"
    for name, arrow_type in expected.items():
        assert columns[name] in COMPATIBLE[engine][arrow_type], f"{engine}: {name} {columns[name]} vs {arrow_type}"
    if engine == "athena":
        assert re.search(r"PARTITIONED BY \(dt string\)", rest)
        assert "STORED AS PARQUET" in rest
        assert "'projection.dt.format' = 'yyyy-MM-dd'" in rest
        assert re.search(r"'storage.location.template' = 's3://[^']+/dt=\$\{dt\}/'", rest)
    else:
        assert "WITH PARTITION COLUMNS (dt DATE)" in rest
        assert "format = 'PARQUET'" in rest
        prefix = re.search(r"hive_partition_uri_prefix = '([^']+)'", rest).group(1)
        assert f"uris = ['{prefix}/*.parquet']" in rest


@pytest.mark.parametrize("engine", ["athena", "bigquery"])
def test_warehouse_queries_return_the_current_transcripts(transcripts, engine):
    """Standard SQL over the table the DDL creates (here: a DuckDB view of the same files)."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA linkai")
    con.read_parquet(f"{transcripts.root}/**/*.parquet", hive_partitioning=True).create_view("rows")
    con.execute("CREATE VIEW linkai.transcripts AS SELECT * FROM rows")
    sql = (SNIPPETS / f"{engine}_current.sql").read_text()
    assert as_current(con.execute(sql).fetchall()) == CURRENT


# -- the DAG ---------------------------------------------------------------------------------------------
def snippet_dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(SNIPPETS / "minimal_dag.py"), known_pools={"default_pool"})
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag("transcribe_calls"), bag.get_dag("report_on_transcripts")


def test_sharded_by_hash_snippet_maps_over_every_shard(airflow_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(SNIPPETS / "sharded_by_hash.py"), known_pools={"default_pool"})
    assert not bag.import_errors, bag.import_errors
    task = bag.get_dag("transcribe_backlog_by_hash").get_task("transcribe")
    assert task.partial_kwargs["shard_count"] == 16
    assert task.expand_input.value["shard_index"] == list(range(16))
    assert task.partial_kwargs["incremental_scope"] == "s3://my-bucket/transcripts"


def test_minimal_dag_parses_and_wires_the_asset(airflow_home):
    from linkai_provider.lineage import transcript_alias

    producer, consumer = snippet_dags()
    task = producer.get_task("transcribe")
    assert task.outlets == [transcript_alias("s3://my-bucket/transcripts")]
    assert task.extra_fields == {"language": "en"}
    assert [a.uri for a in consumer.timetable.asset_condition.objects] == ["s3://my-bucket/transcripts"]


def test_minimal_dag_runs_against_s3_and_linkai_server(
    airflow_home, conn_env, linkai_server, moto_endpoint, s3fs_factory, speech
):
    """dag.test() of the snippet as written: S3 (moto) in and out, linkai-server as LinkAI."""
    from tests.helpers import task_states, xcom_return

    fs = s3fs_factory()
    if not fs.exists("my-bucket"):
        fs.mkdir("my-bucket")
    clips = sorted(speech.dir.iterdir())[:3]
    for clip in clips:
        fs.put_file(str(clip), f"my-bucket/calls/2026-11-19/{clip.name}")
    conn_env(
        linkai_default=json.loads(linkai_server.airflow_conn_json),
        aws_default={"conn_type": "aws", "login": "testing", "password": "testing",
                     "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}},
    )  # fmt: skip
    import pendulum

    from tests.helpers import get_dag

    # in the DAGs folder, like a user's file, so that dag.test() can serialize it
    shutil.copy(SNIPPETS / "minimal_dag.py", Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / "transcribe_calls.py")
    producer = get_dag("transcribe_calls")

    # a manual run without a logical date (Airflow 3's default) reads the day that ended before it
    run = producer.test(logical_date=None, run_after=pendulum.datetime(2026, 11, 20, 18, tz="UTC"))
    assert task_states(run)["transcribe"] == "success"
    summary = xcom_return(run, "transcribe")
    assert summary["transcribed"] == 3 and summary["failed"] == 0
    assert summary["destination"] == "s3://my-bucket/transcripts/dt=2026-11-19"
    assert type(producer.timetable).__name__ == "CronDataIntervalTimetable"
    # a run for that day (its logical date) finds the same files done
    scheduled = producer.test(logical_date=pendulum.datetime(2026, 11, 19, tz="UTC"))
    assert task_states(scheduled)["transcribe"] == "success"
    assert xcom_return(scheduled, "transcribe")["skipped_existing"] == 3
    snippet = load("query_duckdb.py")
    con = duckdb.connect()
    con.register_filesystem(fs)
    rows = snippet["current_transcripts"](con, "s3://my-bucket/transcripts")
    assert {r[0] for r in rows} >= {f"s3://my-bucket/calls/2026-11-19/{c.name}" for c in clips}
    assert all(r[1] == "ok" for r in rows)


# -- connections -------------------------------------------------------------------------------------
def exports(path: Path) -> dict[str, str]:
    """``export NAME='value'`` statements of a shell snippet, as the shell would set them."""
    script = path.read_text() + "\nenv -0\n"
    result = subprocess.run(["bash", "-c", script], env={"PATH": os.environ["PATH"]}, capture_output=True, check=True)
    env = dict(item.split("=", 1) for item in result.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in env.items() if k.startswith("AIRFLOW_")}


def test_connection_env_examples_configure_the_hook(monkeypatch):
    from linkai_provider.hooks.linkai import LinkAIHook

    env = exports(SNIPPETS / "connection_env.sh")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    expected = {
        "linkai_default": ("https://api.linkai.cloud/v1/audio/transcriptions", "sk-your-key", 300.0, 5, {}),
        "linkai_tuned": ("https://api.linkai.cloud/v1/audio/transcriptions", "sk-your-key", 600.0, 8,
                         {"language": "en"}),
        "linkai_local": ("http://127.0.0.1:8765/v1/audio/transcriptions", "sk-local", 300.0, 5, {}),
        "linkai_eu": ("https://api.linkai.cloud/v1/audio/transcriptions", "sk-your-key", 600.0, 3,
                      {"language": "de"}),
    }  # fmt: skip
    assert {k[len("AIRFLOW_CONN_") :].lower() for k in env} == set(expected)
    for conn_id, (endpoint, key, timeout, retries, fields) in expected.items():
        config = LinkAIHook(conn_id).config
        got = (config.endpoint, config.api_key, config.timeout, config.max_retries)
        assert got == (endpoint, key, timeout, retries), conn_id
        assert dict(config.extra_fields) == fields
    tuned = LinkAIHook("linkai_tuned").config
    assert tuned.proxy == "http://proxy.internal:3128" and tuned.verify == "/etc/ssl/certs/corporate-ca.pem"


def test_connection_test_snippet_against_linkai_server(airflow_home, linkai_server):
    """The documented `airflow connections test` succeeds against a server with the LinkAI contract,
    and fails with the reason when the key is wrong."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    script = (SNIPPETS / "test_connection.sh").read_text()

    def run(conn: str) -> str:
        env = {**os.environ, "PATH": path, "AIRFLOW_CONN_LINKAI_DEFAULT": conn}
        env.pop("AIRFLOW__CORE__TEST_CONNECTION", None)
        result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
        return result.stdout + result.stderr

    good = run(linkai_server.airflow_conn_json)
    assert "Connection success" in good, good
    wrong = json.loads(linkai_server.airflow_conn_json) | {"password": "sk-wrong"}
    bad = run(json.dumps(wrong))
    assert "refused the API key" in bad, bad
    assert shlex.split(script.strip().splitlines()[-1]) == ["airflow", "connections", "test", "linkai_default"]


def test_connection_cli_snippet_stores_a_usable_connection(airflow_home, monkeypatch):
    """The snippet stores the connection in the metadata DB; read back, the hook makes of it what the page says."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session

    from linkai_provider.hooks.linkai import LinkAIHook

    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    # stored unencrypted, so this process can read it whatever Fernet key the CLI's config has
    env = {**os.environ, "PATH": path, "LINKAI_API_KEY": "sk-from-the-shell", "AIRFLOW__CORE__FERNET_KEY": ""}
    env.pop("AIRFLOW_CONN_LINKAI_DEFAULT", None)
    script = (SNIPPETS / "connection_cli.sh").read_text()
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120)
    with create_session() as session:  # read it back and leave the shared session DB as it was
        stored = session.query(Connection).filter_by(conn_id="linkai_default").one_or_none()
        conn = stored and {"conn_type": stored.conn_type, "host": stored.host, "password": stored.password,
                           "port": stored.port, "extra": stored.extra_dejson}  # fmt: skip
        if stored is not None:
            session.delete(stored)
    assert result.returncode == 0 and conn, result.stdout + result.stderr
    assert conn["port"] == 0  # what the UI's Test button sends (tests/stack checks the button itself)
    monkeypatch.setenv("AIRFLOW_CONN_LINKAI_DEFAULT", json.dumps(conn))
    config = LinkAIHook("linkai_default").config
    assert config.endpoint == "https://api.linkai.cloud/v1/audio/transcriptions"
    assert config.api_key == "sk-from-the-shell"
    assert (config.timeout, dict(config.extra_fields)) == (600.0, {"language": "en"})


def test_hook_snippet_transcribes_and_reports_a_bad_file(linkai_server, conn_env, speech, tmp_path, capsys):
    from tests.helpers import digest_text

    conn_env(linkai_default=json.loads(linkai_server.airflow_conn_json))
    transcribe_one = load("hook_transcribe.py")["transcribe_one"]
    clip = speech.dir / "clip_06.wav"
    answer = transcribe_one(str(clip))
    assert answer is not None and answer.text == digest_text(clip.read_bytes()) and answer.attempts == 1
    bad = tmp_path / "not-audio.wav"
    bad.write_bytes(b"this is not a wav file at all" * 10)
    assert transcribe_one(str(bad)) is None
    assert "InvalidRequestError (code 400)" in capsys.readouterr().out


def test_hook_snippet_lets_a_fatal_error_through(linkai_server, conn_env, speech):
    from linkai_provider.exceptions import AuthenticationError

    conn_env(linkai_default=json.loads(linkai_server.airflow_conn_json) | {"password": "sk-wrong"})
    with pytest.raises(AuthenticationError):
        load("hook_transcribe.py")["transcribe_one"](str(speech.dir / "clip_06.wav"))


def test_transcribe_cli_snippet(linkai_server, speech, tmp_path):
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {
        **os.environ,
        "PATH": path,
        "AUDIO_URL": str(speech.dir),
        "TRANSCRIPTS_URL": str(tmp_path / "transcripts"),
        "LINKAI_BASE_URL": linkai_server.url,
        "LINKAI_API_KEY": linkai_server.api_key,
    }
    script = (SNIPPETS / "transcribe_cli.sh").read_text()
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["transcribed"] == len(list(speech.dir.iterdir())) and summary["failed"] == 0
    assert summary["destination"] == f"file://{tmp_path}/transcripts/dt=2026-11-20"
    snippet = load("query_duckdb.py")
    rows = snippet["current_transcripts"](duckdb.connect(), str(tmp_path / "transcripts"))
    assert {r[1] for r in rows} == {"ok"} and len(rows) == summary["transcribed"]


def shell_commands(text: str) -> list[list[str]]:
    """Each command of a shell snippet as words (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(shlex.split(line))
    return out


def test_compose_commands_name_real_services_dags_and_settings():
    from tests.deploy import compose

    stack = compose.load({})
    services = stack["services"]
    dag_params = {}
    for dag_file in (REPO / "dags").glob("*.py"):
        text = dag_file.read_text()
        dag_id = re.search(r'dag_id="([^"]+)"', text).group(1)
        dag_params[dag_id] = set(re.findall(r'"(\w+)": Param\(', text))
    commands = shell_commands((SNIPPETS / "compose.sh").read_text())
    seen_services = set()
    for words in commands:
        if words[:2] != ["docker", "compose"]:
            continue
        verb = words[2]
        assert verb in {"up", "ps", "exec", "run", "down"}, words
        if verb in ("exec", "run"):
            args = [w for w in words[3:] if not w.startswith("--")]
            service = args[0]
            assert service in services, words
            seen_services.add(service)
            if verb == "run":
                assert services[service].get("profiles"), f"{service} is started by up; use exec"
            rest = args[1:]
            if rest[:3] == ["airflow", "dags", "trigger"]:
                dag_id = rest[3]
                assert dag_id in dag_params, words
                if "--conf" in words:
                    conf = json.loads(words[words.index("--conf") + 1].replace("$(date -u +%F)", "2026-11-24"))
                    assert set(conf) <= dag_params[dag_id], (dag_id, conf)
                    worker_env = compose.environment(services["airflow-worker"])
                    if "source_conn_id" in conf:
                        assert f"AIRFLOW_CONN_{conf['source_conn_id'].upper()}" in worker_env
                # Airflow 3's default, as the UI's Trigger button: the DAGs file such runs under their run_after day
                assert "--logical-date" not in words, words
            if "connections" in rest and "test" in rest:
                assert f"AIRFLOW_CONN_{rest[-1].upper()}" in compose.environment(services[service])
        if "--scale" in words:
            name, count = words[words.index("--scale") + 1].split("=")
            assert name == "airflow-worker" and int(count) > 1
    assert {"airflow-scheduler", "airflow-cli"} <= seen_services

    # the host-side query points at what the stack publishes and where the DAGs write
    exports = dict(w.split("=", 1) for words in commands if words[0] == "export" for w in words[1:])
    minio = compose.environment(services["minio"])
    minio_port = next(p.split(":")[1] for p in services["minio"]["ports"] if p.endswith(":9000"))
    assert exports["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{minio_port}"
    assert (exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    query = next(words for words in commands if words[0] == "python")
    assert query[1] == "docs/snippets/query_duckdb.py" and (REPO / query[1]).exists()
    assert query[2] == compose.environment(services["airflow-worker"])["AIRFLOW__LINKAI__TRANSCRIPTS_URL"]


def test_quickstart_commands_are_the_ones_ci_runs():
    commands = shell_commands((SNIPPETS / "quickstart.sh").read_text())
    assert commands == [["bash", "scripts/demo.sh"], ["bash", "scripts/test.sh"]]
    ci = (REPO / ".ci" / "run").read_text()
    for _, script in commands:
        assert (REPO / script).exists(), script
        assert script in ci, f".ci/run no longer runs {script}"
