"""``status`` counts the outputs whose review report lists flagged lines (real CLI, no daemon)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_status_counts_review_reports_in_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    (outbox / "work").mkdir(parents=True)
    (outbox / "a.zh.txt").write_text("a\n")
    (outbox / "a.zh.txt.review.txt").write_text("2 lines to review in the translation of /in/a.txt\n")
    (outbox / "work" / "b.zh.srt.review.txt").write_text("1 line to review in the translation of /in/work/b.srt\n")
    (outbox / "notes.review.txt").write_text("my own notes, not a report\n")
    env = {**os.environ, "ASMR_PATHS_OUTBOX": str(outbox), "ASMR_PATHS_STATE_DIR": str(tmp_path / "state"),
           "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "status"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "to review" in result.stdout and "2 outputs with flagged lines (3 lines)" in result.stdout
    assert f"  {outbox}/a.zh.txt.review.txt (2 lines)" in result.stdout
    assert f"  {outbox}/work/b.zh.srt.review.txt (1 line)" in result.stdout
    assert "notes.review.txt" not in result.stdout


def test_status_says_when_nothing_is_flagged(tmp_path: Path) -> None:
    env = {**os.environ, "ASMR_PATHS_OUTBOX": str(tmp_path / "outbox"), "ASMR_PATHS_STATE_DIR": str(tmp_path / "s"),
           "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "status"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nothing flagged" in result.stdout
