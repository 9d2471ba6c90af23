"""Shared pieces for the pre-flight tests: the real CLI as a subprocess, and foreign adapters."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.tiny_model import build_tiny_base, corpus_for

from .foreign import glm_lora, gpt2_lora


def cli(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``asmr-daemon ARGS`` as a user runs it (wide terminal, so rich does not fold messages)."""
    environ = {**os.environ, "COLUMNS": "250", **(env or {})}
    environ.pop("ASMR_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "asmr_daemon", *map(str, args)], capture_output=True, text=True,
                          env=environ, timeout=timeout)


def one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    """The error line of a refused command: exit 1, no traceback, one ``error:`` line."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"asmr-daemon {command}: error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def foreign(tmp_path_factory: pytest.TempPathFactory, tiny_kit: Kit) -> Iterator[dict[str, Path]]:
    """Adapters that do not belong on the kit's base, and a base of the kit's shape it was not trained on."""
    root = tmp_path_factory.mktemp("foreign")
    other = build_tiny_base(root / "other-base", corpus_for(tiny_kit.pairs), seed=1, fmt="glm")
    yield {"gpt2": gpt2_lora(root / "gpt2"), "hidden64": glm_lora(root / "hidden64", hidden_size=64),
           "layers4": glm_lora(root / "layers4", layers=4), "other_base": other}
