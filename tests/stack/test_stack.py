"""The example DAGs on a real Airflow 3 deployment: Postgres, Redis, the CeleryExecutor with two
workers, scheduler, dag-processor, api-server and triggerer, each a process with its own log, and
linkai-server (digest engine) as the API. Configured only the way the docs tell users to (a
``linkai_default`` connection and ``linkai_*`` Variables in the environment, ``[linkai] transcripts_url``
the same for every component). Then the UI in headless Chromium; screenshots go to
``artifacts/stack/``. On failure every component's log tail is printed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import duckdb
import pytest

from linkai_provider.server.audio_fixtures import synthesize
from linkai_provider.server.testing import start_server_process
from tests.stack.stack import REPO, Stack, airflow_env, wait_for

KEY = "sk-stack-" + os.urandom(6).hex()
SHOTS = REPO / "artifacts" / "stack"
NIGHTLY, SHARDED, ANALYTICS = (
    "linkai_nightly_transcription",
    "linkai_sharded_transcription",
    "linkai_transcript_analytics",
)
FORMATS = ("wav", "mp3", "flac", "ogg", "m4a", "webm", "amr", "mp4")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)

pytestmark = pytest.mark.timeout(420)


def speak(folder: Path, first: int, count: int) -> dict[str, Path]:
    """``count`` distinct spoken clips (distinct content: the server counts requests per content hash)."""
    made = {}
    for i in range(first, first + count):
        path = synthesize(
            f"stack test recording number {i} for airflow", folder / f"rec_{i:02d}.{FORMATS[i % 8]}", FORMATS[i % 8]
        )
        made[f"file://{path}"] = path
    return made


def snippet(stack: Stack, section: str, **env: str) -> str:
    """Run one section of docs/snippets/production.sh with bash, in the deployment's environment."""
    text = (REPO / "docs" / "snippets" / "production.sh").read_text()
    body = text.split(f"# --8<-- [start:{section}]\n")[1].split(f"# --8<-- [end:{section}]")[0]
    path = f"{Path(sys.executable).parent}:{stack.env['PATH']}"
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", body], env={**stack.env, "PATH": path, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{section}: {done.stdout}\n{done.stderr}"
    return done.stdout


def not_near_midnight() -> None:
    """Scheduled and manual runs here file under today's date (UTC): start clear of a date change."""
    now = dt.datetime.now(dt.UTC)
    if now.hour == 23 and now.minute >= 54:
        time.sleep((60 - now.minute) * 60 - now.second + 5)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    not_near_midnight()
    workdir = tmp_path_factory.mktemp("stack")
    lake = workdir / "lake"
    server = start_server_process(engine="digest", api_key=KEY)
    stack = Stack(workdir)
    try:
        db_url = stack.start_postgres()
        broker = stack.start_redis()
        conn = {"conn_type": "linkai", "host": server.url, "password": KEY}
        stack.env = airflow_env(
            stack,
            db_url=db_url,
            broker_url=broker,
            extra={
                # what docs/dags.md and docs/production.md tell users to set, here on every component
                "AIRFLOW_CONN_LINKAI_DEFAULT": json.dumps(conn),
                "AIRFLOW_VAR_LINKAI_AUDIO_URL": f"file://{lake}/audio",
                "AIRFLOW__LINKAI__TRANSCRIPTS_URL": f"file://{lake}/transcripts",
                "LINKAI_TASK_RETRIES": "0",
                "LINKAI_POOL": "linkai",
            },
        )
        snippet(stack, "migrate")  # `airflow db migrate`, as docs/production.md says
        snippet(stack, "pool")  # the pool docs/production.md tells users to create
        stack.lake = lake  # type: ignore[attr-defined]
        stack.server = server  # type: ignore[attr-defined]
        yield stack
    finally:
        stack.stop()
        server.stop()


def runs(stack: Stack, dag_id: str) -> list[dict]:
    return stack.api("GET", f"/dags/{dag_id}/dagRuns?order_by=run_after&limit=100")["dag_runs"]


