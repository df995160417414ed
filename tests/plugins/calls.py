"""A small transcript dataset whose every answer is known: two days, two DAGs, a file that failed on
the first day and succeeded on the second, a call transcribed per channel, a row written outside any
DAG, a transcript full of quotes and SQL, and 25 files saying "order status" for paging.

Day 1 is written in schema v2 (no ``segments.channel``, no ``warnings``), day 2 in v3: the page must
read both as one dataset.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from linkai_provider.dataset import SCHEMA

D1, D2 = "2026-11-02", "2026-11-03"
SALES, SUPPORT = "sales_calls", "support_calls"
RUN1 = f"scheduled__{D1}T00:00:00+00:00"
RUN2 = f"manual__{D2}T10:00:00+00:00"
ROOT_AUDIO = "s3://calls/audio"
QUOTED = """he said '; DROP TABLE rows; -- and "100% sure" it's O'Brien_s fault"""
V2_SEGMENT = pa.struct([("start_s", pa.float64()), ("end_s", pa.float64()), ("text", pa.string())])
V2 = pa.schema([SCHEMA.field(n) for n in SCHEMA.names if n not in ("segments", "warnings")]).append(
    pa.field("segments", pa.list_(V2_SEGMENT))
)


def uri(name: str) -> str:
    return f"{ROOT_AUDIO}/{name}"


def row(name: str, day: str, minute: int, dag_id: str | None, run_id: str | None, **fields) -> dict:
    at = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=2, minutes=minute)
    base = {
        "source_uri": uri(name),
        "source_fingerprint": f"{name}-v1",
        "audio_format": "wav",
        "transcribed_at": at,
        "endpoint": "https://api.linkai.cloud",
        "dag_id": dag_id,
        "task_id": "transcribe" if dag_id else None,
        "run_id": run_id,
        "map_index": -1,
        "try_number": 1,
        "attempts": 1,
    }
    if "error_type" in fields:
        return {**base, "status": "failed", **fields}
    segments = fields.pop("segments")
    text = " ".join(s["text"] for s in segments)
    return {
        **base,
        "status": "ok",
        "text": text,
        "segments": segments,
        "chunks": len(segments),
        "audio_duration_s": max(s["end_s"] for s in segments),
        **fields,
    }


def seg(start: float, end: float, text: str, channel: int | None = None) -> dict:
    return {"start_s": start, "end_s": end, "text": text, "channel": channel}


DAY1 = [
    row("call-a.wav", D1, 1, SALES, RUN1, segments=[
        seg(0, 60, "hello thank you for calling how can i help you today"),
        seg(60, 125, "i would like a refund for my order please it arrived broken"),
    ]),
    row("call-b.wav", D1, 2, SALES, RUN1, error_type="LinkAIServerError", error_code=503,
        error_message="Service temporarily unavailable after 6 attempts"),
    row("call-c.wav", D1, 3, SALES, RUN1, error_type="FileTooLargeError", error_code=413,
        error_message="File is larger than max_file_size_bytes (104857600)"),
    row("note-z.wav", D1, 4, None, None, segments=[seg(0, 12, "internal note the refund for my order policy changed")]),
]  # fmt: skip
DAY2 = [
    row("call-b.wav", D2, 1, SUPPORT, RUN2, segments=[seg(0, 40, "you charged me for the delivery but it never came")]),
    row("call-d.wav", D2, 2, SUPPORT, RUN2, segments=[
        seg(0, 60, "thanks for holding what seems to be the problem", 0),
        seg(0, 60, "hi yes my card was used in a shop i have never been to", 1),
        seg(125, 150, "and then i was charged twice for the same thing", 1),
        seg(125, 150, "i can see both payments here", 0),
    ]),
    row("call-e.wav", D2, 3, SUPPORT, RUN2, segments=[seg(0, 30, QUOTED)]),
    row("call-f.wav", D2, 4, SUPPORT, RUN2, error_type="LinkAIServerError", error_code=503,
        error_message="Service temporarily unavailable after 6 attempts"),
    *[
        row(f"bulk-{i:02d}.wav", D2, 10 + i, SUPPORT, RUN2, segments=[seg(0, 20 + i, f"order status check number {i}")])
        for i in range(25)
    ],
]  # fmt: skip


def ok_seconds(rows: list[dict], dag_ids: set[str | None] | None = None) -> float:
    chosen = [r for r in rows if dag_ids is None or r["dag_id"] in dag_ids]
    return sum(r["audio_duration_s"] for r in chosen if r["status"] == "ok")


def write(root: Path) -> Path:
    """The dataset under ``root`` (a local folder): day 1 in v2, day 2 in v3 (two parts)."""
    (root / f"dt={D1}").mkdir(parents=True, exist_ok=True)
    (root / f"dt={D2}").mkdir(parents=True, exist_ok=True)
    v2 = pa.Table.from_pylist(DAY1, schema=SCHEMA).drop_columns(["warnings"]).cast(V2)
    pq.write_table(v2, root / f"dt={D1}" / "part-0001.parquet")
    pq.write_table(pa.Table.from_pylist(DAY2[:4], schema=SCHEMA), root / f"dt={D2}" / "part-0002.parquet")
    pq.write_table(pa.Table.from_pylist(DAY2[4:], schema=SCHEMA), root / f"dt={D2}" / "part-0003.parquet")
    return root


def write_part(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
