"""Listing a local folder with its symbolic links followed, and loops caught.

fsspec's local ``find`` lists a symbolic link as type ``other`` (it looks at the link, not its
target), so a valid link to a recording or to a folder of recordings inside a source folder was
skipped without a word, while the same link given as the source worked. :func:`walk_local`
follows links to files and folders as ``find -L`` does, with the two guards a followed walk
needs:

- a link to a folder that contains it (a loop: ``calls/all -> ..``) is not followed, or the walk
  would never end;
- a folder reached a second time (through another link, or a link to a folder inside the
  source) is not listed again, and neither is a file reached through a link and under another
  name, so no recording is sent (and paid for) twice under two names.

Each link skipped is logged as a warning naming it and why; the counts of links followed and
skipped are logged once per folder walked. A file reached through a link keeps the link's path
as its URL (what the user sees in the source folder) and the target's size and mtime as its
fingerprint (what changes when the recording does).
"""

from __future__ import annotations

import logging
import os
import re
import stat
from collections import deque
from typing import Any

from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import glob_translate

__all__ = ["glob_local", "walk_local"]

log = logging.getLogger(__name__)


def glob_local(fs: LocalFileSystem, pattern: str) -> list[tuple[str, dict[str, Any]]]:
    """``(path, info)`` of every regular file matching the glob ``pattern``, links followed.

    fsspec's ``glob`` is its ``find`` under the pattern's fixed part, filtered by the pattern; its
    local ``find`` lists links as type ``other``, so ``calls/*.wav`` left out a linked recording
    that ``calls/`` alone finds. This is the same glob (same syntax, through fsspec's own
    ``glob_translate``, and the same depth: a ``**`` goes all the way down, else only as deep as
    the pattern) over :func:`walk_local`.
    """
    path = fs._strip_protocol(pattern)
    first = min(i for i in (path.find(c) for c in "*?[") if i >= 0)
    cut = path.rfind("/", 0, first)
    root = path[: cut + 1] or "/"
    depth = None if "**" in path else path[cut + 1 :].count("/") + 1
    if not os.path.isdir(root):
        return []
    matches = re.compile(glob_translate(path)).match
    return [(name, info) for name, info in walk_local(fs, root.rstrip("/") or "/", depth) if matches(name)]


def walk_local(fs: LocalFileSystem, root: str, maxdepth: int | None = None) -> list[tuple[str, dict[str, Any]]]:
    """``(path, info)`` of every regular file under the local folder ``root``, links followed.

    Real folders are walked before linked ones, so a folder that is both inside ``root`` and the
    target of a link is listed under its real path; of two links to one folder, the one met
    first (a folder's entries are taken in name order) is followed. ``maxdepth`` as in fsspec's
    ``find``: 1 lists only the files directly in ``root``.
    """
    files: list[tuple[str, dict[str, Any]]] = []
    reached: dict[tuple[int, int], list[tuple[int, bool]]] = {}  # a regular file's (dev, inode): how it was met
    followed = 0
    skipped: list[str] = []
    top = os.stat(root)
    seen: dict[tuple[int, int], str] = {(top.st_dev, top.st_ino): root}
    real: list[tuple[str, frozenset[tuple[int, int]]]] = [(root, frozenset(seen))]
    links: deque[tuple[str, tuple[int, int], frozenset[tuple[int, int]]]] = deque()
    while real or links:
        if real:
            folder, ancestors = real.pop()
        else:
            folder, key, ancestors = links.popleft()
            if key in ancestors:
                skipped.append(folder)
                log.warning(
                    "Not following %s -> %s: a loop back to %s, which contains it",
                    folder, os.readlink(folder), seen[key],
                )  # fmt: skip
                continue
            if key in seen:
                skipped.append(folder)
                log.warning("Not following %s: that folder is already listed as %s", folder, seen[key])
                continue
            seen[key] = folder
            ancestors = ancestors | {key}
            followed += 1
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)  # which of two links to a folder wins: the first by name
        except OSError as exc:
            log.warning("Cannot list %s (%s); its files are left out", folder, exc)
            continue
        for entry in entries:
            link = entry.is_symlink()
            try:
                target = entry.stat(follow_symlinks=True)
            except OSError as exc:  # a broken link (or a file that vanished meanwhile)
                if link:
                    skipped.append(entry.path)
                    log.warning("Skipping %s: a broken symbolic link (%s)", entry.path, _target(entry.path, exc))
                continue
            if stat.S_ISDIR(target.st_mode):
                if maxdepth is not None and len(ancestors) >= maxdepth:
                    continue  # deeper than the pattern reaches
                key = (target.st_dev, target.st_ino)
                if link:
                    links.append((entry.path, key, ancestors))
                elif key not in seen:  # (seen already: only through a link, e.g. a bind mount aside)
                    seen[key] = entry.path
                    real.append((entry.path, ancestors | {key}))
            elif stat.S_ISREG(target.st_mode):
                # through a link: stat the target (fsspec's info of a DirEntry would take the link's mtime)
                info = fs.info(entry.path if link else entry)
                files.append((info["name"], info))
                followed += link
                if target.st_ino:  # (0: a file system without inode numbers; nothing to compare)
                    reached.setdefault((target.st_dev, target.st_ino), []).append((len(files) - 1, link))
    # A recording reached through a link and under another name (its real path, or a second link) is
    # listed once, as a folder is: under its real path where it has one, else the first link met.
    drop: set[int] = set()
    for names in reached.values():
        if len(names) > 1 and any(link for _, link in names):
            keep = next((i for i, link in names if not link), names[0][0])
            for i, link in names:
                if link and i != keep:
                    drop.add(i)
                    skipped.append(files[i][0])
                    followed -= 1
                    log.warning("Not following %s: that file is already listed as %s", files[i][0], files[keep][0])
    if drop:
        files = [f for i, f in enumerate(files) if i not in drop]
    if followed or skipped:
        log.info(
            "Listed %s: followed %d symbolic link(s), skipped %d (loops, repeats, broken links; named above)",
            root, followed, len(skipped),
        )  # fmt: skip
    return files


def _target(path: str, exc: OSError) -> str:
    try:
        return f"-> {os.readlink(path)}: {exc.strerror or exc}"
    except OSError:
        return str(exc)
