"""What the audio path uploads and what it costs (issue 17), against another checkout in the same run.

    .venv/bin/python bench/audio_path.py                               # formats (60 min each) + silence mix
    .venv/bin/python bench/audio_path.py --scenario formats --minutes 20 --repeat 3
    .venv/bin/python bench/audio_path.py --baseline-tree /work/main    # the A/B baseline (default)

``formats``: one recording of espeak-ng speech with 0.8-1.5 s pauses (bench/split_cpu.py's recipe,
tiled to ``--minutes``) as WAV (16 kHz PCM), MP3 (64 kbit/s), M4A (AAC 64 kbit/s), Opus (Ogg, 32
kbit/s) and MP4 (the AAC track beside a 2 fps 160x120 H.264 video of noise, about 300 kbit/s: a
webinar's screen share). Each file is transcribed with the defaults (25 MiB, 600 s pieces) by this
tree's task and by the baseline tree's, interleaved ``--repeat`` times (``bench/client.py``: the
operator's ``Batch``); per audio hour: bytes the server received, the task's CPU seconds (in-process,
imports excluded), requests. "source audio" is the bytes of the file's audio packets.

``silence``: a realistic mix of calls (8 kHz, turns with short gaps, line hiss; half with a hold of
30-120 s of silence, a quarter with hold music instead), meetings (16 kHz, 20 min, room noise, a few
muted pauses of 15-90 s) and calls that never connected (30 s of hiss). Billed audio (the server's
``audio_seconds_ok``) with the silence rule (this tree's default) and without it (``skip_silence``
off), and the baseline tree's.

The machine is shared: figures are min/median/max over the repeats; JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.run import RESULTS, _cpu_seconds, run_client, start_server  # noqa: E402
from tests.io import scenes  # noqa: E402
from tests.io.test_split_audio import SENTENCES, join_sentences, speech_clip  # noqa: E402

FORMATS = ("wav", "mp3", "m4a", "opus", "mp4-video")


def build_formats(folder: Path, minutes: float) -> dict[str, Path]:
    rec = join_sentences([SENTENCES[i % len(SENTENCES)] for i in range(45)], folder, seed=1)  # ~169 s
    repeat = max(1, round(minutes * 60 * 16000 / rec.samples.size))
    samples = np.tile(rec.samples, repeat).reshape(1, -1)
    out: dict[str, Path] = {}

    def place(name: str, file: str) -> Path:
        (folder / name).mkdir(exist_ok=True)
        return folder / name / file

    out["wav"] = scenes.write_wav(place("wav", "talk.wav"), samples, 16000)
    out["mp3"] = scenes.encode(place("mp3", "talk.mp3"), samples, 16000, container="mp3", codec="libmp3lame",
                               bit_rate=64000)  # fmt: skip
    out["m4a"] = scenes.encode(place("m4a", "talk.m4a"), samples, 16000, container="ipod", codec="aac",
                               bit_rate=64000)  # fmt: skip
    out["opus"] = scenes.encode(place("opus", "talk.ogg"), samples, 16000, container="ogg", codec="libopus",
                                bit_rate=32000)  # fmt: skip
    out["mp4-video"] = _film(place("mp4-video", "webinar.mp4"), out["m4a"], samples.shape[1] / 16000)
    return out


def _film(dest: Path, m4a: Path, seconds: float) -> Path:
    """The M4A's AAC packets muxed beside an H.264 video of noise (2 fps, 160x120)."""
    import av

    rng = np.random.default_rng(7)
    with av.open(str(m4a)) as audio_in, av.open(str(dest), "w", format="mp4") as out:
        ain = audio_in.streams.audio[0]
        aout = out.add_stream_from_template(ain)
        video: Any = out.add_stream("libx264", rate=2)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.bit_rate = 300_000
        video.options = {"preset": "ultrafast"}
        packets = (p for p in audio_in.demux(ain) if p.size)
        next_audio = next(packets, None)
        for i in range(int(seconds * 2)):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
            while next_audio is not None and next_audio.pts * next_audio.time_base < (i + 1) / 2:
                next_audio.stream = aout
                out.mux(next_audio)
                next_audio = next(packets, None)
        for packet in video.encode(None):
            out.mux(packet)
        while next_audio is not None:
            next_audio.stream = aout
            out.mux(next_audio)
            next_audio = next(packets, None)
    return dest


