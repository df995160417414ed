"""What splitting long recordings costs: CPU seconds and peak memory to decode, cut and encode (issue 10).

    .venv/bin/python bench/split_cpu.py                 # one hour per piece format, 40-min WAV, 60-min MP3 (~3 min)
    .venv/bin/python bench/split_cpu.py --minutes 10    # a shorter recording, quicker

The recording is espeak-ng speech (the repo's sentences) with 0.8-1.5 s pauses, tiled with numpy
to the length asked, written as a 16 kHz mono WAV. Each case runs in a fresh child process that
splits the file with the defaults the operator uses (25 MiB, 600 s pieces) and deletes each piece
as a sender would; it reports its process CPU time (user + system) and peak RSS (VmHWM). A
30-second file gives the baseline RSS (interpreter, numpy and PyAV loaded). Figures are in
docs/long-recordings.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linkai_provider.io.pcm import SAMPLE_RATE  # noqa: E402
from linkai_provider.io.splitting import PIECE_FORMATS  # noqa: E402
from tests.io.test_split_audio import SENTENCES, join_sentences, write_wav  # noqa: E402

CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    from linkai_provider.io.splitting import AudioSplitter
    path, fmt = sys.argv[1], sys.argv[2]
    pieces = size = silent = 0
    seconds = 0.0
    cpu = time.process_time()
    with AudioSplitter(max_piece_bytes=25 * 2**20, piece_format=fmt, workdir=os.path.dirname(path)) as splitter:
        for piece in splitter.split(path):
            pieces, size, seconds = pieces + 1, size + piece.size, piece.end_s
            silent += piece.cut_in_silence
            os.unlink(piece.path)
    cpu = time.process_time() - cpu
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"pieces": pieces, "bytes": size, "audio_s": seconds, "cpu_s": cpu, "peak_kib": peak,
                      "in_silence": silent}))
    """
)


def run_case(path: Path, fmt: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), fmt], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def build_inputs(folder: Path, minutes: float) -> dict[str, Path]:
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], folder, seed=1)  # ~169 s

    def tiled(name: str, mins: float) -> Path:
        repeat = max(1, round(mins * 60 * SAMPLE_RATE / rec.samples.size))
        return write_wav(folder / name, rec.samples, repeat=repeat)

    inputs = {
        "short (30 s) WAV": write_wav(folder / "short.wav", rec.samples[: 30 * SAMPLE_RATE]),
        f"{minutes:g} min WAV": tiled("hour.wav", minutes),
        f"{minutes * 2 / 3:g} min WAV": tiled("forty.wav", minutes * 2 / 3),
    }
    from linkai_provider.server.audio_fixtures import _encode  # the repo's MP3 encoder (LAME, 64 kbit/s)

    mp3 = folder / "hour.mp3"
    _encode(inputs[f"{minutes:g} min WAV"], mp3, "mp3")
    inputs[f"{minutes:g} min MP3"] = mp3
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the long recording (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="linkai-bench-split-") as tmp:
        inputs = build_inputs(Path(tmp), args.minutes)
        short = inputs.pop("short (30 s) WAV")
        base = {fmt: run_case(short, fmt) for fmt in PIECE_FORMATS}
        rows = []
        for name, path in inputs.items():
            formats = PIECE_FORMATS if name.endswith(f"{args.minutes:g} min WAV") else ("ogg",)
            for fmt in formats:
                result = run_case(path, fmt)
                rows.append((name, path.stat().st_size, fmt, result))
    peaks = ", ".join(f"{fmt} {r['peak_kib'] / 1024:.0f} MiB" for fmt, r in base.items())
    print(f"baseline: a 30 s file peaks at {peaks} RSS\n")
    header = (
        "input",
        "input MiB",
        "pieces as",
        "pieces",
        "in silence",
        "audio min",
        "CPU s",
        "CPU s / audio h",
        "KB / audio s",
        "peak MiB",
        "+ over 30 s",
    )
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, size, fmt, r in rows:
        hours = r["audio_s"] / 3600
        print(
            " | ".join(
                [
                    name,
                    f"{size / 2**20:.0f}",
                    fmt,
                    str(r["pieces"]),
                    f"{r['in_silence']}/{r['pieces']}",
                    f"{r['audio_s'] / 60:.1f}",
                    f"{r['cpu_s']:.1f}",
                    f"{r['cpu_s'] / hours:.1f}",
                    f"{r['bytes'] / r['audio_s'] / 1000:.1f}",
                    f"{r['peak_kib'] / 1024:.0f}",
                    f"{(r['peak_kib'] - base[fmt]['peak_kib']) / 1024:.0f}",
                ]
            )
        )


if __name__ == "__main__":
    main()
