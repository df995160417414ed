"""Memory stays bounded by about one piece: a 20-minute WAV against a 30-second one, in fresh processes.

(bench/split_cpu.py measures the full 40-minute and 60-minute cases; 20 minutes keeps the suite quick.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from linkai_provider.io.pcm import SAMPLE_RATE
from tests.io.test_split_audio import SENTENCES, join_sentences, write_wav

REPO = Path(__file__).resolve().parents[2]

# Peak RSS of a fresh process that splits one file and deletes each piece once "sent". VmHWM, not
# ru_maxrss: Linux carries ru_maxrss over exec, so a child would report pytest's own peak.
PROBE = textwrap.dedent(
    """
    import json, os, resource, sys
    from linkai_provider.io.splitting import AudioSplitter
    path, fmt = sys.argv[1], sys.argv[2]
    pieces = 0
    with AudioSplitter(max_piece_bytes=25 * 2**20, piece_format=fmt, workdir=os.path.dirname(path)) as splitter:
        for piece in splitter.split(path):
            pieces += 1
            os.unlink(piece.path)
    try:
        with open("/proc/self/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"pieces": pieces, "peak_kib": peak}))
    """
)


def peak(path: Path, fmt: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), fmt], cwd=REPO, capture_output=True, text=True, check=True, timeout=300
    )
    return json.loads(out.stdout)


@pytest.mark.parametrize("fmt", ["flac"])
def test_peak_memory_of_a_long_file_is_about_one_piece(fmt: str, tmp_path: Path) -> None:
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], tmp_path, seed=1)  # ~169 s
    repeat = -(-20 * 60 * SAMPLE_RATE // rec.samples.size)
    long_wav = write_wav(tmp_path / "long.wav", rec.samples, repeat=repeat)  # ~20 min, ~40 MB
    short_wav = write_wav(tmp_path / "short.wav", rec.samples[: 30 * SAMPLE_RATE])
    short, long = peak(short_wav, fmt), peak(long_wav, fmt)
    extra_mib = (long["peak_kib"] - short["peak_kib"]) / 1024
    print(
        f"\n{fmt}: 30 s file peak {short['peak_kib'] / 1024:.0f} MiB, {repeat * rec.duration_s / 60:.0f} min file "
        f"peak {long['peak_kib'] / 1024:.0f} MiB ({long['pieces']} pieces): +{extra_mib:.0f} MiB"
    )
    assert long["pieces"] >= 2
    # One 600 s piece of 16 kHz int16 is 18.3 MiB; decoded whole, 20 minutes would be 37 MiB as int16
    # and 73 MiB as float32, so this bound fails if the recording is ever held whole.
    assert extra_mib < 36