def wait_run(stack: Stack, dag_id: str, run_id: str, timeout: float = 150) -> dict:
    def finished():
        run = stack.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")
        return run if run["state"] in ("success", "failed") else None

    return wait_for(f"{dag_id} run {run_id}", finished, timeout, stack.components, every=1)


def trigger(stack: Stack, dag_id: str, conf: dict | None = None) -> dict:
    """What the UI's Trigger button and `airflow dags trigger` do in Airflow 3: no logical date."""
    return stack.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})


def tis(stack: Stack, dag_id: str, run_id: str) -> list[dict]:
    path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=100"
    return stack.api("GET", path)["task_instances"]


def xcom(stack: Stack, dag_id: str, run_id: str, task_id: str, map_index: int = -1):
    path = (
        f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/return_value"
        f"?map_index={map_index}&deserialize=true&stringify=false"
    )
    return stack.api("GET", path)["value"]


def analytics_runs(stack: Stack, count: int) -> list[dict]:
    """Wait until the analytics DAG has ``count`` finished runs; return them."""

    def done():
        found = runs(stack, ANALYTICS)
        return found if len(found) >= count and all(r["state"] in ("success", "failed") for r in found) else None

    return wait_for(f"{count} analytics run(s)", done, 150, stack.components, every=1)


def transcript_events(stack: Stack) -> list[dict]:
    uri = f"file://{stack.lake}/transcripts"  # type: ignore[attr-defined]
    assets = stack.api("GET", "/assets?limit=100")["assets"]
    (asset,) = [a for a in assets if a["uri"] == uri]
    return stack.api("GET", f"/assets/events?asset_id={asset['id']}&limit=100")["asset_events"]


