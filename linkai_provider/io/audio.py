"""Audio duration from a file's header, for cost tracking (``audio_duration_s``).

* WAV, FLAC, Ogg, MP3 and MP4/M4A: mutagen reads only the header and index it needs (seeking, not
  reading whole files).
* WebM: the Matroska ``Segment/Info/Duration`` element, read from the first 64 KiB.
* AMR (NB and WB): every frame is 20 ms, so the duration is the frame count; the file is scanned
  (AMR is about 1.6 KB per second of audio, so this is small) up to ``AMR_SCAN_LIMIT``.
* MPEG program streams carry no duration in their header: ``None``.

:func:`measure_duration` (what planning prices a budget with) does not trust a header that claims
more audio than the file's bytes can hold: it demuxes instead (PyAV), as it does for MPEG.
"""

from __future__ import annotations

import contextlib
import logging
import struct
from typing import IO

log = logging.getLogger(__name__)

_MUTAGEN = frozenset({"wav", "flac", "ogg", "mp3", "mpga", "mp4", "m4a"})
AMR_SCAN_LIMIT = 64 * 1024 * 1024
WEBM_HEADER_BYTES = 64 * 1024
MIN_BYTES_PER_SECOND = 500


def probe_duration(fh: IO[bytes], audio_format: str) -> float | None:
    """Seconds of audio per the file's own structure, or ``None``; leaves ``fh`` at position 0."""
    try:
        if audio_format in _MUTAGEN:
            return _mutagen_duration(fh)
        if audio_format == "amr":
            return amr_duration(fh)
        if audio_format == "webm":
            return webm_duration(fh.read(WEBM_HEADER_BYTES))
        return None
    except Exception as exc:  # a header we cannot parse is the server's call, not ours
        log.debug("no duration from header (%s): %s", audio_format, exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            fh.seek(0)


def _mutagen_duration(fh: IO[bytes]) -> float | None:
    import mutagen

    info = mutagen.File(fh)
    length = getattr(getattr(info, "info", None), "length", None)
    return float(length) if length and length > 0 else None


# Frame sizes in bytes, header byte included, by frame type (RFC 4867 section 5.3; 15 = NO_DATA).
_AMR_NB = {0: 13, 1: 14, 2: 16, 3: 18, 4: 20, 5: 21, 6: 27, 7: 32, 8: 6, 15: 1}
_AMR_WB = {0: 18, 1: 24, 2: 33, 3: 37, 4: 41, 5: 47, 6: 51, 7: 59, 8: 61, 9: 6, 14: 1, 15: 1}


def amr_duration(fh: IO[bytes]) -> float | None:
    """20 ms per frame of an AMR or AMR-WB storage-format file; ``None`` if the frames don't parse."""
    data = fh.read(AMR_SCAN_LIMIT + 1)
    if len(data) > AMR_SCAN_LIMIT:
        return None
    if data.startswith(b"#!AMR-WB\n"):
        sizes, pos = _AMR_WB, 9
    elif data.startswith(b"#!AMR\n"):
        sizes, pos = _AMR_NB, 6
    else:
        return None
    frames = 0
    while pos < len(data):
        size = sizes.get((data[pos] >> 3) & 0x0F)
        if size is None or pos + size > len(data):
            return None
        pos += size
        frames += 1
    return frames / 50 if frames else None


_EBML, _SEGMENT, _INFO, _CLUSTER = 0x1A45DFA3, 0x18538067, 0x1549A966, 0x1F43B675
_TIMECODE_SCALE, _DURATION = 0x2AD7B1, 0x4489


def _vint(buf: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = buf[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(buf):
        raise ValueError("bad EBML variable-length integer")
    value = first if keep_marker else first & (0xFF >> length)
    for byte in buf[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, pos + length


def _elements(buf: bytes, pos: int, end: int):
    while pos < end:
        element_id, pos = _vint(buf, pos, keep_marker=True)
        size, pos = _vint(buf, pos, keep_marker=False)
        yield element_id, pos, min(pos + size, end)
        pos += size


def webm_duration(head: bytes) -> float | None:
    """``Segment/Info/Duration × TimecodeScale`` of a WebM/Matroska file, from its first bytes."""
    for element_id, start, _end in _elements(head, 0, len(head)):
        if element_id == _SEGMENT:
            for child_id, child_start, child_end in _elements(head, start, len(head)):
                if child_id == _CLUSTER:
                    return None  # media data began before any Info element
                if child_id == _INFO:
                    return _info_duration(head[child_start:child_end])
        elif element_id != _EBML:
            return None
    return None


def _info_duration(info: bytes) -> float | None:
    scale, duration = 1_000_000, None
    for element_id, start, end in _elements(info, 0, len(info)):
        value = info[start:end]
        if element_id == _TIMECODE_SCALE:
            scale = int.from_bytes(value, "big")
        elif element_id == _DURATION and len(value) in (4, 8):
            duration = struct.unpack(">f" if len(value) == 4 else ">d", value)[0]
    return duration * scale / 1e9 if duration and duration > 0 else None


def audio_checks() -> bool:
    """Whether files are analysed before sending (PyAV and numpy, the ``audio`` extra, installed)."""
    try:
        import av  # noqa: F401
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def demux_duration(fh: IO[bytes]) -> float | None:
    """Seconds of audio by demuxing (no decoding) with PyAV, for formats whose header does not say
    (MPEG program streams); ``None`` without PyAV or if the stream does not demux. Reads the file."""
    try:
        import av
    except ImportError:
        return None
    try:
        fh.seek(0)
        with av.open(fh, mode="r") as container:
            stream = next(iter(container.streams.audio), None)
            if stream is None:
                return None
            end = 0.0
            for packet in container.demux(stream):
                if packet.pts is not None and packet.duration and packet.time_base is not None:
                    end = max(end, float((packet.pts + packet.duration) * packet.time_base))
            start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
            return end - start if end > start else None
    except Exception as exc:
        log.debug("no duration by demuxing: %s", exc)
        return None
    finally:
        with contextlib.suppress(Exception):
            fh.seek(0)


def plausible(seconds: float, size: int) -> bool:
    """Whether ``size`` bytes can hold ``seconds`` of audio: no codec the API takes goes under
    ``MIN_BYTES_PER_SECOND`` (AMR-NB's lowest mode is 600 B/s), so a header that claims more is lying
    (a WAV header that says 4 GB on a file of 1 MB, an interrupted copy's)."""
    return seconds * MIN_BYTES_PER_SECOND <= size + 4096


def measure_duration(fh: IO[bytes], audio_format: str) -> float | None:
    """The header's duration when the file can hold it, else PyAV's by demuxing (MPEG program streams,
    headers that claim more than the file holds); leaves ``fh`` at 0."""
    seconds = probe_duration(fh, audio_format)
    if seconds is not None:
        try:
            size = fh.seek(0, 2)
        finally:
            fh.seek(0)
        if plausible(seconds, size):
            return seconds
        log.info("the header claims %.1f s of audio in %d bytes: measuring by demuxing instead", seconds, size)
        return demux_duration(fh)
    if audio_format == "mpeg":
        seconds = demux_duration(fh)
    return seconds
