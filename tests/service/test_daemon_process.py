"""``Daemon.run()`` in a real process (signals, sd_notify, watchdog pings, reload) with a fake
translator injected through the Python API: no model needed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from .notify import NotifyListener

DRIVER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from asmr_daemon.config import Settings
    from asmr_daemon.service.daemon import Daemon
    from asmr_daemon.service.logs import setup_logging

    inbox, outbox, state = map(Path, sys.argv[1:4])

    def settings():
        s = Settings()
        s.paths.inbox, s.paths.outbox, s.paths.state_dir = inbox, outbox, state
        s.watch.stable_seconds = 0.2
        return s

    def slow_upper(src, dest):
        time.sleep(1.0)  # long enough for SIGTERM to arrive while the file is in flight
        dest.write_text(src.read_text().upper())

    setup_logging()
    reloads = []
    def reload():
        daemon.apply(settings())
        print("RELOADED", flush=True)

    daemon = Daemon(settings(), slow_upper, model=lambda: {"base_model": "fake"}, reload=reload)
    sys.exit(daemon.run())
''')


@pytest.fixture
def short_dir():
    path = Path(tempfile.mkdtemp(prefix="asmr-proc-", dir="/tmp"))
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def test_signals_notify_and_watchdog(tmp_path, short_dir):
    listener = NotifyListener(short_dir / "notify.sock")
    inbox, outbox, state = tmp_path / "in", tmp_path / "out", tmp_path / "state"
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "200000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(inbox), str(outbox), str(state)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = listener.wait_for("READY=1", 60, proc)
        assert any(m.startswith("STATUS=ready: fake") for m in listener.messages)
        listener.wait_for("WATCHDOG=1", 10, proc, start=ready)
        record = json.loads((state / "status.json").read_text())
        assert record["phase"] == "ready" and record["pid"] == proc.pid

        proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING=1", 10, proc, start=ready)
        listener.wait_for("READY=1", 10, proc, start=reloading)

        (inbox / "a.txt").write_text("in flight\n")
        deadline = time.monotonic() + 30
        while json.loads((state / "status.json").read_text()).get("current") != "a.txt":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        listener.close()
    assert proc.returncode == 0, out
    assert "STOPPING=1" in listener.messages
    assert "RELOADED" in out and "\x1b[" not in out  # plain lines, no colours on a pipe
    # The file in flight was finished before exiting.
    assert (outbox / "a.zh.txt").read_text() == "IN FLIGHT\n"
    assert (inbox / "done" / "a.txt").exists()
    assert json.loads((state / "status.json").read_text())["phase"] == "stopped"


def test_status_command_when_the_daemon_is_down(tmp_path, capsys, monkeypatch):
    from asmr_daemon.cli import main
    from asmr_daemon.errors import InputCode
    from asmr_daemon.watch.jobs import JobStore

    monkeypatch.setenv("COLUMNS", "200")
    state = tmp_path / "state"
    store = JobStore(state / "jobs.sqlite")
    job = store.enqueue("bad.txt")
    store.claim()
    store.fail(job, InputCode.ENCODING, "bad.txt is not UTF-8, UTF-16 or Shift_JIS")
    store.enqueue("next.txt")
    store.close()
    (state / "status.json").write_text(json.dumps({"pid": 999999999, "phase": "ready", "heartbeat": 0,
                                                   "model": {"base_model": "/m", "loaded": True}}))
    assert main(["status", "--state-dir", str(state)]) == 0
    out = capsys.readouterr().out
    assert "not running" in out and "ended unexpectedly" in out
    assert "1 queued, 0 running, 0 done, 1 failed" in out
    assert "bad.txt" in out and "encoding" in out


def test_daemon_state_heartbeat_freshness():
    from asmr_daemon.commands.status import daemon_state

    now = time.time()
    me = os.getpid()
    assert daemon_state(None)[0] is False
    assert daemon_state({"pid": me, "phase": "ready", "heartbeat": now}, now) == (True, f"ready (pid {me})")
    running, line = daemon_state({"pid": me, "phase": "ready", "heartbeat": now - 100}, now)
    assert not running and "not responding" in line
    assert daemon_state({"pid": me, "phase": "loading", "heartbeat": now - 100}, now)[0] is True
    assert daemon_state({"pid": me, "phase": "stopped", "heartbeat": now}, now)[0] is False
