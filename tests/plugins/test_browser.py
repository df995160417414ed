"""The Transcripts page in a real browser: ``airflow api-server`` processes with the provider installed
as users install it (the plugin loaded from its entry point), headless Chromium logged in through
Airflow's login form, and a dataset made by ``dag.test()`` runs of a transcribe task (linkai-server on
loopback: a recording split into pieces, a file the API refuses, one over the size limit) beside
weeks of call transcripts. One api-server reads the dataset from local disk, another from S3 (moto).

Screenshots go to ``artifacts/ui/`` (CI lists them; the docs carry copies).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from bench.ui_data import write_dataset
from linkai_provider.server.audio_fixtures import synthesize, tone
from tests.conftest import free_port
from tests.helpers import get_dag, task_states
from tests.stack.stack import wait_for

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "ui"
DAG_ID = "linkai_test_transcribe"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,1000")  # fmt: skip

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("airflow_home")]


class ApiServer:
    """``airflow api-server`` on a free loopback port, its output in a log file."""

    def __init__(self, name: str, env: dict[str, str], logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = logs / f"api-server-{name}.log"
        env = {**env, "AIRFLOW__API__BASE_URL": self.url, "AIRFLOW__API__WORKERS": "1"}
        airflow = str(Path(sys.executable).with_name("airflow"))
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def wait(self) -> None:
        import urllib.request

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"api-server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_for("api-server health", healthy, 120)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)

    def wait_stopped(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.wait(timeout=1)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


@pytest.fixture(scope="module")
def world(tmp_path_factory, auth_env, linkai_server, moto_endpoint):
    """The dataset (weeks of calls, then today's dag.test() run) and two api-servers serving it."""
    work = tmp_path_factory.mktemp("ui")
    transcripts = work / "transcripts"
    # the api-servers start while the dataset is made: they read it on their first request
    base = {**os.environ, **auth_env, "AIRFLOW__CORE__AUTH_MANAGER": (
        "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"),
        # the LinkAI connection, with its key, is there as on any api-server: the page must never show it
        "AIRFLOW_CONN_LINKAI_DEFAULT": linkai_server.airflow_conn_json}  # fmt: skip
    base.pop("AIRFLOW__LINKAI__UI_REFRESH_SECONDS", None)  # the default, as deployed
    local = ApiServer(
        "local",
        {**base, "AIRFLOW__LINKAI__TRANSCRIPTS_URL": f"file://{transcripts}",
         "AIRFLOW__LINKAI__UI_CACHE_DIR": str(work / "cache-local")},
        work,
    )  # fmt: skip
    s3_conn = {"conn_type": "generic", "extra": {"key": "testing", "secret": "testing",
                                                  "client_kwargs": {"endpoint_url": moto_endpoint}}}  # fmt: skip
    s3 = ApiServer(
        "s3",
        {**base, "AIRFLOW__LINKAI__TRANSCRIPTS_URL": "s3://ui-browser/transcripts",
         "AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID": "ui_s3", "AIRFLOW_CONN_UI_S3": json.dumps(s3_conn),
         "AIRFLOW__LINKAI__UI_CACHE_DIR": str(work / "cache-s3")},
        work,
    )  # fmt: skip
    try:
        yield from _make_world(work, transcripts, local, s3, linkai_server, moto_endpoint)
    finally:
        for server in (local, s3):
            server.stop()
        for server in (local, s3):
            server.wait_stopped()


def _make_world(work, transcripts, local, s3, linkai_server, moto_endpoint):
    today = dt.datetime.now(dt.timezone.utc).date()
    write_dataset(transcripts, rows=1500, days=21, parts_per_day=1, last_day=today - dt.timedelta(days=1),
                  words=(60, 700))  # calls of up to five minutes, sent in pieces of a minute  # fmt: skip

    # today's run: a recording long enough to be sent as three pieces, a short spoken one, a file the
    # API refuses (not audio), one over max_file_size_bytes
    audio = work / "audio"
    tone(audio / "long-call.ogg", "ogg", 150)
    synthesize("thank you for calling customer support", audio / "short-call.wav", "wav")
    (audio / "broken-call.wav").write_bytes(b"RIFF" + os.urandom(4000))
    tone(audio / "huge-call.wav", "wav", 70)  # 2.2 MB
    env = {
        "LINKAI_TEST_MAX_CHUNK_SECONDS": "60",
        "LINKAI_TEST_MAX_FILE_SIZE": "2000000",
        "LINKAI_TEST_MAX_RETRIES": "0",
        "AIRFLOW_CONN_LINKAI_DEFAULT": linkai_server.airflow_conn_json,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        run = get_dag(DAG_ID).test(run_conf={"source": str(audio), "destination": f"{transcripts}/dt={today}"})
    assert task_states(run)["transcribe"] == "failed"  # two files failed: the task says so, after writing every row

    import s3fs

    fs = s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": moto_endpoint})
    fs.mkdir("ui-browser")
    fs.put(str(transcripts), "ui-browser/transcripts", recursive=True)

    try:
        local.wait()
        s3.wait()
    except BaseException:
        print(local.tail(), s3.tail())
        raise
    yield SimpleNamespace(local=local, s3=s3, run=run, today=today.isoformat(), transcripts=transcripts,
                          key=linkai_server.api_key)  # fmt: skip


@pytest.fixture(scope="module")
def browser(tmp_path_factory, world):  # after the servers start, closed before they stop
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, world, request):
    """The browser, logged in to the local api-server; a screenshot and the page's text on failure."""
    login(browser, world.local.url)
    yield browser
    if getattr(request.node, "ui_failed", False):
        shot(browser, f"failure-{request.node.name}")
        browser.switch_to.default_content()
        print(browser.find_element("tag name", "body").text[-3000:], world.local.tail())


# -- the browser -------------------------------------------------------------------------------------------


def login(driver, base: str) -> None:
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    driver.get(base + "/")
    form_or_ui = wait_for("the login form or the UI", lambda: driver.find_elements(By.NAME, "username")
                          or "Dags" in text(driver) and "logged in", 60)  # fmt: skip
    if form_or_ui == "logged in":
        return
    driver.find_element(By.NAME, "username").send_keys("admin")
    driver.find_element(By.NAME, "password").send_keys("admin-pw")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for("logged in", lambda: "/login" not in driver.current_url and "Dags" in text(driver), 60)


def text(driver) -> str:
    try:
        return driver.find_element("tag name", "body").text
    except Exception:
        return ""


def in_page(driver, *needles: str, timeout: float = 60) -> str:
    """Switch into the Transcripts page's frame and wait until it shows every needle."""
    from selenium.webdriver.common.by import By

    def shown():
        driver.switch_to.default_content()
        frames = driver.find_elements(By.CSS_SELECTOR, "iframe[title=Transcripts]")
        if not frames:
            return None
        driver.switch_to.frame(frames[0])
        body = text(driver)
        return body if all(n in body for n in needles) else None

    return wait_for(f"the Transcripts page showing {needles}", shown, timeout)


def shot(driver, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    driver.switch_to.default_content()
    driver.save_screenshot(str(path))
    return path


def piece(world, uri_end: str, index: int) -> tuple[str, str]:
    """The text linkai-server answered for one piece of a file, and the piece's span (minute:second)."""
    rows = duckdb.sql(
        f"SELECT segments FROM read_parquet('{world.transcripts}/dt={world.today}/*.parquet') "
        f"WHERE ends_with(source_uri, '{uri_end}')"
    ).fetchall()
    (segments,) = rows[0]
    start, end = (int(segments[index][k]) for k in ("start_s", "end_s"))
    return segments[index]["text"].split()[0][:30], f"{start // 60}:{start % 60:02d}–{end // 60}:{end % 60:02d}"


# -- what a user does ----------------------------------------------------------------------------------------


def test_search_a_phrase_and_see_the_file_and_the_minute(page, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # from Airflow's navigation, as a user gets there
    page.find_element(By.XPATH, "//a[.//*[normalize-space()='Transcripts'] or normalize-space()='Transcripts']").click()
    wait_for("the Transcripts page", lambda: "/plugin/transcripts" in page.current_url, 30)
    in_page(page, "Search", "Days")
    # what linkai-server answered for the second minute of the call (the digest engine echoes a hash)
    phrase, span = piece(world, "long-call.ogg", 1)
    # the second of three pieces of at most 60 s: balanced, about 50 s each (issue 19's no-short-tail rule)
    start = span.split("–")[0]
    assert 45 <= int(start.split(":")[0]) * 60 + int(start.split(":")[1]) <= 60, span
    box = page.find_element(By.ID, "q")
    box.send_keys(phrase, Keys.ENTER)
    body = in_page(page, "long-call.ogg", span)
    assert "1 file whose current transcript says" in body
    assert world.today in body and "ok" in body
    assert page.find_element(By.CSS_SELECTOR, "mark").text == phrase
    shot(page, "1-search-minute")
    # the parent URL follows the page: a search can be linked to
    page.switch_to.default_content()
    assert "q=" in page.current_url

    # a phrase from the weeks of calls, with per-channel calls among them
    page.get(world.local.url + "/plugin/transcripts/linkai/?view=search&q=" + urllib.parse.quote("refund for the"))
    body = in_page(page, "files whose current transcript says", "1:")  # said after the first minute
    assert "channel 1" in body or "channel 0" in body
    shot(page, "2-search")


def test_open_a_day_and_see_the_failure_reasons(page, world):
    from selenium.webdriver.common.by import By

    page.get(world.local.url + "/plugin/transcripts/linkai/?view=search")
    in_page(page, "Days")
    page.find_element(By.LINK_TEXT, "Days").click()
    in_page(page, "Per day", "Price per audio hour", world.today)
    row = page.find_element(By.CSS_SELECTOR, f"#days-table tr[data-dt='{world.today}']")
    row.click()
    body = in_page(page, f"Failure reasons on {world.today}", "2 files still failing")
    reasons = duckdb.sql(
        f"SELECT error_type, error_message FROM read_parquet('{world.transcripts}/dt={world.today}/*.parquet') "
        "WHERE status = 'failed' ORDER BY source_uri"
    ).fetchall()
    for error_type, message in reasons:
        assert error_type in body and message[:60] in body, (error_type, body)
    assert "broken-call.wav" in body and "huge-call.wav" in body
    # the chart: a bar group per day, and the cost at the price on the page
    assert len(page.find_elements(By.CSS_SELECTOR, "#chart rect.hit")) == 22
    price = page.find_element(By.ID, "price")
    price.clear()
    price.send_keys("1.50")
    assert "at $1.50 per hour" in in_page(page, "at $1.50 per hour")
    page.switch_to.default_content()
    # a bad night from the history, for the docs' picture
    bad = (dt.date.fromisoformat(world.today) - dt.timedelta(days=4)).isoformat()
    page.get(world.local.url + f"/plugin/transcripts/linkai/?view=days&dt={bad}")
    in_page(page, f"Failure reasons on {bad}", "LinkAI")
    shot(page, "3-days")
    # the price is kept (localStorage) for the next visit
    assert "at $1.50 per hour" in in_page(page, "at $1.50 per hour")


def test_the_extra_link_opens_the_runs_transcripts(page, world):
    from selenium.webdriver.common.by import By

    run_id = world.run.run_id
    page.get(f"{world.local.url}/dags/{DAG_ID}/runs/{urllib.parse.quote(run_id)}/tasks/transcribe/details")
    link = wait_for(
        "the task's Transcripts button",
        lambda: page.find_elements(By.XPATH, "//a[normalize-space()='Transcripts' and contains(@href, 'view=run')]"),
        60,
    )[0]
    assert link.get_attribute("target") == "_self"  # stays in Airflow's UI
    wait_for("the task instance's details", lambda: "No Status" not in text(page) and "-1" in text(page), 30)
    shot(page, "4-task-extra-link")
    link.click()
    body = in_page(page, run_id, "broken-call.wav", "huge-call.wav", "long-call.ogg", "short-call.wav")
    assert "All 4" in body and "Failed 2" in body and "ok 2" in body
    assert "over max_file_size_bytes=2000000" in body
    assert "3 pieces" in body  # the long call, sent in three pieces
    # failed files first
    assert body.index("broken-call.wav") < body.index("long-call.ogg")
    assert world.key not in page.page_source
    shot(page, "5-run")


def test_the_page_follows_airflows_dark_mode(page, world):
    page.execute_script("localStorage.setItem('theme', 'dark')")
    try:
        page.get(world.local.url + "/plugin/transcripts/linkai/?view=search&q=" + urllib.parse.quote("charged twice"))
        in_page(page, "files whose current transcript says")
        assert page.execute_script("return document.documentElement.classList.contains('dark')")
        shot(page, "6-search-dark")
    finally:
        page.switch_to.default_content()
        page.execute_script("localStorage.setItem('theme', 'light')")


def test_the_page_loads_nothing_from_elsewhere_and_shows_no_key(page, world):
    page.get(world.local.url + "/plugin/transcripts/linkai/?view=days")
    in_page(page, "Per day")
    resources = page.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(world.local.url + "/linkai/") for r in resources), resources
    assert world.key not in page.page_source
    # nor does any answer of the API, nor the api-server's log
    answers = page.execute_script(
        """
        const paths = ["api/status", "api/search?q=sha256", "api/days", "api/days/" + arguments[0] + "/failures",
                       "api/runs/" + arguments[1] + "/" + encodeURIComponent(arguments[2])];
        return Promise.all(paths.map((p) => fetch(p).then((r) => r.text())));
        """,
        world.today, DAG_ID, world.run.run_id,
    )  # fmt: skip
    assert len(answers) == 5 and "long-call.ogg" in answers[1] and "broken-call.wav" in answers[4]
    assert not [a for a in answers if world.key in a]
    assert world.key not in world.local.log.read_text(errors="replace")


def test_the_page_on_a_dataset_in_s3(browser, world):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    login(browser, world.s3.url)
    browser.get(world.s3.url + "/plugin/transcripts/linkai/?view=search")
    in_page(browser, "s3://ui-browser/transcripts")
    phrase, span = piece(world, "long-call.ogg", 2)
    browser.find_element(By.ID, "q").send_keys(phrase, Keys.ENTER)
    in_page(browser, "long-call.ogg", span, "s3://ui-browser/transcripts")
    shot(browser, "7-search-s3")
    browser.get(world.s3.url + f"/plugin/transcripts/linkai/?view=days&dt={world.today}")
    in_page(browser, f"Failure reasons on {world.today}", "2 files still failing")


# -- the docs' commands ---------------------------------------------------------------------------------------


def section(name: str) -> str:
    text = (REPO / "docs" / "snippets" / "ui.sh").read_text()
    return text.split(f"# --8<-- [start:{name}]\n")[1].split(f"# --8<-- [end:{name}]")[0]


def test_the_docs_api_example_answers(world):
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", section("api")],
        env={**os.environ, "AIRFLOW_URL": world.local.url, "AIRFLOW_USER": "admin", "AIRFLOW_PASSWORD": "admin-pw"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    search, days = (json.loads(line) for line in done.stdout.split("\n") if line.strip())
    assert search["total"] > 0 and len(search["matches"]) == 3
    assert all("refund for the" in m["snippet"] for m in search["matches"])
    assert set(search["matches"][0]) >= {"source_uri", "dt", "status", "start_s", "end_s", "snippet"}
    assert [d["dt"] for d in days["days"]][0] == world.today and len(days["days"]) == 7
    assert set(days["days"][0]) >= {"dt", "files", "ok", "failed", "audio_seconds_billed"}


def test_the_docs_settings_are_the_ones_the_servers_use():
    names = [line.split("=")[0].removeprefix("export ") for line in section("config").splitlines() if "=" in line]
    assert names == ["AIRFLOW__LINKAI__TRANSCRIPTS_URL", "AIRFLOW__LINKAI__TRANSCRIPTS_CONN_ID"]
    extras = section("install").split("[")[1].split("]")[0].split(",")
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert all(extra in declared for extra in extras) and any("duckdb" in d for d in declared["analytics"])
