"""Fixtures of the deployment and documentation tests."""

from __future__ import annotations

import pytest

from tests.deploy.transcripts import Transcripts, write_dataset


@pytest.fixture
def transcripts(tmp_path) -> Transcripts:
    """A real transcript dataset (see ``tests/deploy/transcripts.py``) under ``tmp_path``."""
    return write_dataset(tmp_path / "transcripts")
