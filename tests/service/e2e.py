"""Helpers for the real-daemon tests (the ``world`` fixture is in conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path

READY_TIMEOUT = 300.0


def logs(world) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(world["logs"].glob("daemon-*.log")))


def final_outputs(outbox: Path) -> list[Path]:
    return [p for p in outbox.rglob("*") if p.is_file() and not p.name.startswith(".")]


def wait_until(condition, timeout: float, what: str, world=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}\n{logs(world) if world else ''}")


