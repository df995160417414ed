"""What an analysed recording is, for its route and its row: as it is or as pieces, and of what kind.

:class:`Assessment` reads one :class:`~linkai_provider.io.analysis.Analysis` against the settings:

* **Duration.** A header is believed when it agrees with what decodes (within a second or 2 %): an
  API that reads headers bills a file sent as it is by it. Otherwise ``audio_duration_s`` is what
  decodes, and the file is never sent as it is (it goes as a piece with an honest header).
* **Warnings** for the row: undecodable stretches, a lost tail, a header that claims another length.
* **Channels**: ``[None]`` (mixed, or identical channels) or each channel on its own; a hint when
  mixed channels carry different speech.
* **As it is, or why not** (:meth:`Assessment.why_not_as_it_is`), and for pieces **how**
  (:meth:`Assessment.piece_route`): packets copied when the codec allows it and the channels stay
  mixed; else FLAC for lossless sources, Opus for the rest at about the source's bit rate per
  channel (10-24 kbit/s): never more bytes than the source.
"""

from __future__ import annotations

from linkai_provider.io.analysis import Analysis
from linkai_provider.io.render import copy_container
from linkai_provider.io.speech import active_frames, speech_spans
from linkai_provider.uploads import FileSettings, auto_piece_format, clock

__all__ = ["Assessment", "lossless"]

# A header whose duration differs from what decodes by more than this is not trusted (nor sent).
HEADER_TOLERANCE_S = 1.0
HEADER_TOLERANCE = 0.02
LOSSLESS = frozenset({"flac", "alac", "wavpack", "ape", "tta", "mlp", "truehd", "shorten", "mp4als", "tak"})
OPUS_MIN_BPS, OPUS_MAX_BPS = 10_000, 24_000


def lossless(codec: str) -> bool:
    """PCM (but telephone µ-law/A-law) and lossless codecs: pieces of them are FLAC."""
    return codec in LOSSLESS or (codec.startswith("pcm_") and codec not in ("pcm_mulaw", "pcm_alaw"))


class Assessment:
    def __init__(self, analysis: Analysis, settings: FileSettings, header: float | None) -> None:
        self.analysis, self.settings, self.header = analysis, settings, header
        self.header_true = header is None or abs(header - analysis.seconds) <= max(
            HEADER_TOLERANCE_S, HEADER_TOLERANCE * analysis.seconds
        )
        separate = settings.channels == "separate" and analysis.distinct_channels > 1
        self.channels: list[int | None] = list(range(analysis.distinct_channels)) if separate else [None]
        self.hint = not separate and analysis.channels_differ
        self._spans: list[tuple[int, int]] | None = None

    @property
    def duration(self) -> float:
        """``audio_duration_s``: the header's when it tells the truth, else what decodes."""
        if self.header_true and self.header is not None:
            return self.header
        return round(self.analysis.seconds, 3)

    def warnings(self) -> list[str]:
        a, header = self.analysis, self.header
        out = [f"{clock(s)}-{clock(e)} could not be decoded and is missing from the text" for s, e in a.gaps]
        if a.stopped_at is not None:
            out.append(f"the recording's tail could not be decoded; the text stops at {clock(a.seconds)}")
        elif header is not None and not self.header_true and header > a.seconds:
            out.append(
                f"the file's header claims {clock(header)} but its audio ends at {clock(a.seconds)} "
                "(a truncated copy?); the text stops there and audio_duration_s is what decodes"
            )
        elif header is not None and not self.header_true:
            out.append(
                f"the file's header claims {clock(header)} but it holds {clock(a.seconds)} of audio; "
                "audio_duration_s is what decodes"
            )
        return out

    def mix_spans(self) -> list[tuple[int, int]]:
        """Frames worth sending of the channels mixed (computed once)."""
        if self._spans is None:
            self._spans = speech_spans(active_frames(self.analysis.mix_db))
        return self._spans

    def anything_to_hear(self) -> bool:
        if not self.settings.skip_silence:
            return True
        if self.channels == [None]:
            return bool(self.mix_spans())
        db = self.analysis.db
        return any(speech_spans(active_frames(db[ch])) for ch in self.channels if ch is not None)

    def why_not_as_it_is(self, size: int, budget: int, reused: bool) -> str | None:
        """None when the file is sent as it is; else why it goes as pieces."""
        a, s = self.analysis, self.settings
        if reused:
            return "pieces of it were answered in an earlier try"
        if self.channels != [None]:
            return "its channels are sent on their own"
        if a.video_streams:
            return "it has a video track: only its audio is sent"
        if a.gaps or a.stopped_at is not None:
            return "it is damaged: only what decodes is sent"
        if not self.header_true:
            return "its header does not say how long it is"
        if size > budget:
            return f"{size} bytes, over the upload budget of {budget}"
        if s.split_long_audio and a.seconds > s.max_chunk_seconds:
            return f"{a.seconds:.0f} s, longer than max_chunk_seconds={s.max_chunk_seconds:g}"
        if s.skip_silence and sum(e - b for b, e in self.mix_spans()) < a.frames:
            return "it has long silences, which are not sent"
        return None

    def piece_route(self, budget: int) -> tuple[bool, str, int | None]:
        """(copy packets, the pieces' extension, Opus bit rate) under ``budget``."""
        a, s = self.analysis, self.settings
        target = copy_container(a.codec)
        if self.channels == [None] and target is not None:
            return True, target[1], None
        if s.piece_format:
            return False, s.piece_format, None
        if lossless(a.codec):
            return False, auto_piece_format(budget, s.max_chunk_seconds if s.split_long_audio else 0), None
        # Lossy source, decoded: Opus at about the source's bit rate per channel, never above it.
        per_channel = (a.bit_rate or OPUS_MAX_BPS) // max(len(self.channels), 1)
        return False, "ogg", max(OPUS_MIN_BPS, min(OPUS_MAX_BPS, per_channel))
