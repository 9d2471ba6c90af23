"""The real daemon process with the tiny real model: sd_notify, translation, crash safety, stop.

``tiny_kit`` (tests/conftest.py) provides a tiny ChatGLM2-format model + LoRA that translates
its demo script exactly (``.script`` -> ``.expected``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from .e2e import READY_TIMEOUT, final_outputs, logs, wait_until

pytestmark = pytest.mark.slow


def test_ready_after_loading_translate_and_sigterm(world):
    notify = world["notify"]
    proc = world["spawn"]()
    ready = notify.wait_for("READY=1", READY_TIMEOUT, proc)
    loading = [i for i, m in enumerate(notify.messages) if m.startswith("STATUS=loading model")]
    assert loading and loading[0] < ready, notify.messages
    status = json.loads((world["state"] / "status.json").read_text())
    assert status["phase"] == "ready" and status["model"]["loaded"] is True
    assert status["pid"] == proc.pid and status["model"]["adapter"]

    script = world["script"]
    shutil.copy(script, world["inbox"] / script.name)
    out = world["outbox"] / (script.stem + ".zh" + script.suffix)
    wait_until(out.exists, 120, "the translation", world)
    assert out.read_text(encoding="utf-8") == world["expected"]
    wait_until(lambda: (world["inbox"] / "done" / script.name).exists(), 30, "input in done/", world)

    status_cli = subprocess.run([sys.executable, "-m", "asmr_daemon", "status", "--state-dir", str(world["state"])],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert status_cli.returncode == 0 and "ready (pid" in status_cli.stdout and "1 done" in status_cli.stdout

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, logs(world)
    notify.wait_for("STOPPING=1", 5, start=ready)
    assert json.loads((world["state"] / "status.json").read_text())["phase"] == "stopped"


def test_kill_9_three_times_loses_nothing_and_duplicates_nothing(world):
    notify, inbox, outbox, expected = world["notify"], world["inbox"], world["outbox"], world["expected"]
    script = world["script"]
    names = [f"copy{i:02}{script.suffix}" for i in range(30)]
    violations: list[str] = []
    watching = threading.Event()

    def observe() -> None:
        # Every file under a final name must be complete whenever we look.
        while not watching.is_set():
            for path in final_outputs(outbox):
                try:
                    text = path.read_text(encoding="utf-8")
                except FileNotFoundError:
                    continue
                if text != expected:
                    violations.append(f"{path.name}: {len(text)} chars")
            time.sleep(0.01)

    observer = threading.Thread(target=observe, daemon=True)
    observer.start()
    staging = world["logs"] / "staging"
    staging.mkdir()
    try:
        for wave in range(3):
            proc = world["spawn"]()
            notify.wait_for("READY=1", READY_TIMEOUT, proc, start=len(notify.messages))
            before = len(final_outputs(outbox))
            for name in names[wave * 10:(wave + 1) * 10]:
                shutil.copy(script, staging / name)
                os.rename(staging / name, inbox / name)
            wait_until(lambda: len(final_outputs(outbox)) > before, 120, "progress", world)
            proc.kill()  # kill -9 in the middle of the wave
            proc.wait()
        proc = world["spawn"]()
        notify.wait_for("READY=1", READY_TIMEOUT, proc, start=len(notify.messages))
        wait_until(lambda: len(final_outputs(outbox)) == 30 and
                   len(list((inbox / "done").glob("*"))) == 30, 300, "all 30 outputs", world)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        watching.set()
        observer.join()
    assert violations == []
    outputs = sorted(p.name for p in final_outputs(outbox))
    assert outputs == sorted(n.replace(script.suffix, ".zh" + script.suffix) for n in names)
    assert all(p.read_text(encoding="utf-8") == expected for p in final_outputs(outbox))
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(names)  # no "(1)" duplicates
    assert sorted(p.name for p in inbox.iterdir()) == [".asmr-daemon.lock", "done"]
    import sqlite3

    db = sqlite3.connect(world["state"] / "jobs.sqlite")
    assert dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()) == {"done": 30}
    db.close()
