"""Benchmark of the Transcripts page (issue 18), over real HTTP to a real ``airflow api-server``.

    .venv/bin/python bench/ui.py                      # 1,000,000 rows (about 4 minutes with the data)
    .venv/bin/python bench/ui.py --rows 100000        # smaller
    .venv/bin/python bench/run.py --scenario ui       # the same, as a row of the bench table

Makes a dataset of call transcripts (``bench/ui_data.py``: 60 days x 4 parts, the first half in
schema v2, per-channel calls, ~2 % failures), starts an api-server on it (SQLite metadata DB,
SimpleAuthManager, ``[linkai] ui_refresh_seconds = 0`` so every request lists the dataset: the worst
case) and measures, with a token from ``POST /auth/token``:

* the first request (the cache is built from every part), and the first after a restart;
* searches for phrases from common to absent, first page and second, interleaved, ``--repeat`` times;
* the days view (60 days) and a day's failure reasons; a run's files;
* a request after a new part landed (the refresh reads only that part);
* the bytes the page transfers before its first search (HTML, script, style sheet, icons, the status
  call), compressed as the api-server sends them;
* the api-server's resident memory.

Targets: a search over 1,000,000 rows answers in <= 1 s, the days view in <= 1 s, the page
transfers <= 300 KB before its first search.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from bench.ui_data import write_dataset  # noqa: E402

# A new phrase of each kind per round: a search's ranked hits are cached (the next page and a repeat
# are cheap), so every round's first page is a cold scan of every current transcript.
PHRASES = {
    "a common word": ("refund", "invoice", "password", "appointment", "address"),
    "a common phrase": (
        "charged twice",
        "cancel my subscription",
        "speed up the delivery",
        "call back",
        "the box was completely crushed",
    ),  # fmt: skip
    "a rarer phrase": (
        "the washing machine arrived damaged",
        "refund for the kettle",
        "replacement tablet free",
        "the printer is out of stock",
        "headset because it stopped",
    ),  # fmt: skip
    "an absent phrase": ("zebra crossing", "quantum physics", "mortgage application", "volcano", "xylophone"),
}
TARGET_SEARCH_S = 1.0
TARGET_DAYS_S = 1.0
TARGET_PAGE_BYTES = 300 * 1024


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``airflow api-server`` with the provider installed, on the dataset; its peak RSS sampled."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "AIRFLOW__API__BASE_URL": self.url}
        self.log = log
        airflow = str(Path(sys.executable).with_name("airflow"))
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [airflow, "api-server", "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
            )  # fmt: skip
        self.peak_rss = 0
        self._stop = threading.Event()
        deadline = time.monotonic() + 180
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api-server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        threading.Thread(target=self._sample, daemon=True).start()
        body = json.dumps({"username": "admin", "password": "admin"}).encode()
        request = urllib.request.Request(f"{self.url}/auth/token", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            self.token = json.loads(answer.read())["access_token"]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5) as answer:
                return answer.status == 200
        except OSError:
            return False

    def _sample(self) -> None:
        proc = psutil.Process(self.process.pid)
        while not self._stop.is_set():
            try:
                rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
            except psutil.Error:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(0.05)

    def rss(self) -> int:
        proc = psutil.Process(self.process.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])

    def get(self, path: str, gzip: bool = False) -> tuple[float, bytes, int]:
        """(seconds, body as sent, header bytes) of one GET with the token."""
        headers = {"Authorization": f"Bearer {self.token}"}
        if gzip:
            headers["Accept-Encoding"] = "gzip"
        request = urllib.request.Request(self.url + path, headers=headers)
        started = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as answer:
            body = answer.read()
            head = sum(len(k) + len(v) + 4 for k, v in answer.headers.items())
        return time.perf_counter() - started, body, head

    def stop(self) -> None:
        self._stop.set()
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def _airflow_env(home: Path, transcripts: Path, cache: Path) -> dict[str, str]:
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"admin": "admin"}))
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API_AUTH__JWT_SECRET": "linkai-bench-ui-" + "0123456789abcdef" * 4,
        "AIRFLOW__API__SECRET_KEY": "linkai-bench-ui-secret-key-0123456789",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        "AIRFLOW__LINKAI__TRANSCRIPTS_URL": f"file://{transcripts}",
        "AIRFLOW__LINKAI__UI_CACHE_DIR": str(cache),
        "AIRFLOW__LINKAI__UI_REFRESH_SECONDS": "0",
        "NO_PROXY": "127.0.0.1,localhost",
    }


def page_weight(server: Server) -> dict[str, int]:
    """Bytes on the wire (compressed bodies and headers) of what the page loads before a search."""
    sizes: dict[str, int] = {}
    _, html, head = server.get("/linkai/", gzip=True)
    sizes["/linkai/"] = len(html) + head
    text = html.decode() if html[:2] != b"\x1f\x8b" else __import__("gzip").decompress(html).decode()
    for ref in sorted(set(re.findall(r'(?:src|href)="(static/[^"]+)"', text))):
        _, body, head = server.get(f"/linkai/{ref}", gzip=True)
        sizes[f"/linkai/{ref}"] = len(body) + head
    _, body, head = server.get("/linkai/api/status", gzip=True)
    sizes["/linkai/api/status"] = len(body) + head
    return sizes


def run(work: Path, rows: int = 1_000_000, repeat: int = 5) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    transcripts = work / "transcripts"
    out: dict[str, Any] = {"rows": rows, "repeat": repeat, "cpus": os.cpu_count()}
    if not transcripts.exists():
        started = time.perf_counter()
        write_dataset(transcripts, rows, days=60, parts_per_day=4)
        out["dataset_write_s"] = time.perf_counter() - started
    out["dataset_bytes"] = sum(p.stat().st_size for p in transcripts.rglob("*.parquet"))
    out["parts"] = len(list(transcripts.rglob("*.parquet")))
    home = work / "airflow"
    (home / "dags").mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = _airflow_env(home, transcripts, cache)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    out["loadavg_1m_before"] = os.getloadavg()[0]

    server = Server(env, work / "api-server.log")
    try:
        out["rss_idle_mb"] = server.rss() / 2**20
        seconds, body, _ = server.get("/linkai/api/status")
        out["first_request_s"] = seconds  # builds the cache from every part
        out["first_refresh"] = json.loads(body)["last_refresh"]
        out["cache_bytes"] = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
        out["page_bytes"] = page_weight(server)
        out["page_bytes_total"] = sum(out["page_bytes"].values())

        timings: dict[str, list[float]] = {}
        totals: dict[str, list[int]] = {}
        days = json.loads(server.get("/linkai/api/days?limit=60")[1])["days"]
        worst_day = max(days, key=lambda d: d["failed"])["dt"]
        run_id = f"scheduled__{days[0]['dt']}T00:00:00+00:00"
        for r in range(repeat):  # every kind of query once per round: rounds see the same machine load
            for kind, phrases in PHRASES.items():
                q = urllib.parse.quote(phrases[r % len(phrases)])
                seconds, body, _ = server.get(f"/linkai/api/search?q={q}&limit=20")
                timings.setdefault(f"search, {kind}", []).append(seconds)
                totals.setdefault(f"search, {kind}", []).append(json.loads(body)["total"])
                seconds, _, _ = server.get(f"/linkai/api/search?q={q}&limit=20&offset=20")
                timings.setdefault("search, next page (cached hits)", []).append(seconds)
            timings.setdefault("days (60)", []).append(server.get("/linkai/api/days?limit=60")[0])
            timings.setdefault("a day's failures", []).append(server.get(f"/linkai/api/days/{worst_day}/failures")[0])
            path = f"/linkai/api/runs/linkai_nightly_transcription/{urllib.parse.quote(run_id)}?limit=50"
            timings.setdefault("a run's files", []).append(server.get(path)[0])
        out["timings"] = {name: _stats(values) for name, values in timings.items()}
        out["search_totals"] = totals
        out["rss_warm_mb"] = server.rss() / 2**20

        # a new part lands: the next request reads only it
        day = (dt.date.today()).isoformat()
        write_dataset(transcripts / "new", 5_000, days=1, parts_per_day=1, seed=99, last_day=dt.date.today())
        (transcripts / f"dt={day}").mkdir(exist_ok=True)
        for part in (transcripts / "new").rglob("*.parquet"):
            part.rename(transcripts / f"dt={day}" / f"late-{part.name}")
        shutil.rmtree(transcripts / "new")
        seconds, body, _ = server.get("/linkai/api/status")
        out["after_new_part_s"] = seconds
        out["after_new_part_refresh"] = json.loads(body)["last_refresh"]
        out["rss_peak_mb"] = server.peak_rss / 2**20
    finally:
        server.stop()
        for late in transcripts.glob("dt=*/late-*.parquet"):
            late.unlink()

    server = Server(env, work / "api-server.log")  # a restart: the cache file is reopened, not rebuilt
    try:
        seconds, body, _ = server.get("/linkai/api/search?q=refund&limit=20")
        out["first_search_after_restart_s"] = seconds
    finally:
        server.stop()

    # the same search without the cache: DuckDB over every part, current row per file, on each request
    import duckdb

    direct = f"""
        SELECT count(*) FROM (
            SELECT text FROM read_parquet('{transcripts}/**/*.parquet', union_by_name = true)
            QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) = 1
        ) WHERE contains(lower(text), lower($q))
    """
    started = time.perf_counter()
    duckdb.connect().execute(direct, {"q": PHRASES["a common phrase"][0]}).fetchall()
    out["without_cache_s"] = time.perf_counter() - started

    cold = {k: v for k, v in out["timings"].items() if k.startswith("search") and "cached" not in k}
    out["search_median_worst_s"] = max(v["median"] for v in cold.values())
    out["search_max_s"] = max(v["max"] for v in cold.values())
    out["days_median_s"] = out["timings"]["days (60)"]["median"]
    out["met"] = {
        "search": out["search_median_worst_s"] <= TARGET_SEARCH_S,
        "days": out["days_median_s"] <= TARGET_DAYS_S and out["timings"]["a day's failures"]["median"] <= 1.0,
        "page": out["page_bytes_total"] <= TARGET_PAGE_BYTES,
    }
    out["loadavg_1m_after"] = os.getloadavg()[0]
    return out


def report(res: dict[str, Any]) -> str:
    lines = [
        f"rows {res['rows']:,} in {res['parts']} parts ({res['dataset_bytes'] / 2**20:.0f} MiB Parquet), "
        f"{res['cpus']} CPUs, load {res['loadavg_1m_before']:.1f} -> {res['loadavg_1m_after']:.1f}",
        f"first request (builds the cache): {res['first_request_s']:.1f} s; cache file "
        f"{res['cache_bytes'] / 2**20:.0f} MiB; after a restart, first search "
        f"{res['first_search_after_restart_s']:.2f} s",
        f"after a new part of {res['after_new_part_refresh']['rows_added']:,} rows: {res['after_new_part_s']:.2f} s",
        f"the same search without the cache (DuckDB over every part): {res['without_cache_s']:.2f} s",
        f"api-server RSS: idle {res['rss_idle_mb']:.0f} MiB, warm {res['rss_warm_mb']:.0f} MiB, "
        f"peak {res['rss_peak_mb']:.0f} MiB",
        f"page before the first search: {res['page_bytes_total'] / 1024:.1f} KiB "
        + ", ".join(f"{k} {v / 1024:.1f}" for k, v in res["page_bytes"].items()),
        "",
        "| query | min s | median s | max s | matches |",
        "|---|---|---|---|---|",
    ]
    for name, s in res["timings"].items():
        found = res["search_totals"].get(name)
        total = f"{min(found):,} to {max(found):,}" if found else ""
        lines.append(f"| {name} | {s['min']:.3f} | {s['median']:.3f} | {s['max']:.3f} | {total} |")
    lines.append("")
    lines.append(f"targets met: {res['met']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=5, choices=range(1, 6), help="rounds of every query (1-5, default 5)")
    p.add_argument("--work", default=None, help="folder for the dataset (kept, and reused when it exists)")
    args = p.parse_args(argv)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="linkai-bench-ui-"))
    try:
        res = run(work, args.rows, args.repeat)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(report(res))
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "ui-latest.json").write_text(json.dumps(res, indent=2, default=str))
    return 0 if all(res["met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
