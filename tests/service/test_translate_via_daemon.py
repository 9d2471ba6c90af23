"""``asmr-daemon translate`` with a daemon running: the daemon translates with the model it has
loaded (no second copy of the model), through the same code path as the watch folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .e2e import READY_TIMEOUT, logs

pytestmark = pytest.mark.slow


def test_translate_uses_the_running_daemon(world, tmp_path: Path) -> None:
    proc = world["spawn"]()
    world["notify"].wait_for("READY=1", READY_TIMEOUT, proc)
    work = tmp_path / "work"
    work.mkdir()
    script = work / "track.txt"
    script.write_bytes(world["script"].read_bytes())
    (work / "empty.txt").write_bytes(b"")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(world["runtime"])}
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "translate", str(script), str(work / "empty.txt"),
                             "-o", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, result.stderr  # one bad file among two
    assert "by the running daemon" in result.stderr
    assert "empty.txt" in result.stderr and "empty" in result.stderr
    assert (tmp_path / "out" / "track.zh.txt").read_text(encoding="utf-8") == world["expected"]
    assert not (tmp_path / "out" / "empty.zh.txt").exists()
    assert "Loading" not in result.stderr  # no model was loaded by the CLI
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, logs(world)


def test_without_a_daemon_and_without_a_model_it_says_what_to_do(tmp_path: Path) -> None:
    script = tmp_path / "a.txt"
    script.write_text("おはよう\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "translate", str(script)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    assert "no base model configured" in result.stderr
