"""The daemon's state dir: one daemon per state dir (``StateLock``) and the status record that
``asmr-daemon status`` reads (``StatusFile``)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from asmr_daemon.errors import ConfigError
from asmr_daemon.private import private_dir
from asmr_daemon.watch.locks import FileLock
from asmr_daemon.watch.outputs import atomic_write_text

STATUS_FILE = "status.json"
JOBS_FILE = "jobs.sqlite"
LOCK_FILE = "daemon.lock"


class StateLock(FileLock):
    """``state_dir/daemon.lock``: one daemon per state dir (two would race for the same jobs)."""

    def __init__(self, state_dir: Path) -> None:
        private_dir(state_dir)
        super().__init__(state_dir / LOCK_FILE, f"{os.getpid()}\n", lambda other: ConfigError(
            f"another asmr-daemon (pid {other}) already uses the state dir {state_dir}",
            "stop it first (systemctl --user stop asmr-daemon), or pass another --state-dir"))


class StatusFile:
    """``state_dir/status.json``: what ``asmr-daemon status`` shows about the running daemon
    (pid, phase, model, heartbeat). Rewritten atomically, so readers never see half of it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update(fields)
            self.data["heartbeat"] = time.time()
            atomic_write_text(self.path, json.dumps(self.data, ensure_ascii=False, indent=2, default=str) + "\n")

    @staticmethod
    def read(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def process_rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")
