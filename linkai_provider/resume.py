"""Answered pieces, kept and reused: what makes a recording resumable.

Every piece the API answers is handed to a *pieces sink* (the journal's ``append_pieces``) as a
:class:`PieceRecord` the moment its answer arrives, so neither a kill, a piece that fails later nor
a decode error pays for it again. The next try or run gets the records back (``answered``) and
sends only the spans no record covers.

A record is reused only under the same **plan**: ``"v1;mix;f=<hash>"`` or ``"v1;ch<N>;f=<hash>"``.
It names what the text is of (the channels mixed, or one channel) and the form fields it was
transcribed with (``model``, ``language``, a prompt: a hash, never the values): pieces of another
channel mode or other fields are never joined with this run's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from linkai_provider.piece_store import PieceRecord  # the durable store defines the record

__all__ = ["PLAN_VERSION", "PieceRecord", "PiecesSink", "plan_for", "reusable"]

PLAN_VERSION = "v1"


class PiecesSink(Protocol):
    """Where answered pieces go (the journal's ``append_pieces``); must not block on I/O."""

    def __call__(self, records: Sequence[Any]) -> None: ...


def fields_hash(extra_fields: Mapping[str, Any]) -> str:
    raw = json.dumps({str(k): str(v) for k, v in extra_fields.items()}, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def plan_for(channel: int | None, extra_fields: Mapping[str, Any]) -> str:
    """The plan string of pieces of ``channel`` (None: mixed) sent with ``extra_fields``."""
    mode = "mix" if channel is None else f"ch{channel}"
    return f"{PLAN_VERSION};{mode};f={fields_hash(extra_fields)}"


def reusable(
    records: Sequence[Any], channels: Sequence[int | None], extra_fields: Mapping[str, Any]
) -> dict[int | None, list[Any]]:
    """The records of ``records`` this run may join, by channel: same plan, not overlapping each
    other (a later answer for the same span wins)."""
    plans = {plan_for(ch, extra_fields): ch for ch in channels}
    out: dict[int | None, list[Any]] = {ch: [] for ch in channels}
    for record in sorted(records, key=lambda r: r.answered_at, reverse=True):
        if record.plan not in plans or record.channel != plans[record.plan]:
            continue
        ch = plans[record.plan]
        if any(r.start_s < record.end_s and record.start_s < r.end_s for r in out[ch]):
            continue  # an older answer for a span a newer one covers
        out[ch].append(record)
    for kept in out.values():
        kept.sort(key=lambda r: r.start_s)
    return out
