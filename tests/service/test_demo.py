"""The README's first command: ``asmr-daemon demo`` builds the tiny demo model, runs the real
daemon on the bundled script, shows the translation and stops cleanly."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from asmr_daemon.demo import SCRIPT_FILE, load_pairs

pytestmark = pytest.mark.slow


def test_demo_translates_the_bundled_script_through_the_daemon() -> None:
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "demo"], capture_output=True, text=True,
                            timeout=900, env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "DEMO MODEL" in out and "daemon ready" in out and "daemon stopped cleanly" in out
    script = SCRIPT_FILE.read_text(encoding="utf-8")
    shown = [pair for pair in load_pairs() if pair.source in script.splitlines()]
    assert shown and all(pair.target in out for pair in shown)  # whole-line pairs, shown side by side
