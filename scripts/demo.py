"""The Python half of ``scripts/demo.sh``: sample speech, waiting for the server, and the final report.

    python scripts/demo.py samples --audio-root DIR --day 2026-11-24     # ten spoken files, one per format
    python scripts/demo.py wait-server --ready-file server.json --pid 1234   # prints the server's URL
    python scripts/demo.py report --transcripts DIR --summary DIR --day 2026-11-24

``report`` exits non-zero unless every sample file of the day has an ``ok`` transcript, the summary
agrees with the transcripts, and the recognised words match the spoken sentences well enough.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

# One sentence per format, spoken by espeak-ng: the report compares the recognised text with these.
SAMPLES: tuple[tuple[str, str], ...] = (
    ("mp3", "the quick brown fox jumps over the lazy dog"),
    ("mp4", "please send the quarterly report before friday"),
    ("mpeg", "the weather in london is cloudy with light rain"),
    ("mpga", "our meeting starts at ten in the morning"),
    ("m4a", "thank you for calling customer support"),
    ("ogg", "the delivery truck arrives at the warehouse every monday"),
    ("wav", "please confirm your order number and shipping address"),
    ("webm", "the new office opens next week in berlin"),
    ("flac", "call me back when you have a moment"),
    ("amr", "the invoice was paid on the first of march"),
)
MIN_WORD_RECALL = 0.6  # Whisper base on synthetic speech gets most words; far less means something broke


def sample_name(index: int, fmt: str) -> str:
    return f"call_{index + 1:02d}.{fmt}"


def expected_text() -> dict[str, str]:
    return {sample_name(i, fmt): text for i, (fmt, text) in enumerate(SAMPLES)}


def cmd_samples(args: argparse.Namespace) -> int:
    from linkai_provider.server.audio_fixtures import synthesize

    folder = Path(args.audio_root) / args.day
    started = time.monotonic()
    for i, (fmt, text) in enumerate(SAMPLES):
        dest = folder / sample_name(i, fmt)
        if not dest.exists():  # keep the bytes (and so the fingerprint) of an earlier run
            synthesize(text, dest, fmt)
    print(f"{len(SAMPLES)} spoken files in {folder} ({time.monotonic() - started:.1f} s)")
    return 0


def cmd_wait_server(args: argparse.Namespace) -> int:
    """Wait for the server's ready file, check /healthz, print its URL; fail if the process dies first."""
    import httpx

    ready = Path(args.ready_file)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if not _alive(args.pid):
            print(f"linkai-server (pid {args.pid}) exited before it was ready", file=sys.stderr)
            return 1
        try:
            url = json.loads(ready.read_text())["url"]
            health = httpx.get(f"{url}/healthz", timeout=5.0).json()
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            time.sleep(0.2)
            continue
        print(url)
        print(f"linkai-server ready at {url}: engine {health.get('engine')}", file=sys.stderr)
        return 0
    print(f"linkai-server was not ready within {args.timeout:.0f} s", file=sys.stderr)
    return 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by the shell) counts as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return True


def words(text: str | None) -> list[str]:
    return re.findall(r"[a-z0-9']+", (text or "").lower())


def cmd_report(args: argparse.Namespace) -> int:
    import duckdb

    con = duckdb.connect()
    transcripts = Path(args.transcripts)
    files = sorted(str(p) for p in (transcripts / f"dt={args.day}").glob("*.parquet"))
    if not files:
        print(f"FAIL: no transcript part files in {transcripts}/dt={args.day}", file=sys.stderr)
        return 1
    rows = con.sql(
        """
        SELECT regexp_extract(source_uri, '[^/]+$') AS file, status, audio_duration_s, text, error_message
        FROM read_parquet($files, hive_partitioning = false)
        QUALIFY row_number() OVER (PARTITION BY source_uri ORDER BY transcribed_at DESC) = 1
        ORDER BY file
        """,
        params={"files": files},
    ).fetchall()

    print(f"\nTranscripts, dt={args.day} (current row per file):")
    print(f"  {'file':<12} {'status':<7} {'secs':>5}  text")
    expected = expected_text()
    problems: list[str] = []
    hit = total = 0
    for file, status, seconds, text, error in rows:
        secs = f"{seconds:5.2f}" if seconds is not None else "    -"
        print(f"  {file:<12} {status:<7} {secs}  {text if status == 'ok' else 'ERROR: ' + str(error)}")
        if status != "ok" or not (text or "").strip():
            problems.append(f"{file}: {status} {error or 'empty text'}")
        if file in expected:
            said = set(words(expected[file]))
            hit += len(said & set(words(text)))
            total += len(said)
    missing = sorted(set(expected) - {r[0] for r in rows})
    if missing:
        problems.append(f"no transcript for {', '.join(missing)}")
    recall = hit / total if total else 0.0
    print(f"  words recognised: {hit} of {total} spoken ({recall:.0%})")
    if recall < MIN_WORD_RECALL:
        problems.append(f"only {recall:.0%} of the spoken words were recognised (want >= {MIN_WORD_RECALL:.0%})")

    summary_file = Path(args.summary) / f"dt={args.day}" / "summary.parquet"
    if not summary_file.exists():
        problems.append(f"no summary at {summary_file}")
    else:
        print(f"\nDaily summary ({summary_file}, via DuckDB):")
        summary = con.sql(
            f"""SELECT dt, files, ok, failed, failure_reasons, words, round(audio_seconds, 2) AS audio_seconds,
                       attempt_rows
                FROM read_parquet('{Path(args.summary)}/*/summary.parquet', hive_partitioning = true)
                ORDER BY dt"""
        )
        print(summary)
        found = con.sql(f"SELECT files, ok, words FROM summary WHERE dt::VARCHAR = '{args.day}'").fetchall()
        day = found[0] if found else None
        ok_rows = [r for r in rows if r[1] == "ok"]
        want = (len(rows), len(ok_rows), sum(len((r[3] or "").split()) for r in ok_rows))
        if day is None or tuple(day) != want:
            problems.append(f"summary (files, ok, words) = {day}, transcripts say {want}")

    if problems:
        print("\nFAIL:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("\nOK: every sample transcribed, summary matches the transcripts.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("samples", help="speak the sample sentences into <audio-root>/<day>/")
    p.add_argument("--audio-root", required=True)
    p.add_argument("--day", required=True)
    p.set_defaults(func=cmd_samples)
    p = sub.add_parser("wait-server", help="wait until linkai-server is ready; print its URL")
    p.add_argument("--ready-file", required=True, help="the server's --ready-file")
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--timeout", type=float, default=180.0)
    p.set_defaults(func=cmd_wait_server)
    p = sub.add_parser("report", help="print the day's transcripts and summary; fail if anything is off")
    p.add_argument("--transcripts", required=True, help="transcript dataset folder (local)")
    p.add_argument("--summary", required=True, help="summary folder (local)")
    p.add_argument("--day", required=True)
    p.set_defaults(func=cmd_report)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
