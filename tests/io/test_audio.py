"""audio_duration_s: the header's duration agrees with PyAV decoding the whole file."""

from __future__ import annotations

import io

import av
import pytest

from linkai_provider.io.audio import amr_duration, probe_duration, webm_duration
from tests.conftest import FORMATS


def decoded_seconds(path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(frame.samples for frame in container.decode(stream)) / stream.sample_rate


@pytest.mark.parametrize("fmt", FORMATS)
def test_duration_matches_decoding(fmt, speech):
    path = next(speech.dir.glob(f"*.{fmt}"))
    with open(path, "rb") as fh:
        seconds = probe_duration(fh, fmt)
        assert fh.tell() == 0  # ready for the upload
    if fmt == "mpeg":
        assert seconds is None  # a program stream has no duration in its header
    else:
        assert seconds == pytest.approx(decoded_seconds(path), rel=0.04, abs=0.05), fmt


def test_malformed_headers_give_none_not_errors(speech):
    amr = next(speech.dir.glob("*.amr")).read_bytes()
    webm = next(speech.dir.glob("*.webm")).read_bytes()
    assert amr_duration(io.BytesIO(amr[:-3])) is None  # truncated last frame
    assert amr_duration(io.BytesIO(b"#!AMR\n" + b"\x64" * 40)) is None  # frame type 12 is reserved
    assert webm_duration(webm[:20]) is None  # header cut before Info
    assert webm_duration(b"not a webm file at all") is None
    for fmt in FORMATS:
        assert probe_duration(io.BytesIO(b"\x00" * 64), fmt) is None
