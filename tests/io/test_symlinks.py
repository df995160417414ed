"""Listing a local source folder follows symbolic links, catches loops and repeats, and says so.

(The end-to-end case, sent to linkai-server through the CLI, is in tests/test_cli.py.)"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from linkai_provider.io.sources import list_audio


def names(listing, root: Path) -> list[str]:
    return [f.path.removeprefix(f"{root}/") for f in listing.files]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """calls/ with a real folder, links to a file and to a folder outside, a loop, a repeat and a broken link."""
    calls, outside = tmp_path / "calls", tmp_path / "outside"
    (calls / "real" / "deep").mkdir(parents=True)
    (outside / "sub").mkdir(parents=True)
    for path in (calls / "a.wav", calls / "real" / "deep" / "b.wav", outside / "c.wav", outside / "sub" / "d.wav",
                 tmp_path / "e.wav"):  # fmt: skip
        path.write_bytes(b"RIFF" + path.name.encode())
    (calls / "e.wav").symlink_to(tmp_path / "e.wav")
    (calls / "ext").symlink_to(outside, target_is_directory=True)
    (calls / "ext-again").symlink_to(outside, target_is_directory=True)  # the same folder twice: listed once
    (calls / "shortcut").symlink_to(calls / "real", target_is_directory=True)  # a real folder: its real path wins
    (calls / "real" / "deep" / "up").symlink_to("../..", target_is_directory=True)  # a loop to calls/
    (calls / "broken.wav").symlink_to(tmp_path / "nothing.wav")
    return calls


def test_links_followed_loops_and_repeats_skipped(tree: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="linkai_provider.io.symlinks"):
        listing = list_audio(str(tree))
    assert names(listing, tree) == ["a.wav", "e.wav", "ext/c.wav", "ext/sub/d.wav", "real/deep/b.wav"]
    log = caplog.text
    assert f"Not following {tree}/real/deep/up -> ../..: a loop back to {tree}, which contains it" in log
    assert f"Not following {tree}/shortcut: that folder is already listed as {tree}/real" in log
    assert f"Not following {tree}/ext-again: that folder is already listed as {tree}/ext" in log
    assert f"Skipping {tree}/broken.wav: a broken symbolic link (-> {tree.parent}/nothing.wav" in log
    assert f"Listed {tree}: followed 2 symbolic link(s), skipped 4" in log


def test_a_linked_file_is_fingerprinted_by_its_target(tree: Path) -> None:
    target = tree.parent / "e.wav"
    before = {f.path: f for f in list_audio(str(tree)).files}[f"{tree}/e.wav"]
    assert before.size == target.stat().st_size
    os.utime(target, (1_000_000, 1_000_000))  # the recording changes; the link does not
    after = {f.path: f for f in list_audio(str(tree)).files}[f"{tree}/e.wav"]
    assert after.fingerprint != before.fingerprint and "mtime:1000000.000000" in after.fingerprint


def test_a_linked_folder_given_as_the_source(tree: Path) -> None:
    listing = list_audio(str(tree / "ext"))
    assert names(listing, tree / "ext") == ["c.wav", "sub/d.wav"]


def test_a_folder_that_cannot_be_read_is_named(tree: Path, caplog, monkeypatch) -> None:
    # (a mode of 0 stops no root user, and CI runs as root: refuse the listing itself)
    locked, scandir = str(tree / "real" / "deep"), os.scandir

    def refusing(path):
        if str(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path)

    monkeypatch.setattr("linkai_provider.io.symlinks.os.scandir", refusing)
    with caplog.at_level(logging.WARNING, logger="linkai_provider.io.symlinks"):
        listing = list_audio(str(tree))
    assert "real/deep/b.wav" not in names(listing, tree) and "a.wav" in names(listing, tree)
    assert f"Cannot list {locked} ([Errno 13] Permission denied" in caplog.text


def test_a_glob_follows_links_as_a_folder_does(tree: Path, caplog) -> None:
    # fsspec's local glob lists links as type "other": calls/*.wav used to leave e.wav out
    assert names(list_audio(f"{tree}/*.wav"), tree) == ["a.wav", "e.wav"]
    with caplog.at_level(logging.WARNING, logger="linkai_provider.io.symlinks"):
        deep = list_audio(f"{tree}/**/*.wav")
    assert names(deep, tree) == names(list_audio(str(tree)), tree)  # ** reaches what the folder does
    assert f"Not following {tree}/real/deep/up -> ../..: a loop back to {tree}" in caplog.text
    # only as deep as the pattern: one folder down, through a link or not
    assert names(list_audio(f"{tree}/*/*.wav"), tree) == ["ext/c.wav"]
    assert names(list_audio(f"{tree}/e*/s?b/[d].wav"), tree) == ["ext/sub/d.wav"]


def test_a_file_reached_under_two_names_is_listed_once(tmp_path: Path, caplog) -> None:
    calls, outside = tmp_path / "calls", tmp_path / "outside.wav"
    (calls / "b").mkdir(parents=True)
    for path in (calls / "b" / "real.wav", outside, calls / "hard.wav"):
        path.write_bytes(b"RIFF" + path.name.encode())
    os.link(calls / "hard.wav", calls / "hard-too.wav")  # two real names: both kept, as find -L does
    (calls / "a-alias.wav").symlink_to(calls / "b" / "real.wav")  # met first, but the real path wins
    (calls / "x1.wav").symlink_to(outside)
    (calls / "x2.wav").symlink_to(outside)  # a second link to the same recording: the first one wins
    with caplog.at_level(logging.INFO, logger="linkai_provider.io.symlinks"):
        listing = list_audio(str(calls))
    assert names(listing, calls) == ["b/real.wav", "hard-too.wav", "hard.wav", "x1.wav"]
    assert f"Not following {calls}/a-alias.wav: that file is already listed as {calls}/b/real.wav" in caplog.text
    assert f"Not following {calls}/x2.wav: that file is already listed as {calls}/x1.wav" in caplog.text
    assert f"Listed {calls}: followed 1 symbolic link(s), skipped 2" in caplog.text
    assert names(list_audio(f"{calls}/*.wav"), calls) == ["a-alias.wav", "hard-too.wav", "hard.wav", "x1.wav"]
