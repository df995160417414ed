"""Temporary files of the splitter: its workdir, cleanup, the sweep of SIGKILLed runs, spilling remote files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import fsspec
import numpy as np
import pytest

from linkai_provider.io import workdirs
from linkai_provider.io.pcm import SAMPLE_RATE
from linkai_provider.io.splitting import AudioSplitter, spill_to_local, sweep_stale_workdirs
from tests.io.test_split_audio import write_wav

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tone_wav(tmp_path: Path) -> Path:
    t = np.arange(12 * SAMPLE_RATE) / SAMPLE_RATE
    return write_wav(tmp_path / "tone.wav", (np.sin(2 * np.pi * 300 * t) * 5000).astype(np.int16))


def test_pieces_live_in_a_pid_named_workdir_that_cleanup_removes(tmp_path: Path, tone_wav: Path) -> None:
    base = tmp_path / "work"
    base.mkdir()
    with AudioSplitter(max_piece_bytes=10**6, max_piece_seconds=5, workdir=str(base)) as splitter:
        pieces = list(splitter.split(str(tone_wav)))
        folder = Path(splitter.workdir)
        assert folder.parent == base and folder.name.startswith(f"linkai-split-{os.getpid()}-")
        assert len(pieces) == 3 and all(Path(p.path).parent == folder and Path(p.path).exists() for p in pieces)
        os.unlink(pieces[0].path)  # the caller may delete what it has sent; cleanup copes
    assert not folder.exists()
    assert list(base.iterdir()) == []


def test_two_splits_on_one_splitter_do_not_collide(tmp_path: Path, tone_wav: Path) -> None:
    splitter = AudioSplitter(max_piece_bytes=10**6, max_piece_seconds=5, workdir=str(tmp_path))
    first, second = splitter.split(str(tone_wav)), splitter.split(str(tone_wav))
    pieces = [next(first), next(second), *first, *second]  # interleaved, as threads would
    assert len({p.path for p in pieces}) == 6
    assert all(Path(p.path).exists() for p in pieces)
    splitter.cleanup()
    assert not any(Path(p.path).exists() for p in pieces)


def test_sweep_removes_the_workdir_of_a_sigkilled_process(tmp_path: Path, tone_wav: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from linkai_provider.io.splitting import AudioSplitter
        splitter = AudioSplitter(max_piece_bytes=10**6, max_piece_seconds=5, workdir={str(tmp_path)!r})
        piece = next(splitter.split({str(tone_wav)!r}))
        print(piece.path, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        piece_path = Path(child.stdout.readline().strip())  # type: ignore[union-attr]
        assert piece_path.exists()
        alive = sweep_stale_workdirs(str(tmp_path))
        assert alive == 0 and piece_path.exists()  # its owner is still running
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    mine = workdirs.make_workdir(str(tmp_path))  # a live process's folder (ours) is kept
    unrelated = tmp_path / "linkai-split-notes"
    unrelated.mkdir()
    assert sweep_stale_workdirs(str(tmp_path)) == 1
    assert not piece_path.parent.exists()
    assert Path(mine).exists() and unrelated.exists()


def test_sweep_of_a_missing_base_is_zero(tmp_path: Path) -> None:
    assert sweep_stale_workdirs(str(tmp_path / "absent")) == 0


def test_spill_copies_a_memory_file_once_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workdirs, "SPILL_BLOCK_BYTES", 64 * 1024)
    fs = fsspec.filesystem("memory")
    payload = os.urandom(1_000_000)
    fs.pipe("/calls/long.wav", payload)
    opened, reads = [], []
    real_open = fs.open

    def counting_open(path, mode="rb", **kwargs):
        handle = real_open(path, mode, **kwargs)
        opened.append(path)
        real_read = handle.read
        handle.read = lambda size=-1: reads.append(size) or real_read(size)
        return handle

    monkeypatch.setattr(fs, "open", counting_open)
    with spill_to_local(fs, "memory://calls/long.wav") as local:
        assert Path(local).read_bytes() == payload
        assert Path(local).suffix == ".wav"  # decoders may go by the extension
        assert Path(local).parent.name.startswith(f"linkai-split-{os.getpid()}-")
    assert len(opened) == 1
    assert reads and all(0 < size <= 64 * 1024 for size in reads)  # never read whole
    assert not Path(local).exists() and not Path(local).parent.exists()


def test_spill_into_a_given_workdir_and_removed_on_error(tmp_path: Path) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe("/calls/a.mp3", b"x" * 1000)
    with pytest.raises(RuntimeError, match="boom"), spill_to_local(fs, "/calls/a.mp3", str(tmp_path)) as local:
        assert Path(local).parent == tmp_path
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_spill_uses_a_local_file_in_place(tmp_path: Path) -> None:
    source = tmp_path / "in.flac"
    source.write_bytes(b"fLaC....")
    fs = fsspec.filesystem("file")
    with spill_to_local(fs, f"file://{source}") as local:
        assert local == str(source)
    assert source.exists()