def build_mix(folder: Path, cache: Path, seed: int = 17) -> dict[str, Any]:
    """The realistic mix (see the module docstring); returns what it holds."""
    rng = np.random.default_rng(seed)
    clips8 = {t: scenes._resample(speech_clip(t, cache), 8000) for t in SENTENCES}
    clips16 = {t: speech_clip(t, cache) for t in SENTENCES}
    folder.mkdir(parents=True, exist_ok=True)
    kinds: dict[str, float] = {"calls": 0.0, "hold silence": 0.0, "hold music": 0.0, "meetings": 0.0,
                               "muted pauses": 0.0, "never connected": 0.0}  # fmt: skip

    def noise(n: int, dbfs: float) -> np.ndarray:
        return rng.normal(0, 32768 * 10 ** (dbfs / 20), n)

    for i in range(24):
        rate, parts = 8000, []
        turns = int(rng.integers(14, 30))
        hold_at = int(rng.integers(3, turns - 3))
        hold_kind = "hold silence" if i % 4 in (0, 1) else ("hold music" if i % 4 == 2 else None)
        for t in range(turns):
            parts.append(np.zeros(int(rng.uniform(0.4, 1.5) * rate)))
            parts.append(clips8[SENTENCES[int(rng.integers(len(SENTENCES)))]].astype(np.float64))
            if t == hold_at and hold_kind is not None:
                n = int(rng.uniform(30, 120) * rate)
                if hold_kind == "hold music":  # a chord, -20 dBFS
                    x = np.arange(n) / rate
                    parts.append(3000 * (np.sin(2 * np.pi * 262 * x) + np.sin(2 * np.pi * 330 * x)))
                else:
                    parts.append(np.zeros(n))
                kinds[hold_kind] += n / rate
        x = np.concatenate(parts)
        x = (x + noise(x.size, -65)).clip(-32768, 32767).astype(np.int16)
        scenes.write_wav(folder / f"call-{i:03d}.wav", x.reshape(1, -1), rate)
        kinds["calls"] += x.size / rate
    for i in range(4):
        rate, parts, total = 16000, [], 0
        pauses = set(rng.choice(np.arange(20, 300), size=int(rng.integers(3, 7)), replace=False).tolist())
        k = 0
        while total < 20 * 60 * rate:
            gap = int(rng.uniform(15, 90) * rate) if k in pauses else int(rng.uniform(0.5, 2.0) * rate)
            if k in pauses:
                kinds["muted pauses"] += gap / rate
            clip = clips16[SENTENCES[int(rng.integers(len(SENTENCES)))]].astype(np.float64)
            parts += [np.zeros(gap), clip]
            total += gap + clip.size
            k += 1
        x = np.concatenate(parts)
        x = (x + noise(x.size, -60)).clip(-32768, 32767).astype(np.int16)
        scenes.write_wav(folder / f"meeting-{i:02d}.wav", x.reshape(1, -1), rate)
        kinds["meetings"] += x.size / rate
    for i in range(4):
        x = noise(30 * 8000, -70).clip(-32768, 32767).astype(np.int16)
        scenes.write_wav(folder / f"no-answer-{i:02d}.wav", x.reshape(1, -1), 8000)
        kinds["never connected"] += 30.0
    kinds["total"] = kinds["calls"] + kinds["meetings"] + kinds["never connected"]
    return {k: round(v, 1) for k, v in kinds.items()}


def stream_bytes(path: Path) -> int:
    return scenes.audio_stream_bytes(path)


def one(spec: dict[str, Any], server: Any, root: Path) -> dict[str, Any]:
    server.reset_stats()
    cpu0 = _cpu_seconds(server.pid)
    result = run_client(spec, server, root=root)
    stats = server.stats()
    if result["rows_ok"] != result["summary"]["transcribed"] or result["summary"]["failed"]:
        raise RuntimeError(f"not every file transcribed: {json.dumps(result)[:2000]}")
    return {
        "wall_s": result["wall_s"],
        "cpu_s": result["cpu_s"],
        "bytes": stats["bytes_received"],
        "requests": stats["requests_total"],
        "billed_s": stats["audio_seconds_ok"],
        "server_cpu_s": _cpu_seconds(server.pid) - cpu0,
    }


def spread(values: list[float], digits: int = 1) -> str:
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{mid:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})" if len(values) > 1 else f"{mid:.{digits}f}"


