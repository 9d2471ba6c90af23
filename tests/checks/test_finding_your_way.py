"""Finding your way (#12 item 7): hints that work as printed, a second daemon on its own socket,
``status`` finding a daemon through its socket, short adapter identities, setup that says what
it is doing."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kit import Kit

from asmr_daemon.cli import command_name
from asmr_daemon.preflight import socket_answers

from .conftest import cli, one_line_error

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="asmr-pf-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_a_daemon_on_its_own_socket_is_found_by_status_and_guarded(tiny_kit: Kit, tmp_path: Path,
                                                                    short_dir: Path) -> None:
    sock, state = short_dir / "b.sock", tmp_path / "state-b"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "asmr_daemon", "serve", "--base-model", str(tiny_kit.base_dir),
         "--adapter", str(tiny_kit.adapter_dir), "--device", "cpu", "--inbox", str(tmp_path / "in"),
         "--outbox", str(tmp_path / "out"), "--state-dir", str(state), "--lsp-socket", str(sock)],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "daemon.log", "w"))
    try:
        deadline = time.monotonic() + 300
        while not socket_answers(sock):
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
            assert time.monotonic() < deadline, "the daemon did not open its socket"
            time.sleep(0.5)
        # status with the default state dir (another one): found through the socket.
        status = cli("status", "--socket", sock)
        assert status.returncode == 0, status.stderr
        flat = " ".join(status.stdout.split())
        assert f"daemon: found through its socket {sock}; its state dir is {state}" in flat, flat
        assert f"(pid {daemon.pid})" in flat and str(state) in flat
        # A second daemon on the same socket, or on the same state dir, is refused before loading.
        again = cli("serve", "--base-model", tiny_kit.base_dir, "--lsp-socket", sock, "--state-dir", tmp_path / "c",
                    "--inbox", tmp_path / "in", "--outbox", tmp_path / "out")
        assert f"another asmr-daemon already serves editors on {sock}" in one_line_error(again, "serve")
        same_state = cli("serve", "--base-model", tiny_kit.base_dir, "--lsp-socket", short_dir / "c.sock",
                         "--state-dir", state, "--inbox", tmp_path / "in", "--outbox", tmp_path / "out")
        assert f"already uses the state dir {state}" in one_line_error(same_state, "serve")
        # use-adapter: a short identity, not 128 hex digits.
        switched = cli("use-adapter", tiny_kit.native_adapter_dir, "--socket", sock)
        assert switched.returncode == 0, switched.stderr
        assert re.search(r"\(identity [0-9a-f]{12}\+[0-9a-f]{12}\)", switched.stdout), switched.stdout
        assert not re.search(r"[0-9a-f]{20}", switched.stdout)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)


@pytest.mark.slow
def test_demo_keep_prints_commands_that_use_the_kept_model(tmp_path: Path) -> None:
    result = cli("demo", "--keep", timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    kept = Path(re.search(r"Demo folders kept in (\S+)\. Use this model again:", out).group(1))
    try:
        cmd = command_name()
        assert f"Next: `{cmd} serve --base-model" in out and f"the command `{cmd} lsp`" in out
        line = next(line.strip() for line in out.splitlines() if line.strip().startswith(f"{cmd} translate FILE"))
        words = shlex.split(line.replace("FILE", str(tmp_path / "demo.txt")))
        from asmr_daemon.demo import SCRIPT_FILE

        shutil.copyfile(SCRIPT_FILE, tmp_path / "demo.txt")
        assert words[0] == cmd and f"{cmd} serve --base-model {kept / 'model' / 'base'}" in out
        translated = subprocess.run(words, capture_output=True, text=True, timeout=600)
        assert translated.returncode == 0, translated.stderr
        assert (tmp_path / "demo.zh.txt").read_text(encoding="utf-8") != SCRIPT_FILE.read_text(encoding="utf-8")
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def test_readme_says_how_to_run_the_command_after_setup() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "**The command after setup** is `.venv/bin/asmr-daemon`" in readme
    assert "source .venv/bin/activate" in readme
    # Editors start the command without an activated shell: the snippets give the full path.
    assert 'command = "/home/me/asmr-daemon/.venv/bin/asmr-daemon"' in readme
    assert '(expand-file-name "~/asmr-daemon/.venv/bin/asmr-daemon") "lsp"' in readme


def test_setup_announces_every_install_step() -> None:
    """Each pip install (minutes, gigabytes) is preceded by a line saying what comes."""
    lines = (REPO / "tools" / "setup.sh").read_text(encoding="utf-8").splitlines()
    installs = [i for i, line in enumerate(lines) if '"${pip[@]}"' in line or "setup-vllm.sh" in line.split("#")[0]]
    assert len(installs) >= 4
    for i in installs:
        previous = next(line for line in reversed(lines[:i]) if line.strip() and not line.strip().startswith("#"))
        assert previous.strip().startswith("step "), lines[i]
    result = subprocess.run(["bash", "-n", str(REPO / "tools" / "setup.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_command_name_is_what_runs_this_installation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "asmr-daemon"
    monkeypatch.setenv("PATH", str(tmp_path))  # not on PATH: the absolute script path
    assert command_name() == (str(script) if script.is_file() else f"{sys.executable} -m asmr_daemon")
    if script.is_file():
        monkeypatch.setenv("PATH", f"{script.parent}{os.pathsep}{tmp_path}")
        assert command_name() == "asmr-daemon"
