"""A transcript dataset of any size for the ``ui`` benchmark: call-centre English, parts per day, the
provider's own schema (v3, with a share of v2 parts), a few failures per day and per-channel calls.

The text is built from sentences people say on support calls, so letter and word frequencies (what a
substring scan's speed depends on) are those of English, not of random tokens.
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from linkai_provider.dataset import SCHEMA

OPENINGS = (
    "thank you for calling customer support my name is {agent} how can i help you today",
    "good morning you are through to the billing team this is {agent} speaking",
    "hello and thanks for holding this is {agent} from the help desk",
)
SENTENCES = (
    "i am calling about my order number {number} which has not arrived yet",
    "the parcel was supposed to be delivered on {day} but nobody came",
    "i would like a refund for the {item} because it stopped working after a week",
    "can you tell me why i was charged twice on my last invoice",
    "my account was locked after i tried to reset the password",
    "i moved house last month and need to update my address",
    "the {item} arrived damaged and the box was completely crushed",
    "could you please cancel my subscription from the end of this month",
    "i have been waiting for a call back since {day}",
    "the app keeps crashing when i open the settings page",
    "is there any way to speed up the delivery for an extra fee",
    "i never received the confirmation email for my booking",
    "my card was declined even though there is enough money on it",
    "i want to upgrade my plan to include the premium features",
    "the technician did not turn up for the appointment on {day}",
    "i was promised a discount but it is not on my bill",
    "let me check that for you it will only take a moment",
    "i can see the order here it was shipped from our warehouse on {day}",
    "i have issued a credit of {amount} dollars to your account",
    "i am sorry for the inconvenience i will escalate this to my manager",
    "could you confirm the postcode and the first line of your address",
    "for security can you give me the last four digits of the card",
    "the refund should appear on your statement within five working days",
    "i have booked a new appointment for {day} between nine and twelve",
    "is there anything else i can help you with today",
    "thank you for your patience have a lovely rest of the day",
    "the {item} is out of stock at the moment but we expect more next week",
    "i will send you a replacement {item} free of charge",
    "your complaint reference is {number} please keep it for your records",
    "we changed the terms of the contract in {month} and sent a letter to every customer",
)
AGENTS = ("sarah", "james", "priya", "tom", "lucia", "ahmed", "grace", "oliver", "mei", "daniel")
ITEMS = ("router", "washing machine", "phone", "laptop", "kettle", "headset", "printer", "vacuum cleaner", "tablet")
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = ("january", "march", "june", "september", "november")
FAILURES = (
    ("LinkAIServerError", 503, "Service temporarily unavailable after 6 attempts"),
    ("LinkAIBadRequestError", 400, "Audio file could not be decoded"),
    ("FileTooLargeError", 413, "File is larger than max_file_size_bytes (2147483648)"),
    ("LinkAIRateLimitError", 429, "Rate limit exceeded: retry after 30 s"),
)


def sentence(rng: random.Random) -> str:
    return rng.choice(SENTENCES).format(
        agent=rng.choice(AGENTS),
        number=rng.randrange(10_000, 99_999),
        day=rng.choice(DAYS),
        item=rng.choice(ITEMS),
        amount=rng.randrange(5, 200),
        month=rng.choice(MONTHS),
    )


def call(rng: random.Random, words: int) -> list[str]:
    """One call's sentences, about ``words`` words."""
    out = [rng.choice(OPENINGS).format(agent=rng.choice(AGENTS))]
    count = len(out[0].split())
    while count < words:
        out.append(sentence(rng))
        count += len(out[-1].split())
    return out


