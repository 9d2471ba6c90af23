"""The systemd user unit: offline verification and install-service."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from asmr_daemon.commands import install_service

REPO_UNIT = Path(__file__).resolve().parents[2] / "systemd" / "asmr-daemon.service"

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze is not installed (Debian/Ubuntu: apt-get install -y systemd)")


def verify(unit: Path, tmp_path: Path, home: Path) -> subprocess.CompletedProcess:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_repository_unit_is_the_rendered_template():
    assert REPO_UNIT.read_text() == install_service.render_unit()


@needs_systemd_analyze
def test_repository_unit_verifies_without_warnings(tmp_path):
    home = tmp_path / "home"
    script = home / ".local" / "bin" / "asmr-daemon"  # ExecStart=%h/.local/bin/asmr-daemon must exist
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    unit = tmp_path / "asmr-daemon.service"
    unit.write_text(REPO_UNIT.read_text())
    result = verify(unit, tmp_path, home)
    assert result.returncode == 0, result.stderr
    # Unknown keys only warn (rc stays 0): stderr must be empty too.
    assert result.stderr.strip() == "" and result.stdout.strip() == ""


@needs_systemd_analyze
def test_a_bad_key_is_caught_by_the_stderr_check(tmp_path):
    unit = tmp_path / "asmr-daemon.service"
    unit.write_text(install_service.render_unit(f"{sys.executable} -m asmr_daemon serve")
                    .replace("LockPersonality", "LockPersonalty"))
    result = verify(unit, tmp_path, tmp_path)
    assert result.returncode == 0 and "Unknown key" in result.stderr


@needs_systemd_analyze
def test_install_service_writes_a_unit_that_verifies(tmp_path, monkeypatch, capsys, tiny_kit):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("ASMR_MODEL_BASE_MODEL", str(tiny_kit.base_dir))
    from asmr_daemon.cli import main

    assert main(["install-service"]) == 0
    out = capsys.readouterr().out
    assert "systemctl --user daemon-reload && systemctl --user enable --now asmr-daemon" in out
    unit = tmp_path / "config" / "systemd" / "user" / "asmr-daemon.service"
    text = unit.read_text()
    exec_start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith(" serve") and (sys.executable in exec_start or "/asmr-daemon serve" in exec_start)
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in text.splitlines())
    result = verify(unit, tmp_path, tmp_path)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_dry_run_prints_the_unit_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from asmr_daemon.cli import main

    assert main(["install-service", "--dry-run", "--config", str(tmp_path / "my config.toml")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# asmr-daemon") and "Type=notify" in out and "WatchdogSec=60" in out
    assert f'--config "{tmp_path / "my config.toml"}"' in out
    assert not (tmp_path / "config").exists()


def test_exec_start_quotes_spaces_and_percent():
    assert install_service._quote("/home/a b/%x") == '"/home/a b/%%x"'
    assert install_service._quote("/usr/bin/python3") == "/usr/bin/python3"


def test_install_service_refuses_without_a_base_model(tmp_path, monkeypatch, capsys):
    """The unit could only restart in a loop (Restart=on-failure): refuse, say what to set, write nothing."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    from asmr_daemon.cli import main

    assert main(["install-service"]) == 1
    err = capsys.readouterr().err
    config = tmp_path / "config" / "asmr-daemon" / "config.toml"
    assert err.strip() == ("asmr-daemon install-service: error: not installing the service: no base model is "
                           "configured, so the service could not start (set [model] base_model = "
                           f'"~/models/chatglm2-6b" in {config} first; or pass --force to install it anyway)')
    assert not (tmp_path / "config" / "systemd").exists()
    assert main(["install-service", "--force"]) == 0
    assert "WARNING: the service will not start until this is fixed" in capsys.readouterr().err
    assert (tmp_path / "config" / "systemd" / "user" / "asmr-daemon.service").is_file()