def test_example_dags_on_celery_with_two_workers_and_the_ui(stack, tmp_path):
    started = time.monotonic()
    lake: Path = stack.lake
    server = stack.server
    now = dt.datetime.now(dt.UTC)
    today, yesterday = now.date().isoformat(), (now - dt.timedelta(days=1)).date().isoformat()
    inputs = speak(lake / "audio" / yesterday, 0, 4)  # the day that ended: the scheduled night reads it
    try:
        stack.start_airflow()

        # 1. the nightly DAG's scheduled run (catchup off: the run for the interval that ended at today's
        #    midnight starts once parsed): it reads and files under the day that ended, not the day starting
        def scheduled():
            found = [r for r in runs(stack, NIGHTLY) if r["run_type"] == "scheduled"]
            return found[0] if found and found[0]["state"] in ("success", "failed") else None

        night = wait_for("the nightly DAG's scheduled run", scheduled, 200, stack.components, every=1)
        assert night["state"] == "success", tis(stack, NIGHTLY, night["dag_run_id"])
        assert night["logical_date"].startswith(yesterday) and night["data_interval_end"].startswith(today)
        assert xcom(stack, NIGHTLY, night["dag_run_id"], "plan_days") == [
            {"source": f"file://{lake}/audio/{yesterday}/", "destination": f"file://{lake}/transcripts/dt={yesterday}/"}
        ]
        assert xcom(stack, NIGHTLY, night["dag_run_id"], "report")["transcribed"] == 4
        analytics_runs(stack, 1)

        # 2. files that land late in the day that ended, then a manual run without a logical date (Trigger
        #    button, `airflow dags trigger`): it reads the day that ended too, and sends only the late files
        inputs |= speak(lake / "audio" / yesterday, 4, 3)
        manual = wait_run(stack, NIGHTLY, trigger(stack, NIGHTLY)["dag_run_id"])
        assert manual["logical_date"] is None
        assert manual["state"] == "success", tis(stack, NIGHTLY, manual["dag_run_id"])
        summary = xcom(stack, NIGHTLY, manual["dag_run_id"], "transcribe", 0)
        assert (summary["transcribed"], summary["skipped_existing"]) == (3, 4)
        assert summary["destination"] == f"file://{lake}/transcripts/dt={yesterday}"
        analytics_runs(stack, 2)

        # 3. the sharded DAG: mapped shards on both workers, one Asset event for the run
        inputs |= speak(lake / "audio" / "bulk", 7, 8)
        shard_run = wait_run(stack, SHARDED, trigger(stack, SHARDED, {"shards": 4})["dag_run_id"])
        shard_tis = tis(stack, SHARDED, shard_run["dag_run_id"])
        assert shard_run["state"] == "success", shard_tis
        mapped = [t for t in shard_tis if t["task_id"] == "transcribe"]
        assert sorted(t["map_index"] for t in mapped) == [0, 1, 2, 3]
        assert {t["pool"] for t in mapped} == {"linkai"}
        assert {t["hostname"] for t in mapped} == {"worker1", "worker2"}, [
            (t["map_index"], t["hostname"]) for t in mapped
        ]
        report = xcom(stack, SHARDED, shard_run["dag_run_id"], "report")
        assert (report["transcribed"], report["skipped"], report["failed"], report["shards_reporting"]) == (8, 7, 0, 4)
        assert report["audio_seconds"] == round(report["audio_seconds"], 3)
        analytics_runs(stack, 3)

        # 4. reruns send nothing, write nothing, announce nothing
        before = server.stats()
        snippet(stack, "trigger")  # `airflow dags trigger`, no logical date
        (rerun_id,) = [
            r["dag_run_id"]
            for r in runs(stack, NIGHTLY)
            if r["dag_run_id"] not in (night["dag_run_id"], manual["dag_run_id"])
        ]
        rerun = wait_run(stack, NIGHTLY, rerun_id)
        assert rerun["logical_date"] is None
        assert rerun["state"] == "success"
        again = xcom(stack, NIGHTLY, rerun["dag_run_id"], "report")
        assert (again["transcribed"], again["rows_written"], again["skipped_existing"]) == (0, 0, 7)
        shard_rerun = wait_run(stack, SHARDED, trigger(stack, SHARDED, {"shards": 4})["dag_run_id"])
        assert shard_rerun["state"] == "success"
        assert xcom(stack, SHARDED, shard_rerun["dag_run_id"], "report")["rows_written"] == 0
        assert server.stats()["requests_total"] == before["requests_total"]

        # 5. one Asset event per run that wrote rows, and analytics ran exactly once for each
        events = transcript_events(stack)
        writers = [night["dag_run_id"], manual["dag_run_id"], shard_run["dag_run_id"]]
        assert sorted(e["source_run_id"] for e in events) == sorted(writers)
        shown = json.loads(
            snippet(stack, "events", AIRFLOW_URL=stack.api_url, AIRFLOW_USER="admin", AIRFLOW_PASSWORD="admin")
        )
        assert sorted(e["extra"]["rows_written"] for e in shown["asset_events"]) == [3, 4, 8]
        finished = analytics_runs(stack, 3)
        assert len(finished) == 3 and all(r["state"] == "success" for r in finished), finished
        for run in finished:
            consumed = stack.api(
                "GET", f"/dags/{ANALYTICS}/dagRuns/{urllib.parse.quote(run['dag_run_id'])}/upstreamAssetEvents"
            )
            assert len(consumed["asset_events"]) == 1, consumed

        # 6. every audio file: one ok row, and exactly one request for its content on the server
        rows = duckdb.sql(
            f"SELECT source_uri, status, content_sha256 FROM read_parquet('{lake}/transcripts/*/*.parquet')"
        ).fetchall()
        assert sorted(r[0] for r in rows) == sorted(inputs)
        assert {r[1] for r in rows} == {"ok"}
        stats = server.stats()
        assert stats["transcriptions_ok"] == len(inputs) == 15
        assert {stats["ok_by_sha256"][r[2]] for r in rows} == {1}

        # 7. the connection test through the REST API: success and failure
        body = {"connection_id": "linkai_probe", "conn_type": "linkai", "host": server.url, "password": KEY}
        ok = stack.api("POST", "/connections/test", body)
        assert ok["status"] is True and "accepted the API key" in ok["message"], ok
        bad = stack.api("POST", "/connections/test", {**body, "password": "sk-wrong"})
        assert bad["status"] is False and "refused the API key" in bad["message"], bad
        assert KEY not in json.dumps([ok, bad])

        # 8. the UI in headless Chromium
        browse(stack, manual["dag_run_id"], tmp_path)

        # 9. the API key is in no component's log and no task log
        logs = [*stack.workdir.glob("logs/*.log"), *stack.workdir.glob("airflow/logs/**/*")]
        assert len([p for p in logs if p.is_file()]) > 10
        leaked = [str(p) for p in logs if p.is_file() and KEY.encode() in p.read_bytes()]
        assert leaked == []
    except BaseException:
        print(stack.logs(60))
        print(f"===== linkai-server =====\n{server.log()[-3000:]}")
        raise
    finally:
        print(f"stack test took {time.monotonic() - started:.0f} s after the database migration")


