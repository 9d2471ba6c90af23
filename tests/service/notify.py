"""A fake ``$NOTIFY_SOCKET`` for the process tests."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path


class NotifyListener:
    """A fake ``$NOTIFY_SOCKET``: records every datagram in arrival order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.extend(data.decode().splitlines())

    def wait_for(self, line: str, timeout: float, proc: subprocess.Popen | None = None, start: int = 0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(start, len(self.messages)):
                if self.messages[i] == line:
                    return i
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode} before {line}")
            time.sleep(0.05)
        raise AssertionError(f"no {line} within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()
