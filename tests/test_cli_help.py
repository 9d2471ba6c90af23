"""Every subcommand of DESIGN.md section 4 exists and answers --help (fast: no model is loaded)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from asmr_daemon.cli import SUBCOMMANDS


def test_the_designed_subcommands_exist() -> None:
    assert set(SUBCOMMANDS) >= {"serve", "translate", "lsp", "convert", "train", "status", "doctor",
                                "install-service", "demo", "inspect"}


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_every_subcommand_has_help(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", command, "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"asmr-daemon {command}" in result.stdout
