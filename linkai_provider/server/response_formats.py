"""The ``response_format`` form field: a recognition rendered as OpenAI's transcription API does.

| value | body | content type |
| --- | --- | --- |
| ``json`` (default) | ``{"text": "..."}`` | ``application/json`` |
| ``text`` | the text and a newline | ``text/plain; charset=utf-8`` |
| ``srt`` | SubRip cues, one per segment (``00:00:01,500 --> 00:00:03,000``) | ``text/plain; charset=utf-8`` |
| ``vtt`` | WebVTT: ``WEBVTT``, then one cue per segment (``00:00:01.500 --> ...``) | ``text/vtt; charset=utf-8`` |
| ``verbose_json`` | ``task``, ``language``, ``duration``, ``text``, ``segments`` | ``application/json`` |

SubRip has no registered media type, and players and OpenAI's SDK read it as plain text; WebVTT's
is ``text/vtt``. What the segments and the language are is up to the engine: Whisper's own, or
for the digest engine one segment over the whole audio (see :mod:`.engines`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from linkai_provider.server.errors import ApiError

__all__ = ["RESPONSE_FORMATS", "Recognition", "Segment", "check_response_format", "language_name", "render"]

RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")


@dataclass(frozen=True)
class Segment:
    """One span of the recognition, with the fields OpenAI's ``verbose_json`` gives a segment."""

    id: int
    start: float
    end: float
    text: str
    seek: int = 0
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seek": self.seek,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "tokens": list(self.tokens),
            "temperature": self.temperature,
            "avg_logprob": self.avg_logprob,
            "compression_ratio": self.compression_ratio,
            "no_speech_prob": self.no_speech_prob,
        }


@dataclass(frozen=True)
class Recognition:
    """What an engine heard: the text, its segments, the language (ISO-639-1 code) and the duration."""

    text: str
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    language: str | None = None
    duration: float | None = None


def check_response_format(value: str | None) -> str:
    """The ``response_format`` field, checked (absent or empty: ``json``).

    :raises ApiError: 400 naming the field and the accepted values.
    """
    fmt = (value or "json").strip().lower()
    if fmt not in RESPONSE_FORMATS:
        raise ApiError(
            400,
            f"Invalid request format: response_format must be one of {', '.join(RESPONSE_FORMATS)}; got {value!r}",
            param="response_format",
        )
    return fmt


@lru_cache(maxsize=128)
def language_name(code: str | None) -> str | None:
    """OpenAI's ``language`` of ``verbose_json``: the English name, lower-case (``en`` -> ``english``).

    Babel (a dependency of Airflow's task SDK) knows the names; an unknown code is given as it is.
    """
    if not code:
        return None
    try:
        from babel import Locale, UnknownLocaleError

        name = Locale.parse(code.replace("-", "_")).english_name
    except (ImportError, ValueError, UnknownLocaleError):
        return code
    return name.split(" (")[0].lower() if name else code


def _timestamp(seconds: float, separator: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(rec: Recognition, separator: str, numbered: bool) -> list[str]:
    cues = []
    for number, seg in enumerate(rec.segments, start=1):
        head = f"{number}\n" if numbered else ""
        span = f"{_timestamp(seg.start, separator)} --> {_timestamp(seg.end, separator)}"
        cues.append(f"{head}{span}\n{seg.text.strip()}\n\n")
    return cues


def render(fmt: str, rec: Recognition) -> tuple[bytes, str]:
    """The body and content type of ``rec`` in ``fmt`` (one of :data:`RESPONSE_FORMATS`)."""
    if fmt == "text":
        return (rec.text + "\n").encode("utf-8"), "text/plain; charset=utf-8"
    if fmt == "srt":
        return "".join(_cues(rec, ",", numbered=True)).encode("utf-8"), "text/plain; charset=utf-8"
    if fmt == "vtt":
        return "".join(["WEBVTT\n\n", *_cues(rec, ".", numbered=False)]).encode("utf-8"), "text/vtt; charset=utf-8"
    if fmt == "verbose_json":
        payload: dict[str, Any] = {
            "task": "transcribe",
            "language": language_name(rec.language),
            "duration": round(rec.duration, 3) if rec.duration is not None else None,
            "text": rec.text,
            "segments": [seg.as_json() for seg in rec.segments],
        }
    else:
        payload = {"text": rec.text}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8"), "application/json"
