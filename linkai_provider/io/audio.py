"""Audio duration from a file's header, for cost tracking (``audio_duration_s``).

mutagen reads only the header and index it needs (seeking, not reading whole files). It knows WAV,
FLAC, Ogg, MP3 and MP4/M4A; for WebM, AMR and MPEG program streams the duration is left null.
"""

from __future__ import annotations

import contextlib
import logging
from typing import IO

log = logging.getLogger(__name__)

_PROBED = frozenset({"wav", "flac", "ogg", "mp3", "mpga", "mp4", "m4a"})


def probe_duration(fh: IO[bytes], audio_format: str) -> float | None:
    """Seconds of audio per the header, or ``None``; leaves ``fh`` at position 0."""
    if audio_format not in _PROBED:
        return None
    try:
        import mutagen

        info = mutagen.File(fh)
        length = getattr(getattr(info, "info", None), "length", None)
        return float(length) if length and length > 0 else None
    except Exception as exc:  # a header mutagen cannot parse is the server's call, not ours
        log.debug("no duration from header (%s): %s", audio_format, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            fh.seek(0)
