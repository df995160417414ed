"""Content sniffing of the ten formats, and the audio fixtures other tests rely on."""

from __future__ import annotations

import struct

import av
import pytest

from linkai_provider.server.audio import ACCEPTED_EXTENSIONS, describe_content, sniff, sniff_bytes
from linkai_provider.server.audio_fixtures import AUDIO_FORMATS, normalize_words, word_error_rate

FAMILY = {"mp3": "mp3", "mpga": "mp3", "mp4": "mp4", "m4a": "mp4", "mpeg": "mpeg", "ogg": "ogg", "wav": "wav",
          "webm": "webm", "flac": "flac", "amr": "amr"}


def test_fixture_formats_match_the_api() -> None:
    assert AUDIO_FORMATS == ACCEPTED_EXTENSIONS
    assert set(FAMILY) == set(AUDIO_FORMATS)


@pytest.mark.parametrize("fmt", AUDIO_FORMATS)
def test_synthesized_clip_is_real_audio_and_sniffed(clip, fmt: str) -> None:
    path = clip("hello from the sniffing test", fmt)
    assert sniff(path) == FAMILY[fmt]
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert container.duration and container.duration / 1e6 > 1.0  # seconds of speech
        assert stream.rate > 0


def test_content_decides_not_the_name(clip, tmp_path) -> None:
    wav = clip("hello from the sniffing test", "wav")
    renamed = tmp_path / "speech.mp3"
    renamed.write_bytes(wav.read_bytes())
    assert sniff(renamed) == "wav"
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio at all\n" * 10)
    assert sniff(text) is None


def test_mp3_without_id3_tag_and_behind_a_large_tag(clip, tmp_path) -> None:
    data = clip("hello from the sniffing test", "mp3").read_bytes()
    tag_size = 10 + ((data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F))
    raw = data[tag_size:].lstrip(b"\x00")
    assert sniff_bytes(raw[:4096]) == "mp3"
    # A 200 KB tag (cover art) pushes the first frame past the 64 KiB head.
    big = 200_000
    syncsafe = bytes([(big >> 21) & 0x7F, (big >> 14) & 0x7F, (big >> 7) & 0x7F, big & 0x7F])
    tagged = tmp_path / "cover.mp3"
    tagged.write_bytes(b"ID3\x04\x00\x00" + syncsafe + b"\x00" * big + raw)
    assert sniff(tagged) == "mp3"
    tagged.write_bytes(b"ID3\x04\x00\x00" + syncsafe + b"\x00" * big + b"not audio, text after a tag")
    assert sniff(tagged) is None


@pytest.mark.parametrize(
    ("head", "family"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"),
        (b"fLaC\x00\x00\x00\x22", "flac"),
        (b"OggS\x00\x02" + b"\x00" * 20, "ogg"),
        (b"#!AMR\n\x3c", "amr"),
        (b"#!AMR-WB\n", "amr"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "webm"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "mp4"),
        (b"\x00\x00\x01\xba\x44\x00\x04\x00\x04\x01", "mpeg"),
        ((b"\x47" + b"\x00" * 187) * 3, "mpeg"),
    ],
)
def test_signatures(head: bytes, family: str) -> None:
    assert sniff_bytes(head) == family


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 32,
        b"FORM\x00\x00\x00\x00AIFF",
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84xxxx",  # EBML but not WebM/Matroska
        b"\xff\xf1\x50\x80\x02\x1f\xfc",  # raw AAC (ADTS) is not one of the ten formats
        b"\xff\xff\xff\xff" * 8,  # reserved MPEG header values
        struct.pack(">I", 4) + b"ftyp",  # an impossible box size
    ],
)
def test_non_audio_is_refused(head: bytes) -> None:
    assert sniff_bytes(head) is None


def test_describe_content() -> None:
    assert describe_content(b"hello") == "text"
    assert describe_content(b"\x89PNG\r\n\x1a\n\x00\x00") == "a PNG image"
    assert describe_content(b"\x00\xfe\xff\x01\x80") == "unrecognised binary data"


def test_word_error_rate_normalises_case_punctuation_and_accents() -> None:
    assert normalize_words("¿Cómo está, Usted?") == ["como", "esta", "usted"]
    assert word_error_rate("The quick brown fox.", "the quick brown fox") == 0.0
    assert word_error_rate("a b c d", "a x c") == pytest.approx(0.5)  # one substitution, one deletion
    assert word_error_rate("don't stop", "Dont stop!") == 0.0
