"""Shared fixtures for the scripts tests: fixture paths and one spaCy pipeline per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmr_daemon.scripts import Segmenter, get_segmenter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scripts"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def segmenter() -> Segmenter:
    """The shared Segmenter with its pipeline loaded once (about a second)."""
    seg = get_segmenter()
    seg.nlp  # noqa: B018 - load now, not inside the first timed test
    return seg
