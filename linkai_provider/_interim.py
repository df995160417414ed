"""TEMPORARY stand-in for linkai_provider.journal while it is being written (removed when it lands)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

from linkai_provider.dataset import TranscriptWriter


@dataclass(frozen=True)
class WriterIdentity:
    writer_id: str

    @classmethod
    def new(cls, **ids: Any) -> WriterIdentity:
        return cls(
            f"{ids.get('run_id') or 'cli'}-m{ids.get('map_index')}-t{ids.get('try_number')}-{uuid.uuid4().hex[:8]}"
        )


@dataclass
class _Closed:
    part: str | None
    rows: int
    adopted_rows: int = 0


class Journal:
    def __init__(self, fs: Any, root: str, identity: WriterIdentity, logger: Any = None) -> None:
        self.writer = TranscriptWriter(fs, root, part_prefix="part", checkpoint_rows=10**9, checkpoint_seconds=10**9)
        self.healthy = threading.Event()
        self.healthy.set()
        self.error = None
        self.on_fatal = None

    def check_writable(self) -> None:
        self.writer.check_writable()

    def open(self) -> None:
        pass

    def append(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.writer.add(row)

    def close(self) -> _Closed:
        path = self.writer.flush()
        return _Closed(path, self.writer.rows_written)
