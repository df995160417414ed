"""Planning a batch: what is already done, what this run sends within its budgets, and the summary.

Budgets (``max_files``, ``max_audio_seconds``) take files in listing order until the next one would
pass the budget; the rest are *held back* for the next run (incremental). A budget by audio seconds
needs each file's duration before anything is sent: the header tells for nine formats, PyAV's demuxer
for MPEG program streams and for headers that claim more than the file holds. A file whose duration
still cannot be read holds no audio PyAV can read: it is sent on (refused before any request, a failed
row); without PyAV it is held back (it cannot be priced), named in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.io.audio import audio_checks, measure_duration
from linkai_provider.io.sources import AudioFile, Listing
from linkai_provider.pipeline import BatchResult

log = logging.getLogger(__name__)

PROBE_THREADS = 16


@dataclass(frozen=True)
class Budget:
    max_files: int | None = None
    max_audio_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_files is not None and self.max_files < 0:
            raise ValueError(f"max_files must be >= 0 or None, got {self.max_files}")
        if self.max_audio_seconds is not None and self.max_audio_seconds < 0:
            raise ValueError(f"max_audio_seconds must be >= 0 or None, got {self.max_audio_seconds}")

    @property
    def active(self) -> bool:
        return self.max_files is not None or self.max_audio_seconds is not None


@dataclass
class Plan:
    listing: Listing
    todo: list[AudioFile]  # sent this run, in listing order
    already_done: int = 0
    held_back: list[AudioFile] = field(default_factory=list)
    unpriced: list[AudioFile] = field(default_factory=list)  # held back: duration unknown under a seconds budget
    durations: dict[str, float | None] = field(default_factory=dict)  # by uri, when probed

    @property
    def audio_seconds(self) -> float:
        """Audio seconds of ``todo`` whose duration is known (probed plans only)."""
        return sum(self.durations.get(f.uri) or 0.0 for f in self.todo)


def probe_durations(files: Iterable[AudioFile], threads: int = PROBE_THREADS) -> dict[str, float | None]:
    """Each file's duration (header, or demuxing for MPEG), read concurrently (object stores: a GET each)."""

    def one(file: AudioFile) -> tuple[str, float | None]:
        try:
            with file.fs.open(file.path, "rb") as fh:
                return file.uri, measure_duration(fh, file.audio_format)
        except Exception as exc:  # unreadable now: the send will say why, the plan just can't price it
            log.debug("cannot probe %s: %s", file.uri, exc)
            return file.uri, None

    files = list(files)
    if not files:
        return {}
    with ThreadPoolExecutor(min(threads, len(files)), thread_name_prefix="linkai-probe") as pool:
        return dict(pool.map(one, files))


def plan_batch(
    listing: Listing,
    done: set[tuple[str, str]] | None,
    budget: Budget = Budget(),
    *,
    probe: bool = False,
    prober: Callable[[Iterable[AudioFile]], dict[str, float | None]] = probe_durations,
) -> Plan:
    """Drop every file whose ``(source_uri, source_fingerprint)`` is in ``done`` (``ok`` rows; failed rows
    don't count, so failed files go again), then apply the budget. ``probe`` reads every duration
    (dry runs); a seconds budget always does."""
    candidates = (
        list(listing.files) if done is None else [f for f in listing.files if (f.uri, f.fingerprint) not in done]
    )
    plan = Plan(listing, candidates, already_done=len(listing.files) - len(candidates))
    if probe or budget.max_audio_seconds is not None:
        plan.durations = prober(candidates)
    if not budget.active:
        return plan
    todo: list[AudioFile] = []
    free: list[AudioFile] = []
    seconds = 0.0
    for i, file in enumerate(candidates):
        if budget.max_files is not None and len(todo) >= budget.max_files:
            plan.held_back.extend(candidates[i:])
            break
        if budget.max_audio_seconds is not None:
            duration = plan.durations.get(file.uri)
            if duration is None and audio_checks():
                # Nothing in it demuxes as audio: it is refused before any request (a failed row,
                # free), so the budget never holds it back forever (audio owner's hunk).
                free.append(file)
                todo.append(file)
                continue
            if duration is None:
                plan.unpriced.append(file)
                plan.held_back.append(file)
                continue
            if seconds + duration > budget.max_audio_seconds:
                held = {f.uri for f in plan.held_back}
                plan.held_back.extend(f for f in candidates[i:] if f.uri not in held)
                break
            seconds += duration
        todo.append(file)
    plan.todo = todo
    for file in free:
        log.warning(
            "Sending %s although max_audio_seconds cannot price it: nothing in it reads as audio, so it "
            "will be refused before any request (a failed row, nothing paid)",
            file.uri,
        )
    for file in plan.unpriced:
        log.warning(
            "Held back %s: its duration cannot be read, so max_audio_seconds cannot price it "
            "(send it in a run without max_audio_seconds)",
            file.uri,
        )
    return plan


def dry_run_report(plan: Plan, *, max_upload_bytes: int, max_chunk_seconds: float, split: bool) -> dict[str, Any]:
    """What a run would send: files, bytes, audio seconds, unknown durations, files to be split."""
    would_split = [
        f
        for f in plan.todo
        if split and (f.size > max_upload_bytes or (plan.durations.get(f.uri) or 0.0) > max_chunk_seconds)
    ]
    unknown = [f for f in plan.todo if plan.durations.get(f.uri) is None]
    return {
        "would_send": len(plan.todo),
        "would_send_bytes": sum(f.size for f in plan.todo),
        "would_send_audio_seconds": round(plan.audio_seconds, 3),
        "unknown_duration": len(unknown),
        "would_split": len(would_split),
        "would_split_files": [f.uri for f in would_split[:20]],
        "unknown_duration_files": [f.uri for f in unknown[:20]],
    }


def summarize(plan: Plan, result: BatchResult | None, destination: str, **extra: Any) -> dict[str, Any]:
    """The small summary returned to XCom (and printed by the CLI)."""
    unsupported = len(plan.listing.unsupported)
    summary: dict[str, Any] = {
        "destination": destination,
        "files_found": plan.listing.found,
        "transcribed": result.ok if result else 0,
        "skipped": plan.already_done + unsupported,
        "skipped_existing": plan.already_done,
        "skipped_unsupported": unsupported,
        "failed": result.failed if result else 0,
        "not_sent": result.not_sent if result else 0,
        "held_back": len(plan.held_back),
        "audio_seconds": round(result.audio_seconds, 3) if result else 0.0,
        "split": result.split if result else 0,
        "pieces_reused": result.pieces_reused if result else 0,
    }
    figures = result.scheduler if result is not None else {}
    for key in ("requests", "rate_limited", "concurrency", "concurrency_min"):
        summary[key] = figures.get(key, 0)
    summary.update(extra)
    return summary
