"""How many seconds of audio an upload holds: cheap, without decoding.

Used for ``--latency-ms-per-audio-second``, ``--max-audio-seconds``, the
``X-LinkAI-Audio-Seconds`` response header and the ``audio_seconds_ok`` counter.

1. The file's own header, through the client's
   :func:`linkai_provider.io.audio.probe_duration` (WAV, FLAC, Ogg, MP3, MP4/M4A via mutagen;
   WebM's Matroska ``Duration``; AMR's 20 ms frames). It reads a few kilobytes.
2. When the header tells nothing (MPEG program and transport streams carry no duration; a
   header mutagen cannot parse), PyAV *demuxes* the file: the durations of the first audio
   stream's packets are summed (exact, no decoding), else the stream's or the container's
   own estimate is used. Without PyAV installed (``server-light``) the duration is unknown.

``None`` means "unknown": callers must not treat it as zero seconds.
"""

from __future__ import annotations

import logging
from pathlib import Path

__all__ = ["audio_duration", "demuxed_duration"]

log = logging.getLogger(__name__)

# Content families (see linkai_provider.server.audio.sniff) whose header probe_duration reads;
# every family but "mpeg" has the same name as the client's format.
_HEADER_FAMILIES = frozenset({"wav", "flac", "ogg", "mp3", "mp4", "webm", "amr"})


def audio_duration(path: Path, family: str | None) -> float | None:
    """Seconds of audio in the file at ``path`` of content ``family``, or ``None`` if unknown.

    :param family: the sniffed family (``wav``, ``mp3``, ``mpeg``, ...); ``None`` (not audio)
        gives ``None`` without reading the file.
    """
    if family is None:
        return None
    if family in _HEADER_FAMILIES:
        from linkai_provider.io.audio import probe_duration

        with open(path, "rb") as fh:
            seconds = probe_duration(fh, family)
        if seconds is not None and seconds > 0:
            return float(seconds)
    return demuxed_duration(path)


def demuxed_duration(path: Path) -> float | None:
    """Seconds of the first audio stream per PyAV's demuxer (packets only, nothing decoded)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            total = 0.0
            for packet in container.demux(stream):
                if packet.duration and packet.time_base is not None:
                    total += float(packet.duration * packet.time_base)
            if total > 0:
                return total
            if stream.duration and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / av.time_base
            return None
    except Exception as exc:  # not demuxable: the duration is unknown, the engine decides the rest
        log.debug("no duration from demuxing %s: %s", path, exc)
        return None