def row(
    rng: random.Random,
    uri: str,
    when: dt.datetime,
    run_id: str,
    *,
    channels: bool,
    fail_rate: float = 0.02,
    words: tuple[int, int] = (40, 160),
) -> dict:
    """An ``ok`` or ``failed`` row as the operator writes it."""
    base = {
        "source_uri": uri,
        "source_size_bytes": rng.randrange(200_000, 20_000_000),
        "source_fingerprint": f"{rng.getrandbits(48):x}",
        "audio_format": "wav",
        "transcribed_at": when,
        "endpoint": "https://api.linkai.cloud",
        "dag_id": "linkai_nightly_transcription",
        "task_id": "transcribe",
        "run_id": run_id,
        "map_index": -1,
        "try_number": 1,
        "attempts": 1,
        "latency_ms": rng.randrange(300, 9000),
    }
    if rng.random() < fail_rate:
        error_type, code, message = rng.choice(FAILURES)
        return {**base, "status": "failed", "error_type": error_type, "error_code": code, "error_message": message}
    segments: list[dict] = []
    start = 0.0
    for text in call(rng, rng.randrange(*words)):  # pieces of up to a minute, as a split recording's
        seconds = len(text.split()) * 0.42  # ~140 words a minute
        if segments and seconds + segments[-1]["end_s"] - segments[-1]["start_s"] <= 60:
            segments[-1]["text"] += " " + text
            segments[-1]["end_s"] = round(segments[-1]["end_s"] + seconds, 2)
        else:
            channel = len(segments) % 2 if channels else None
            segments.append({"start_s": start, "end_s": round(start + seconds, 2), "text": text, "channel": channel})
        start = segments[-1]["end_s"]
    duration = start
    return {
        **base,
        "content_sha256": f"{rng.getrandbits(128):032x}",
        "audio_duration_s": round(duration, 2),
        "status": "ok",
        "text": " ".join(s["text"] for s in segments),
        "chunks": len(segments),
        "segments": segments,
    }


def write_dataset(
    root: Path,
    rows: int,
    days: int = 60,
    parts_per_day: int = 4,
    seed: int = 7,
    last_day: dt.date | None = None,
    words: tuple[int, int] = (40, 160),
) -> Path:
    """About ``rows`` rows over ``days`` days ending ``last_day`` (default yesterday), ``parts_per_day``
    parts each, fewer on weekends; calls of ``words`` words (140 a minute); the first half of the days
    in schema v2 (no ``channel``, no ``warnings``), the rest v3 with a third of the calls transcribed
    per channel."""
    rng = random.Random(seed)
    v2_segment = pa.struct([(f.name, f.type) for f in SCHEMA.field("segments").type.value_type if f.name != "channel"])
    v2 = pa.schema([SCHEMA.field(n) for n in SCHEMA.names if n not in ("segments", "warnings")]).append(
        pa.field("segments", pa.list_(v2_segment))
    )
    first = (last_day or dt.date.today() - dt.timedelta(days=1)) - dt.timedelta(days=days - 1)
    dates = [first + dt.timedelta(days=d) for d in range(days)]
    weights = [(0.45 if d.weekday() >= 5 else 1.0) * rng.uniform(0.85, 1.15) for d in dates]
    counts = [max(1, round(rows * w / sum(weights))) for w in weights]
    for d, (date, count) in enumerate(zip(dates, counts, strict=True)):
        day = date.isoformat()
        folder = root / f"dt={day}"
        folder.mkdir(parents=True, exist_ok=True)
        old = d < days // 2
        start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc) + dt.timedelta(hours=1)
        per_part = -(-count // parts_per_day)
        fail_rate = 0.12 if d == days - 4 else 0.02 * rng.uniform(0.2, 1.8)  # and one bad night
        for p in range(parts_per_day):
            batch = [
                row(
                    rng,
                    f"s3://calls/{day}/call-{p:02d}-{i:06d}.wav",
                    start + dt.timedelta(seconds=p * 3600 + i),
                    f"scheduled__{day}T00:00:00+00:00",
                    channels=not old and i % 3 == 0,
                    fail_rate=fail_rate,
                    words=words,
                )
                for i in range(min(per_part, count - p * per_part))
            ]
            if not batch:
                continue
            table = pa.Table.from_pylist(batch, schema=SCHEMA)
            if old:
                table = table.drop_columns(["warnings"]).cast(v2)
            pq.write_table(table, folder / f"part-{p:02d}.parquet", compression="snappy")
    return root
