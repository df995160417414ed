"""Planning a batch: which listed files still need a transcript, and the summary that ends it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fsspec import AbstractFileSystem

from linkai_provider.dataset import TranscriptWriter, completed_keys
from linkai_provider.io.sources import AudioFile, Listing
from linkai_provider.pipeline import BatchResult


@dataclass(frozen=True)
class Plan:
    listing: Listing
    todo: list[AudioFile]

    @property
    def already_done(self) -> int:
        return len(self.listing.files) - len(self.todo)


def plan_batch(listing: Listing, scope: tuple[AbstractFileSystem, str] | None) -> Plan:
    """Drop every file whose ``(source_uri, source_fingerprint)`` has an ``ok`` row in the dataset at
    ``scope``; ``None`` sends everything. A failed row does not count: failed files go again."""
    if scope is None:
        return Plan(listing, list(listing.files))
    done = completed_keys(*scope)
    return Plan(listing, [f for f in listing.files if (f.uri, f.fingerprint) not in done])


def summarize(plan: Plan, result: BatchResult, writer: TranscriptWriter) -> dict[str, Any]:
    """The small summary returned to XCom (and printed by the CLI)."""
    unsupported = len(plan.listing.unsupported)
    return {
        "destination": writer.fs.unstrip_protocol(writer.root),
        "files_found": plan.listing.found,
        "transcribed": result.ok,
        "skipped": plan.already_done + unsupported,
        "skipped_existing": plan.already_done,
        "skipped_unsupported": unsupported,
        "failed": result.failed,
        "not_sent": result.not_sent,
        "audio_seconds": round(result.audio_seconds, 3),
        "parts_written": len(writer.parts),
        "rows_written": writer.rows_written,
    }