# -- the browser -------------------------------------------------------------------------------------------


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    return driver


def page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def wait_text(driver, *needles: str, timeout: float = 60) -> str:
    return wait_for(
        f"page showing {needles}",
        lambda: (text := page_text(driver)) and all(n in text for n in needles) and text,
        timeout,
    )


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def login(driver, stack: Stack) -> None:
    from selenium.webdriver.common.by import By

    driver.get(stack.api_url + "/")
    wait_for("login form", lambda: driver.find_elements(By.NAME, "username"), 60)
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("admin")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("logged in", lambda: "/login" not in driver.current_url and "Dags" in page_text(driver), 60)


RECORD_XHR = """
window.__linkai = [];
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) {
  this.addEventListener("load", () => window.__linkai.push([this.responseURL, this.status, this.responseText]));
  return send.apply(this, arguments);
};
"""


def ui_test_button(driver, stack: Stack, conn_id: str) -> tuple[int, bool | None]:
    """Click the connection list's Test button for ``conn_id``: (HTTP status, the test's verdict)."""
    from selenium.webdriver.common.by import By

    driver.get(stack.api_url + "/connections")
    wait_text(driver, conn_id)
    driver.execute_script(RECORD_XHR)
    row = driver.find_element(By.XPATH, f"//tr[.//*[text()='{conn_id}']]")
    row.find_element(By.CSS_SELECTOR, "button[aria-label='Test Connection']").click()

    def answered():
        calls = driver.execute_script("return window.__linkai") or []
        return [c for c in calls if c[0].endswith("/api/v2/connections/test")]

    (_, status, text), *_ = wait_for(f"the Test button's request for {conn_id}", answered, 60)
    return status, json.loads(text).get("status") if status == 200 else None


