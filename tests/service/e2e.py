"""Helpers for the real-daemon tests (the ``world`` fixture is in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from poll import poll_until

READY_TIMEOUT = 300.0


def logs(world) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(world["logs"].glob("daemon-*.log")))


def final_outputs(outbox: Path) -> list[Path]:
    return [p for p in outbox.rglob("*") if p.is_file() and not p.name.startswith(".")]


def wait_until(condition, timeout: float, what: str, world=None) -> None:
    poll_until(condition, timeout, lambda: f"{what}\n{logs(world) if world else ''}")


