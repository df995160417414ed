"""Recognise the ten audio formats by content (magic bytes), not by file name.

A client can name any bytes ``audio.mp3``; the hosted API decides by what the bytes are, and
so does this server. :func:`sniff` reads a few kilobytes and names the container family:

=========  ===========================================  =====================
family     signature                                    extensions it covers
=========  ===========================================  =====================
wav        ``RIFF....WAVE`` / ``RF64....WAVE``          wav
flac       ``fLaC`` (optionally after an ID3v2 tag)     flac
ogg        ``OggS``                                     ogg
webm       EBML header ``1A 45 DF A3`` (WebM/Matroska)  webm
mp4        an ISO-BMFF box (``ftyp``, ``moov``, ...)    mp4, m4a
mpeg       MPEG program stream pack ``00 00 01 BA``     mpeg
           or a transport stream (``0x47`` every 188)
mp3        ID3v2 tag, or two consecutive MPEG audio     mp3, mpga, mpeg
           frame headers (layer I/II/III)
amr        ``#!AMR\\n`` / ``#!AMR-WB\\n``                amr
=========  ===========================================  =====================

Anything else (text, images, AIFF, raw AAC) is not one of the API's formats and is refused.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ACCEPTED_EXTENSIONS", "describe_content", "sniff", "sniff_bytes"]

ACCEPTED_EXTENSIONS: tuple[str, ...] = ("mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm", "flac", "amr")

_HEAD = 64 * 1024
_ISO_BOX_TYPES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}

# MPEG audio bitrate (kbit/s) tables, indexed [version is MPEG-1][layer][index].
_BITRATES = {
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def sniff(path: Path) -> str | None:
    """Return the format family of the file at ``path`` (see the module table), or ``None``."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
        if not head.startswith(b"ID3"):
            return sniff_bytes(head)
        # An ID3v2 tag (cover art can make it large) precedes the audio: look behind it.
        fh.seek(_id3_size(head))
        return _after_id3(fh.read(_HEAD))


def sniff_bytes(head: bytes) -> str | None:
    """Like :func:`sniff`, for the first bytes of a file.

    Best effort when an ID3 tag is longer than ``head``: that is taken as MP3, whereas
    :func:`sniff` reads past the tag.
    """
    if len(head) >= 12 and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"#!AMR\n") or head.startswith(b"#!AMR-WB\n"):
        return "amr"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        # Only the WebM/Matroska doc types; other EBML documents are not audio.
        return "webm" if (b"webm" in head[:64] or b"matroska" in head[:64]) else None
    if len(head) >= 8 and head[4:8] in _ISO_BOX_TYPES:
        box_size = int.from_bytes(head[:4], "big")
        # 0 = "to the end of the file", 1 = a 64-bit size follows; otherwise at least the header.
        if box_size in (0, 1) or box_size >= 8:
            return "mp4"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg"
    if len(head) >= 3 * 188 and all(head[i * 188] == 0x47 for i in range(3)):
        return "mpeg"
    if head.startswith(b"ID3"):
        return _after_id3(head[_id3_size(head) :]) if len(head) > _id3_size(head) else "mp3"
    return "mp3" if _mpeg_audio_at(head, 0) else None


def describe_content(head: bytes) -> str:
    """A short human description of unrecognised content, for error messages."""
    if not head:
        return "empty"
    sample = head[:512]
    try:
        sample.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        pass
    for magic, name in (
        (b"\x89PNG", "a PNG image"),
        (b"\xff\xd8\xff", "a JPEG image"),
        (b"%PDF", "a PDF"),
        (b"PK\x03\x04", "a ZIP archive"),
        (b"FORM", "an IFF/AIFF file"),
    ):
        if sample.startswith(magic):
            return name
    return "unrecognised binary data"


def _id3_size(head: bytes) -> int:
    """Total length of an ID3v2 tag at the start of ``head`` (header + syncsafe size + footer)."""
    if len(head) < 10:
        return len(head)
    size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    footer = 10 if head[5] & 0x10 else 0
    return 10 + size + footer


def _after_id3(data: bytes) -> str | None:
    # Encoders pad the tag with zeros; skip them before looking for the first frame.
    data = data.lstrip(b"\x00")
    if data.startswith(b"fLaC"):
        return "flac"
    if not data:
        return None  # a tag and nothing after it is metadata, not audio
    return "mp3" if _mpeg_audio_at(data, 0) else None


def _frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame whose 4-byte header is given, or ``None``."""
    if len(header) < 4 or header[0] != 0xFF or (header[1] & 0xE0) != 0xE0:
        return None
    version_bits = (header[1] >> 3) & 0x03
    layer_bits = (header[1] >> 1) & 0x03
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 0x03
    if version_bits == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None  # reserved values, "free" bitrate: not something to accept on faith
    layer = 4 - layer_bits
    mpeg1 = version_bits == 3
    bitrate = _BITRATES[(mpeg1, layer)][bitrate_index] * 1000
    sample_rate = _SAMPLE_RATES[version_bits][rate_index]
    padding = (header[2] >> 1) & 0x01
    if layer == 1:
        return (12 * bitrate // sample_rate + padding) * 4
    if layer == 3 and not mpeg1:
        return 72 * bitrate // sample_rate + padding
    return 144 * bitrate // sample_rate + padding


def _mpeg_audio_at(data: bytes, offset: int) -> bool:
    """Two chained valid frame headers (or one that fills the data) make MPEG audio."""
    length = _frame_length(data[offset : offset + 4])
    if length is None:
        return False
    following = offset + length
    if following + 4 > len(data):
        return True
    return _frame_length(data[following : following + 4]) is not None
