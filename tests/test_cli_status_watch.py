"""``status`` shows the file in flight with lines done/total and the time left, and ``status --watch``
keeps a live view (rich Live on a terminal, plain snapshots on a pipe). Real CLI; the daemon's status
record is written the way the daemon writes it."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path


def daemon_record(state: Path, done: int, total: int, started_ago: float) -> None:
    state.mkdir(parents=True, exist_ok=True)
    now = time.time()
    (state / "status.json").write_text(json.dumps({
        "pid": os.getpid(), "phase": "ready", "started": now - 60, "heartbeat": now,
        "model": {"base_model": "/models/tiny", "loaded": True}, "inbox": "/in", "outbox": str(state / "out"),
        "current": "work/long.txt", "progress": {"done": done, "total": total, "started": now - started_ago}}))


def env(state: Path) -> dict[str, str]:
    return {**os.environ, "ASMR_PATHS_STATE_DIR": str(state), "COLUMNS": "200"}


def test_status_shows_lines_done_and_the_time_left(tmp_path: Path) -> None:
    daemon_record(tmp_path / "state", done=10, total=40, started_ago=5)
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "status"], capture_output=True, text=True,
                            env=env(tmp_path / "state"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.search(r"translating\s+│ work/long\.txt: 10/40 lines \(25%\), about 0:\d\d left", result.stdout), \
        result.stdout


def test_status_watch_on_a_pipe_prints_snapshots_until_interrupted(tmp_path: Path) -> None:
    daemon_record(tmp_path / "state", done=10, total=40, started_ago=5)
    proc = subprocess.Popen([sys.executable, "-m", "asmr_daemon", "status", "--watch", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(tmp_path / "state"))
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert len(re.findall(r"^--- \d{4}-\d\d-\d\d \d\d:\d\d:\d\d$", out, re.MULTILINE)) >= 2, out
    assert "\x1b[" not in out and "Traceback" not in err


def test_status_watch_on_a_terminal_updates_in_place(tmp_path: Path) -> None:
    state = tmp_path / "state"
    daemon_record(state, done=10, total=40, started_ago=5)
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "asmr_daemon", "status", "--watch", "--interval", "0.2"],
                            stdin=child, stdout=child, stderr=child, env=env(state), close_fds=True)
    os.close(child)
    seen = b""

    def read_for(seconds: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([main], [], [], 0.1)[0]:
                try:
                    seen += os.read(main, 65536)
                except OSError:
                    return

    read_for(4)
    daemon_record(state, done=30, total=40, started_ago=15)  # the daemon moved on
    read_for(3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    read_for(0.5)
    os.close(main)
    text = seen.decode("utf-8", "replace")
    assert "10/40 lines (25%)" in text and "30/40 lines (75%)" in text, text
    assert "\x1b[" in text  # redrawn in place, not printed again and again
    assert "--- " not in text