def browse(stack: Stack, run_id: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser(tmp_path / "chromium-profile")
    try:
        login(driver, stack)

        # the LinkAI connection form: Base URL, API Key and the extras; login, port and schema hidden
        driver.get(stack.api_url + "/connections")
        wait_text(driver, "Add Connection")
        driver.find_element(By.XPATH, "//button[contains(., 'Add Connection')]").click()
        wait_text(driver, "Connection Type")
        driver.find_element(By.XPATH, "//label[contains(., 'Connection ID')]/following::input[1]").send_keys(
            "linkai_ui"
        )
        box = driver.find_element(By.CSS_SELECTOR, "input[role=combobox][aria-describedby^='react-select']")
        box.send_keys("LinkAI")
        wait_for("LinkAI in the type list", lambda: "LinkAI" in page_text(driver), 30)
        box.send_keys(Keys.ENTER)
        form = wait_text(driver, "Base URL", "API Key")
        shot(driver, "1-connection-form")
        for field in ("Timeout (seconds)", "Max retries", "Proxy URL", "Verify TLS", "Extra form fields (JSON)"):
            if field not in page_text(driver):
                driver.find_element(By.XPATH, "//*[contains(text(), 'Extra Fields')]").click()
                wait_text(driver, field)
                break
        form = wait_text(driver, "Timeout (seconds)", "Max retries", "Proxy URL", "Extra form fields (JSON)")
        shot(driver, "2-connection-form-extras")
        labels = [e.text.strip() for e in driver.find_elements(By.TAG_NAME, "label")]
        for hidden in ("Login", "Port", "Schema"):
            assert hidden not in labels, labels
        assert "Host" not in labels and "Password" not in labels, labels

        # the Test button: Airflow 3.3.2's UI posts "port": 0 for our hidden port field, which the API server
        # refuses (400) for a connection stored without a port; stored with port 0, as the docs say, it works
        for conn_id, port in (("linkai_port0", 0), ("linkai_noport", None)):
            conn = {"connection_id": conn_id, "conn_type": "linkai", "host": stack.server.url, "password": KEY}
            stack.api("POST", "/connections", {**conn, "port": port} if port is not None else conn)
        assert ui_test_button(driver, stack, "linkai_port0") == (200, True)
        shot(driver, "5-connection-test-button")
        assert ui_test_button(driver, stack, "linkai_noport")[0] == 400

        # the nightly DAG's docs
        driver.get(f"{stack.api_url}/dags/{NIGHTLY}")
        wait_text(driver, NIGHTLY)
        docs_button = "button[aria-label='Dag Docs']"  # rendered after the DAG's details load (slow under load)
        wait_for("the Dag Docs button", lambda: driver.find_elements(By.CSS_SELECTOR, docs_button), 60)
        driver.find_element(By.CSS_SELECTOR, docs_button).click()
        wait_text(driver, "LinkAI nightly transcription", "Pointing it at a real bucket")
        shot(driver, "3-nightly-dag-docs")

        # a transcribe task's log: Found / Progress / Summary
        driver.get(f"{stack.api_url}/dags/{NIGHTLY}/runs/{urllib.parse.quote(run_id)}/tasks/transcribe/mapped/0")
        log = wait_text(driver, "Found 7 file(s)", "Progress:", "Summary:", timeout=90)
        assert KEY not in log
        shot(driver, "4-transcribe-task-log")
        assert form
    except BaseException:
        shot(driver, "failure")
        (SHOTS / "failure.html").write_text(driver.page_source)
        print(page_text(driver)[-3000:])
        raise
    finally:
        driver.quit()


# -- midnight ----------------------------------------------------------------------------------------------


def idle(stack: Stack) -> bool:
    """No run of any DAG is queued or running."""
    active = stack.api("GET", "/dags/~/dagRuns?state=queued&state=running&limit=1")
    return active["total_entries"] == 0


def test_the_run_due_at_midnight_reads_the_day_that_ended_and_its_late_files(stack, tmp_path):
    """The real scheduler, at midnight, creates the nightly run of the day that ended; the run reads
    that day, and also a file that landed in the day before's folder after that night's run.

    How midnight is reached: every process of the deployment carries a clock the test can move
    (``tests/stack/clock``: time-machine in each Python process, and the database's ``now()``, which is
    what the scheduler compares a DAG's next run time with). The test moves it to 15 s before the coming
    midnight while nothing runs, and the scheduler, dag-processor, workers and api-server then cross
    midnight on their own. Considered and not taken:

    - Debian's libfaketime (0.9.10): with the monotonic clock left real, Python 3.11's ``time.sleep``
      fails with EINVAL; with it faked, the first sleep after a shift waits for the shifted time;
    - a catch-up arrangement: the example DAG has ``catchup=False``, and catch-up runs are created late,
      not at midnight; nor does it let a file land between two runs;
    - a second, lighter deployment (LocalExecutor): this one is already up, so the case costs the one
      run (about 40 s) instead of another migrate and start (about 90 s).

    It runs after the test above (and starts the components if run alone); the clock stays moved until
    the module's stack stops.
    """
    lake: Path = stack.lake
    server = stack.server
    if not any(c.name == "scheduler" for c in stack.components):
        stack.start_airflow()
    wait_for("no run queued or running", lambda: idle(stack), 300, stack.components, every=1)
    now = dt.datetime.now(dt.UTC)
    today, yesterday = now.date(), now.date() - dt.timedelta(days=1)
    midnight = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    # today's files (the day the coming midnight ends), and one late file in the day that ended before
    todays = speak(lake / "audio" / today.isoformat(), 40, 2)
    late = speak(lake / "audio" / yesterday.isoformat(), 42, 1)
    sent_before = server.stats()["requests_total"]
    try:
        due = [r for r in runs(stack, NIGHTLY) if r["logical_date"] and r["logical_date"].startswith(today.isoformat())]
        assert due == []

        stack.shift_clock(midnight.timestamp() - 15 - time.time())  # 23:59:45, nothing running
        early = [r for r in runs(stack, NIGHTLY) if r["run_type"] == "scheduled"]
        assert all(not r["logical_date"].startswith(today.isoformat()) for r in early), early

        def midnight_run():
            found = [r for r in runs(stack, NIGHTLY) if r["run_type"] == "scheduled"
                     and r["logical_date"].startswith(today.isoformat())]  # fmt: skip
            return found[0] if found and found[0]["state"] in ("success", "failed") else None

        night = wait_for("the run due at midnight", midnight_run, 200, stack.components, every=1)
        assert night["state"] == "success", tis(stack, NIGHTLY, night["dag_run_id"])
        # created by the scheduler once its clock passed midnight, for the day that ended
        assert dt.datetime.fromisoformat(night["data_interval_start"]) == midnight - dt.timedelta(days=1)
        assert dt.datetime.fromisoformat(night["data_interval_end"]) == midnight
        assert dt.datetime.fromisoformat(night["run_after"]) == midnight
        queued = dt.datetime.fromisoformat(night["queued_at"])
        assert midnight <= queued < midnight + dt.timedelta(minutes=2), queued
        assert stack.now() > midnight.timestamp()

        run_id = night["dag_run_id"]
        dest = f"file://{lake}/transcripts"
        assert xcom(stack, NIGHTLY, run_id, "plan_days") == [
            {"source": f"file://{lake}/audio/{today}/", "destination": f"{dest}/dt={today}/"},
            {"source": f"file://{lake}/audio/{yesterday}/", "destination": f"{dest}/dt={yesterday}/"},
        ]
        day, looked_back = xcom(stack, NIGHTLY, run_id, "transcribe", 0), xcom(stack, NIGHTLY, run_id, "transcribe", 1)
        assert (day["transcribed"], day["failed"], day["destination"]) == (2, 0, f"{dest}/dt={today}")
        assert (looked_back["transcribed"], looked_back["failed"]) == (1, 0)  # the late file, nothing else
        assert looked_back["destination"] == f"{dest}/dt={yesterday}"
        assert server.stats()["requests_total"] - sent_before == 3

        rows = duckdb.sql(
            "SELECT source_uri, status, regexp_extract(filename, 'dt=([^/]+)', 1) AS dt, transcribed_at"
            f" FROM read_parquet('{lake}/transcripts/*/*.parquet', filename = true)"
        ).fetchall()
        filed = {uri: (status, day_) for uri, status, day_, _ in rows if uri in {**todays, **late}}
        assert filed == {
            **{u: ("ok", today.isoformat()) for u in todays},
            **{u: ("ok", yesterday.isoformat()) for u in late},
        }
        assert all(at >= midnight for uri, _, _, at in rows if uri in {**todays, **late})  # written after midnight
    except BaseException:
        print(stack.logs(60))
        raise
