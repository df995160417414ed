"""The ten audio formats the LinkAI API accepts, and their multipart content types."""

from __future__ import annotations

import posixpath

CONTENT_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "mp4": "audio/mp4",
    "mpeg": "audio/mpeg",
    "mpga": "audio/mpeg",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "webm": "audio/webm",
    "flac": "audio/flac",
    "amr": "audio/amr",
}

SUPPORTED_FORMATS: frozenset[str] = frozenset(CONTENT_TYPES)


def audio_format(path: str) -> str | None:
    """Lower-case extension of ``path`` if it is one of the ten formats, else ``None``."""
    ext = posixpath.splitext(path.rstrip("/"))[1].lstrip(".").lower()
    return ext if ext in SUPPORTED_FORMATS else None


def content_type(filename: str) -> str:
    return CONTENT_TYPES.get(audio_format(filename) or "", "application/octet-stream")
