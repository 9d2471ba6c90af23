"""Shared by the real-daemon tests: a ``world`` fixture that spawns ``asmr-daemon serve`` with the
tiny real model (``tiny_kit``) on temporary folders, with a fake systemd notify socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .notify import NotifyListener


@pytest.fixture
def world(tmp_path, request):
    try:
        tiny_kit = request.getfixturevalue("tiny_kit")
    except pytest.FixtureLookupError:
        pytest.skip("the tiny_kit fixture (tests/conftest.py) is not available")
    # AF_UNIX paths are limited to 108 bytes: keep the sockets in a short temp dir.
    short = Path(tempfile.mkdtemp(prefix="asmr-e2e-", dir="/tmp"))
    runtime = short / "run"
    runtime.mkdir(mode=0o700)
    listener = NotifyListener(short / "notify.sock")
    folders = {name: tmp_path / name for name in ("inbox", "outbox", "state")}
    procs: list[subprocess.Popen] = []
    expected = tiny_kit.expected if isinstance(tiny_kit.expected, str) else Path(tiny_kit.expected).read_text(encoding="utf-8")

    def spawn(**extra_env: str) -> subprocess.Popen:
        env = {**os.environ, "NOTIFY_SOCKET": str(listener.path), "XDG_RUNTIME_DIR": str(runtime),
               "ASMR_WATCH_STABLE_SECONDS": "0.3", "ASMR_WATCH_RESCAN_SECONDS": "2", "PYTHONUNBUFFERED": "1",
               **extra_env}
        env.pop("WATCHDOG_USEC", None)
        log = open(tmp_path / f"daemon-{len(procs)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "asmr_daemon", "serve", "--base-model", str(tiny_kit.base_dir),
             "--adapter", str(tiny_kit.adapter_dir), "--device", "cpu",
             "--inbox", str(folders["inbox"]), "--outbox", str(folders["outbox"]),
             "--state-dir", str(folders["state"])],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    yield {"spawn": spawn, "notify": listener, "expected": expected, "script": Path(tiny_kit.script), "runtime": runtime, **folders,
           "logs": tmp_path}
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    listener.close()
    shutil.rmtree(short, ignore_errors=True)
