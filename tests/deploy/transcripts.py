"""A small real transcript dataset, written by the provider's own writer, for the docs' snippets.

Two days (``dt=2026-11-20``, ``dt=2026-11-21``) of rows for five files:

* ``a.wav``  failed (503) on day 1, ok on day 2     -> current: ok, "hello again"
* ``b.mp3``  ok on day 1 only                        -> current: ok, "bonjour"
* ``c.ogg``  failed (409) on day 2 only              -> current: failed
* ``d.flac`` ok on day 1, changed and ok on day 2    -> current: ok, "second version"
* ``e.m4a``  ok on day 1, failed (400) on day 2      -> current: failed (the latest row wins)

plus a hidden half-written temporary file that every reader must ignore.

Day 1 is written as an older provider wrote it (schema version 2: no ``warnings`` column, no
``segments.channel``), day 2 by today's writer (version 3), so every query in the docs is run over a
dataset holding both kinds of part, as a user's dataset does after an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from linkai_provider.dataset import SCHEMA, TranscriptWriter

DAY1 = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)
DAY2 = datetime(2026, 11, 21, 1, 0, tzinfo=timezone.utc)
AUDIO = "s3://calls/in"

# (file, day, status, text, error_type, error_code, error_message, duration)
ROWS = [
    ("a.wav", DAY1, "failed", None, "ServiceUnavailableError", 503, "API call exception", 3.5),
    ("b.mp3", DAY1, "ok", "bonjour", None, None, None, 2.0),
    ("d.flac", DAY1, "ok", "first version", None, None, None, 4.0),
    ("e.m4a", DAY1, "ok", "good morning", None, None, None, 1.5),
    ("a.wav", DAY2, "ok", "hello again", None, None, None, 3.5),
    ("c.ogg", DAY2, "failed", None, "ContentModerationError", 409, "Content moderation failed", 6.0),
    ("d.flac", DAY2, "ok", "second version", None, None, None, 4.5),
    ("e.m4a", DAY2, "failed", None, "InvalidRequestError", 400, "Invalid request format", None),
]

# Parts written before version 3 (airflow-provider-linkai 0.2.x): frozen here, as those files are.
SEGMENT_V2 = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string())])
SCHEMA_V2 = pa.schema(
    [f for f in SCHEMA if f.name not in ("segments", "warnings")] + [pa.field("segments", pa.list_(SEGMENT_V2))],
    metadata={"linkai.schema_version": "2", "linkai.writer": "airflow-provider-linkai 0.2.0"},
)

# what "the current transcript per file" must return: source_uri -> (status, text)
CURRENT = {
    f"{AUDIO}/a.wav": ("ok", "hello again"),
    f"{AUDIO}/b.mp3": ("ok", "bonjour"),
    f"{AUDIO}/c.ogg": ("failed", None),
    f"{AUDIO}/d.flac": ("ok", "second version"),
    f"{AUDIO}/e.m4a": ("failed", None),
}


@dataclass(frozen=True)
class Transcripts:
    root: Path  # the folder above the dt= partitions
    rows: int


def row(name: str, when: datetime, status: str, text, error_type, error_code, error_message, duration, i: int):
    return {
        "source_uri": f"{AUDIO}/{name}",
        "source_size_bytes": 1000 + i,
        "source_fingerprint": f"etag:{name}-{when:%d}",
        "content_sha256": None if error_code == 503 else f"{i:064x}",
        "audio_format": name.rsplit(".", 1)[1],
        "audio_duration_s": duration,
        "status": status,
        "text": text,
        "error_type": error_type,
        "error_code": error_code,
        "error_message": error_message,
        "attempts": 6 if error_code == 503 else 1,
        "latency_ms": 1200 + i,
        "transcribed_at": when + timedelta(minutes=i),
        "endpoint": "http://127.0.0.1:8765",
        "dag_id": "linkai_nightly_transcription",
        "task_id": "transcribe",
        "run_id": f"scheduled__{when:%Y-%m-%d}",
        "map_index": -1,
        "try_number": 1,
        "chunks": 1 if status == "ok" else None,
        "segments": [{"start_s": 0.0, "end_s": duration, "text": text}] if status == "ok" else None,
    }


def write_dataset(root: Path) -> Transcripts:
    fs = LocalFileSystem()
    old: list[dict] = []
    writer = TranscriptWriter(fs, str(root / "dt=2026-11-21"), part_prefix="part-2026-11-21", checkpoint_rows=2)
    for i, (name, when, *rest) in enumerate(ROWS):
        record = row(name, when, *rest, i=i)
        if when == DAY1:
            old.append(record)
            continue
        if name == "d.flac":  # a version-3 row: the recording transcribed per channel, with a warning
            record["segments"] = [{"start_s": 0.0, "end_s": 4.5, "text": "second version", "channel": 0}]
            record["warnings"] = ["channel 1 is silent: not sent"]
        writer.add(record)
    writer.close()
    (root / "dt=2026-11-20").mkdir(parents=True)
    for n in range(0, len(old), 2):  # two rows a part, as the old writer's checkpoints left them
        table = pa.Table.from_pylist(old[n : n + 2], schema=SCHEMA_V2)
        pq.write_table(table, root / "dt=2026-11-20" / f"part-2026-11-20-v2-{n:05d}.parquet")
    # a crash between write and rename leaves a hidden temporary file: readers must not see it
    (root / "dt=2026-11-21" / ".part-crashed-00009.parquet.1a2b3c4d.tmp").write_bytes(b"PAR1 half a file")
    return Transcripts(root=root, rows=len(ROWS))


def schema_columns() -> dict[str, str]:
    """column name -> Arrow type name (``string``, ``int64``, ``int32``, ``double``, ``timestamp``)."""
    out = {}
    for field in SCHEMA:
        name = str(field.type)
        if name.startswith("list<"):
            name = field.name  # segments: list<struct<...>>, warnings: list<string>
        out[field.name] = "timestamp" if name.startswith("timestamp") else name
    return out
