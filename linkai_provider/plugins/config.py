"""What the Transcripts page reads: the dataset (the ``[linkai]`` section every component shares) and
where the api-server keeps its local cache of it.

Read when the page first answers, never at import: a plugin module is imported by every Airflow
process, and the api-server's configuration is complete only once it starts.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

SECTION = "linkai"
DEFAULT_REFRESH_SECONDS = 30.0
DEFAULT_MEMORY_LIMIT = "512MB"


@dataclass(frozen=True)
class PageConfig:
    """The dataset the page shows and how the api-server caches it.

    :param transcripts_url: the dataset root (``[linkai] transcripts_url``); None when not configured.
    :param conn_id: the storage connection of the dataset (``[linkai] transcripts_conn_id``).
    :param cache_dir: where the local DuckDB cache of the dataset lives (``[linkai] ui_cache_dir``). It
        holds transcripts: it is created readable by the api-server's user only.
    :param refresh_seconds: how old the dataset's listing may be before a request lists it again
        (``[linkai] ui_refresh_seconds``); new parts appear on the page within this time.
    :param memory_limit: DuckDB's memory limit for the cache (``[linkai] ui_memory_limit``).
    """

    transcripts_url: str | None
    conn_id: str | None
    cache_dir: Path
    refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    memory_limit: str = DEFAULT_MEMORY_LIMIT

    @property
    def cache_key(self) -> str:
        """Names the cache file: one cache per dataset and connection, never shared between them."""
        raw = f"{self.transcripts_url}\0{self.conn_id or ''}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def load() -> PageConfig:
    """The settings as the api-server has them now (cheap: read on every request, so a changed
    setting takes effect without a restart where Airflow's configuration allows it)."""
    from airflow.configuration import conf

    from linkai_provider import settings

    url, conn_id = settings.transcripts_url(), settings.transcripts_conn_id()
    default_cache = Path(tempfile.gettempdir()) / "airflow-linkai-ui"
    refresh = conf.getfloat(SECTION, "ui_refresh_seconds", fallback=DEFAULT_REFRESH_SECONDS)
    if refresh < 0:
        raise ValueError(f"[{SECTION}] ui_refresh_seconds must be >= 0, not {refresh}")
    return PageConfig(
        transcripts_url=url.rstrip("/") if url else None,
        conn_id=conn_id,
        cache_dir=Path(conf.get(SECTION, "ui_cache_dir", fallback="") or default_cache),
        refresh_seconds=refresh,
        memory_limit=conf.get(SECTION, "ui_memory_limit", fallback="") or DEFAULT_MEMORY_LIMIT,
    )
