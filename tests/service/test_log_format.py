"""The daemon's log lines through the real ``serve``: timestamped on a pipe or in a file, without a
timestamp but with syslog priorities in the journal (journald stamps each line itself)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def first_log_line(kit, tmp_path: Path, journal: bool) -> str:
    log = tmp_path / "stderr.log"
    with open(log, "w") as handle:
        st = os.fstat(handle.fileno())
        # Under systemd $JOURNAL_STREAM names the journal's stream; here: this file, or another one.
        stream = f"{st.st_dev}:{st.st_ino}" if journal else f"{st.st_dev}:{st.st_ino + 1}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "asmr_daemon", "serve", "--base-model", str(kit.base_dir), "--device", "cpu",
             "--inbox", str(tmp_path / "in"), "--outbox", str(tmp_path / "out"), "--state-dir", str(tmp_path / "s")],
            stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, "JOURNAL_STREAM": stream})
    try:
        deadline = time.monotonic() + 120
        while "loading model" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    return next(line for line in log.read_text().splitlines() if "loading model" in line)


def test_log_lines_carry_a_timestamp(tiny_kit, tmp_path: Path) -> None:
    line = first_log_line(tiny_kit, tmp_path, journal=False)
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d INFO asmr_daemon.serve: loading model {tiny_kit.base_dir}",
                        line), line


def test_in_the_journal_there_is_no_second_timestamp(tiny_kit, tmp_path: Path) -> None:
    line = first_log_line(tiny_kit, tmp_path, journal=True)
    assert line == f"<6>INFO asmr_daemon.serve: loading model {tiny_kit.base_dir}"
