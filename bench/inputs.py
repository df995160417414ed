"""Benchmark inputs: WAV files of random PCM (honest for hashing and upload: nothing compresses,
no page is shared or sparse), and an existing transcript dataset for the planning scenario."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
CHUNK = 4 << 20


def wav_header(data_bytes: int) -> bytes:
    """A 44-byte PCM WAV header (16 kHz, mono, 16-bit) for ``data_bytes`` of samples."""
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def write_wav(path: Path, size: int, rng: np.random.Generator) -> None:
    """A ``size``-byte WAV file whose samples are random bytes, written in 4 MiB chunks."""
    data_bytes = size - 44
    with open(path, "wb") as fh:
        fh.write(wav_header(data_bytes))
        left = data_bytes
        while left:
            n = min(left, CHUNK)
            fh.write(rng.bytes(n))
            left -= n


def make_files(folder: Path, count: int, size: int, *, seed: int = 0, prefix: str = "call") -> list[Path]:
    """``count`` distinct random WAV files of ``size`` bytes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i:06d}.wav"
        write_wav(path, size, rng)
        paths.append(path)
    return paths


def make_tiny_files(folder: Path, count: int, *, prefix: str = "old") -> None:
    """``count`` 64-byte WAV files (already transcribed in the planning scenario: never read)."""
    folder.mkdir(parents=True, exist_ok=True)
    body = wav_header(20) + bytes(20)
    for i in range(count):
        fd = os.open(folder / f"{prefix}-{i:06d}.wav", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.close(fd)


def seed_dataset(source: Path, destination: Path, rows_per_part: int = 1000) -> int:
    """An ``ok`` row for every audio file now under ``source``, written with TranscriptWriter
    ``rows_per_part`` rows a part, as earlier nightly runs would have left them. Keys
    (``source_uri``, ``source_fingerprint``) come from the library's own listing, so they match."""
    import hashlib

    from fsspec.implementations.local import LocalFileSystem

    from linkai_provider.dataset import STATUS_OK, TranscriptWriter, utcnow
    from linkai_provider.io.sources import list_audio

    listing = list_audio(str(source))
    writer = TranscriptWriter(
        LocalFileSystem(),
        str(destination),
        part_prefix="part-seed",
        checkpoint_rows=rows_per_part,
        checkpoint_seconds=3600,
    )
    now = utcnow()
    for f in listing.files:
        writer.add(
            {
                "source_uri": f.uri,
                "source_size_bytes": f.size,
                "source_fingerprint": f.fingerprint,
                "content_sha256": hashlib.sha256(f.uri.encode()).hexdigest(),
                "audio_format": f.audio_format,
                "audio_duration_s": 0.000625,
                "status": STATUS_OK,
                "text": "Hello, I need some help with my order, it has not arrived yet and the tracking "
                "page shows no update since last Tuesday. Could you check it please?",
                "error_type": None,
                "error_code": None,
                "error_message": None,
                "attempts": 1,
                "latency_ms": 200,
                "transcribed_at": now,
                "endpoint": "https://api.linkai.cloud",
                "dag_id": "linkai_nightly_transcription",
                "task_id": "transcribe",
                "run_id": "scheduled__2026-11-19T00:00:00+00:00",
                "map_index": -1,
                "try_number": 1,
            }
        )
    writer.close()
    return len(listing.files)