def formats(args: argparse.Namespace, work: Path, server: Any) -> dict[str, Any]:
    cache = Path(args.tmp or tempfile.gettempdir()) / f"linkai-bench-audio-formats-{args.minutes:g}"
    if not cache.exists():
        building = cache.with_name(cache.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        build_formats(building, args.minutes)
        building.rename(cache)
    files = {fmt: next((cache / fmt).iterdir()) for fmt in FORMATS}
    trees = {"this": ROOT, "baseline": Path(args.baseline_tree)}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {fmt: {t: [] for t in trees} for fmt in FORMATS}
    for r in range(args.repeat):
        for fmt in FORMATS:
            for tree, root in trees.items() if r % 2 == 0 else reversed(trees.items()):
                spec = {"scenario": "audio", "source": str(files[fmt].parent), "max_concurrency": 8,
                        "destination": str(work / f"ds-{fmt}-{tree}-{r}")}  # fmt: skip
                runs[fmt][tree].append(one(spec, server, root))
                print(f"[bench] {fmt} {tree} #{r}: {runs[fmt][tree][-1]}", file=sys.stderr)
    table = {}
    for fmt, by_tree in runs.items():
        path = files[fmt]
        hours = by_tree["this"][0]["billed_s"] / 3600 or args.minutes / 60
        table[fmt] = {
            "file_mb_per_hour": round(path.stat().st_size / hours / 1e6, 1),
            "source_audio_mb_per_hour": round(stream_bytes(path) / hours / 1e6, 1),
            **{
                f"{tree}_{key}": spread(
                    [
                        run[key] / (hours if key in ("bytes", "cpu_s") else 1) / (1e6 if key == "bytes" else 1)
                        for run in rs
                    ],
                    2 if key == "cpu_s" else 1,
                )  # fmt: skip
                for tree, rs in by_tree.items()
                for key in ("bytes", "cpu_s", "requests")
            },
        }
    return {"minutes": args.minutes, "repeat": args.repeat, "table": table, "runs": runs}


def silence(args: argparse.Namespace, work: Path, server: Any) -> dict[str, Any]:
    folder = work / "mix"
    held = build_mix(folder, work / "clips")
    cases = [("with the rule", ROOT, {}), ("without the rule", ROOT, {"skip_silence": False}),
             ("baseline", Path(args.baseline_tree), {})]  # fmt: skip
    out: dict[str, Any] = {"mix_seconds": held}
    for name, root, extra in cases:
        spec = {"scenario": "audio", "source": str(folder), "max_concurrency": 8,
                "destination": str(work / f"ds-mix-{name.replace(' ', '-')}"), **extra}  # fmt: skip
        out[name] = one(spec, server, root)
        print(f"[bench] silence {name}: {out[name]}", file=sys.stderr)
    billed, without = out["with the rule"]["billed_s"], out["without the rule"]["billed_s"]
    out["saved_share"] = round(1 - billed / without, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("formats", "silence"), action="append")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-tree", default="/work/main")
    parser.add_argument("--tmp")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="linkai-bench-audio-", dir=args.tmp))
    server = start_server(max_upload_bytes="25MiB")
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "baseline_tree": args.baseline_tree}
    try:
        for scenario in args.scenario or ("formats", "silence"):
            report[scenario] = {"formats": formats, "silence": silence}[scenario](args, work, server)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"audio-path-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    if "formats" in report:
        print("\n| source | file MB/h | its audio MB/h | uploaded MB/h: this | baseline | CPU s/h: this | baseline "
              "| requests: this | baseline |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for fmt, row in report["formats"]["table"].items():
            print(f"| {fmt} | {row['file_mb_per_hour']} | {row['source_audio_mb_per_hour']} | {row['this_bytes']} | "
                  f"{row['baseline_bytes']} | {row['this_cpu_s']} | {row['baseline_cpu_s']} | "
                  f"{row['this_requests']} | {row['baseline_requests']} |")  # fmt: skip
    if "silence" in report:
        s = report["silence"]
        print(f"\nmix: {s['mix_seconds']}")
        for name in ("with the rule", "without the rule", "baseline"):
            print(f"{name}: billed {s[name]['billed_s']:.0f} s, {s[name]['requests']} requests, "
                  f"{s[name]['bytes'] / 1e6:.1f} MB, client CPU {s[name]['cpu_s']:.1f} s")  # fmt: skip
        print(f"saved: {s['saved_share']:.1%} of billed audio")
    print(f"\n{out}")


if __name__ == "__main__":
    main()
