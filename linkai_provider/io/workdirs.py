"""Temporary folders for pieces and spilled copies, named by owner pid so a killed task's leftovers are found.

``linkai-split-<pid>-<random>``: exceptions and SIGTERM (Airflow raises in the task) clean up
through ``finally``; only SIGKILL leaves a folder behind, and :func:`sweep_stale_workdirs` removes
it on the next run because its pid is no longer alive.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["SPILL_BLOCK_BYTES", "WORKDIR_PREFIX", "make_workdir", "spill_to_local", "sweep_stale_workdirs"]

WORKDIR_PREFIX = "linkai-split-"
SPILL_BLOCK_BYTES = 4 * 1024 * 1024
_OWNED = re.compile(re.escape(WORKDIR_PREFIX) + r"(\d+)-")


def make_workdir(base: str | None = None) -> str:
    """Create ``<base or system temp>/linkai-split-<pid>-<random>`` and return its path."""
    return tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=base)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_stale_workdirs(base: str | None = None) -> int:
    """Remove ``linkai-split-<pid>-*`` folders under ``base`` (default: system temp) whose pid is dead.

    A recycled pid keeps a stale folder until that process ends too; harmless, it is swept later.
    :return: the number of folders removed.
    """
    root = Path(base or tempfile.gettempdir())
    removed = 0
    try:
        entries = list(root.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        match = _OWNED.match(entry.name)
        if not match or not entry.is_dir() or _pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed += 1
            log.info("removed temporary folder %s left by dead process %s", entry, match.group(1))
    return removed


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


@contextlib.contextmanager
def spill_to_local(fs: Any, path: str, workdir: str | None = None) -> Iterator[str]:
    """A local path holding the bytes of ``path`` on fsspec filesystem ``fs``.

    Local files are used in place (nothing copied). A remote object is read once, in
    :data:`SPILL_BLOCK_BYTES` blocks (memory stays bounded whatever its size), into a temp file
    that is removed on exit. ``workdir`` is the folder for that file; by default a new
    ``linkai-split-<pid>-*`` folder under the system temp dir, removed on exit as well.
    """
    if _is_local(fs):
        yield fs._strip_protocol(path) if hasattr(fs, "_strip_protocol") else path
        return
    own_dir = workdir is None
    folder = make_workdir() if workdir is None else workdir
    suffix = Path(str(path)).suffix
    fd, local = tempfile.mkstemp(prefix="spill-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, fs.open(path, "rb", block_size=SPILL_BLOCK_BYTES) as src:
            while True:
                block = src.read(SPILL_BLOCK_BYTES)
                if not block:
                    break
                out.write(block)
        yield local
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(local)
        if own_dir:
            shutil.rmtree(folder, ignore_errors=True)
