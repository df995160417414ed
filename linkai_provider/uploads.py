"""What one file's upload may be, and what sending it gives back: the settings every caller builds
(:class:`FileSettings`), the upload budget a 413 teaches (:class:`UploadBudget`), the :class:`Outcome`
of a file, and small helpers shared by :mod:`linkai_provider.recording`, :mod:`linkai_provider.routing`
and :mod:`linkai_provider.pieces` (which import this module, never each other in a circle)."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from linkai_provider.exceptions import LinkAIFatalError

BUDGET_MARGIN = 0.5  # after a 413 for N bytes (and no stated limit), aim at N/2
MIN_BUDGET_BYTES = 1024 * 1024  # a 413 never teaches a limit under this: it is the file's failure
MAX_SPLIT_PASSES = 10
CHANNEL_MODES = ("mix", "separate")


def human_mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


class UploadBudget:
    """The most one request may carry: ``max_upload_bytes``, lowered when the API says 413."""

    def __init__(self, max_upload_bytes: int, logger: Any) -> None:
        self.configured = max_upload_bytes
        self._bytes = max_upload_bytes
        self._lock = threading.Lock()
        self.log = logger

    @property
    def bytes(self) -> int:
        return self._bytes

    @property
    def learned(self) -> bool:
        return self._bytes < self.configured

    def learn(self, refused: int, stated: int | None = None) -> bool:
        """An upload of ``refused`` bytes got 413: keep the budget under it for the rest of the batch,
        at the limit the 413 ``stated`` (``PayloadTooLargeError.limit_bytes``), else at half of it.

        :return: False when the 413 teaches nothing: the upload was under ``MIN_BUDGET_BYTES``
            (a limit that low is not an upload limit: the file fails on its own) or not under the
            budget in force.
        """
        target = int(refused * BUDGET_MARGIN)
        if stated is not None and stated < refused:
            target = stated - 16 * 1024  # the multipart form's own bytes
        with self._lock:
            if refused < MIN_BUDGET_BYTES or target < MIN_BUDGET_BYTES or refused > self._bytes:
                return False
            if target >= self._bytes:
                return True  # another thread learned as much already
            if self.learned:
                self.log.info("Another 413 for %s: pieces now at most %s", human_mb(refused), human_mb(target))
            else:
                self.log.warning(
                    "The API refused a %s upload as too large (HTTP 413) although max_upload_bytes is %s: its "
                    "limit is lower%s. Long recordings are now split into pieces of at most %s for the rest of "
                    "this batch (set max_upload_bytes=%d to start there).",
                    human_mb(refused),
                    human_mb(self.configured),
                    f" ({human_mb(stated)}, as it says)" if stated is not None and stated < refused else "",
                    human_mb(target),
                    target,
                )
            self._bytes = target
            return True


DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024
DEFAULT_MAX_CHUNK_SECONDS = 600.0


@dataclass(frozen=True)
class FileSettings:
    """What sending one file needs; validated here, where every caller builds it."""

    max_file_size_bytes: int | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_chunk_seconds: float = DEFAULT_MAX_CHUNK_SECONDS
    split_long_audio: bool = True
    piece_format: str | None = None
    channels: str = "mix"
    skip_silence: bool = True  # benchmarks turn it off to measure what it saves
    extra_fields: Mapping[str, Any] = field(default_factory=dict)
    row_context: Mapping[str, Any] = field(default_factory=dict)  # constant columns of every row

    def __post_init__(self) -> None:
        if self.max_file_size_bytes is not None and self.max_file_size_bytes < 1:
            raise ValueError(f"max_file_size_bytes must be positive or None, got {self.max_file_size_bytes}")
        if self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be positive, got {self.max_upload_bytes}")
        if self.max_chunk_seconds <= 0:
            raise ValueError(f"max_chunk_seconds must be positive, got {self.max_chunk_seconds}")
        if self.piece_format not in (None, "ogg", "flac", "mp3"):
            raise ValueError(f"piece_format must be 'ogg', 'flac', 'mp3' or None, got {self.piece_format!r}")
        if self.channels not in CHANNEL_MODES:
            raise ValueError(f"channels must be 'mix' or 'separate', got {self.channels!r}")


@dataclass(frozen=True)
class Outcome:
    row: dict[str, Any] | None  # None: never sent (cancelled); the next run picks the file up
    fatal: LinkAIFatalError | None = None
    split: bool = False  # sent as pieces (cut, or repackaged into one) rather than as it is
    billed_s: float = 0.0  # audio the API answered for this try (each channel counted)
    reused: int = 0  # pieces answered in an earlier try and joined into this row
    hint: str | None = None  # a stereo file whose channels carry different speech, mixed


LOSSLESS_WORST_BYTES_PER_S = 32_000  # 16 kHz mono 16-bit: FLAC never needs much more than raw PCM


def auto_piece_format(budget: int, max_chunk_seconds: float) -> str:
    """FLAC when a whole ``max_chunk_seconds`` piece fits the byte budget even uncompressed (the
    default 600 s is 19.2 MB under 25 MiB): a tenth of Opus's CPU, so pieces are ready as fast as the
    API takes them. Opus otherwise (a learned, lower limit): a sixth of FLAC's bytes."""
    return "flac" if max_chunk_seconds * LOSSLESS_WORST_BYTES_PER_S <= budget else "ogg"


def clock(seconds: float) -> str:
    """56:14.9, or 1:02:03.4 past an hour: how warnings name a place in a recording."""
    tenths = round(seconds * 10)
    minutes, tenth_s = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    secs = f"{tenth_s // 10:02d}.{tenth_s % 10}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes}:{secs}"


def sha256_of(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
