"""A real ``asmr-daemon serve`` with the tiny-model kit, and pytest-lsp clients that talk to it.

The end-to-end language-server tests start one daemon per module (``running_daemon`` in a
module-scoped fixture) and share it: loading even the tiny model takes seconds. Sharing also
shares the translation memory, which only ever holds the model's own answers, so a hover served
from memory is still exactly what the model said.

Every user path of the daemon lives in one short temp dir (not pytest's ``tmp_path``): the
socket path under ``$XDG_RUNTIME_DIR`` must stay under ~108 bytes, and a module-scoped daemon
starts before the autouse ``isolated_user_dirs`` fixture has redirected anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lsprotocol import types
from ports import free_port
from pytest_lsp import LanguageClient, make_test_lsp_client

from asmr_daemon.scripts import parse_text
from asmr_daemon.scripts.model import LineKind

STARTUP_TIMEOUT = 180.0
# What one request may take at most: generous, the tiny model answers in well under a second,
# but two shared cores may be busy with the rest of the suite.
ANSWER_TIMEOUT = 120.0
SOCKET_PATH_LIMIT = 107  # sun_path is 108 bytes on Linux, NUL included


@dataclass(frozen=True)
class RealDaemon:
    """A running ``asmr-daemon serve`` and where everything it uses lives."""

    proc: subprocess.Popen
    root: Path
    env: dict[str, str]  # the environment editors (and the bridge) should run with
    inbox: Path
    outbox: Path
    state_dir: Path
    socket_path: Path
    tcp_port: int | None
    log: Path

    @property
    def token(self) -> str:
        """What TCP clients must send: the token the daemon generated into its state dir."""
        return (self.state_dir / "lsp.token").read_text(encoding="ascii").strip()

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def status(self) -> dict:
        try:
            return json.loads((self.state_dir / "status.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}


@contextlib.contextmanager
def running_daemon(kit, *, tcp: str | None = "127.0.0.1", config: str | None = None) -> Iterator[RealDaemon]:
    """``asmr-daemon serve`` with the kit's base model + LoRA, ready (status ``phase: ready``).

    ``tcp``: the host for ``--lsp-tcp HOST:PORT`` (a free port is picked), None for the socket
    only. ``config``: the text of a config file passed with ``--config``.
    """
    root = Path(tempfile.mkdtemp(prefix="asmr-e2e-"))
    dirs = {name: root / name for name in ("home", "config", "state", "cache", "run")}
    for path in dirs.values():
        path.mkdir(mode=0o700)
    env = {
        **os.environ,
        "HOME": str(dirs["home"]),
        "XDG_CONFIG_HOME": str(dirs["config"]),
        "XDG_STATE_HOME": str(dirs["state"]),
        "XDG_CACHE_HOME": str(dirs["cache"]),
        "XDG_RUNTIME_DIR": str(dirs["run"]),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    socket_path = dirs["run"] / "asmr-daemon" / "lsp.sock"
    assert len(str(socket_path).encode()) < SOCKET_PATH_LIMIT, socket_path
    inbox, outbox, state_dir = root / "inbox", root / "outbox", root / "daemon-state"
    command = [
        sys.executable, "-m", "asmr_daemon", "serve",
        "--base-model", str(kit.base_dir), "--adapter", str(kit.adapter_dir), "--device", "cpu",
        "--inbox", str(inbox), "--outbox", str(outbox), "--state-dir", str(state_dir),
    ]  # fmt: skip
    if config is not None:
        config_file = root / "config.toml"
        config_file.write_text(config, encoding="utf-8")
        command += ["--config", str(config_file)]
    port = None
    if tcp is not None:
        port = free_port()
        command += ["--lsp-tcp", f"{tcp}:{port}"]
    log = root / "daemon.log"
    with log.open("wb") as log_file:
        proc = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    daemon = RealDaemon(proc, root, env, inbox, outbox, state_dir, socket_path, port, log)
    try:
        _wait_until_ready(daemon)
        yield daemon
    finally:
        try:
            _stop(daemon)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _wait_until_ready(daemon: RealDaemon) -> None:
    # ``ready`` is written after the language-server endpoint is listening (socket and TCP).
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while daemon.status().get("phase") != "ready":
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"asmr-daemon serve did not become ready (rc={daemon.proc.poll()}):\n{daemon.log_text()}")
        time.sleep(0.1)
    assert daemon.socket_path.is_socket(), daemon.log_text()


def _stop(daemon: RealDaemon) -> None:
    if daemon.proc.poll() is None:
        daemon.proc.send_signal(signal.SIGTERM)  # finishes the file in flight, then exits 0
        try:
            daemon.proc.wait(120)
        except subprocess.TimeoutExpired:
            daemon.proc.kill()
            daemon.proc.wait()
            pytest.fail(f"asmr-daemon serve did not stop on SIGTERM:\n{daemon.log_text()}")
    log = daemon.log_text()
    # A client going away (exit, a dropped connection, a refused token) must never show up as
    # an error of the daemon's own (pygls logs each error *answer* it sends with a traceback).
    assert daemon.proc.returncode == 0, log
    assert not re.search(r"^(\S+ \S+ )?(ERROR|CRITICAL) asmr_daemon", log, re.MULTILINE), log  # after a timestamp


# -- the kit's script as documents ------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """The kit's script and its hand-written translation, line by line (LF, final newline)."""

    text: str
    lines: list[str]
    expected: list[str]  # expected[i]: the translation of lines[i] (== lines[i] when kept as is)

    @classmethod
    def of(cls, kit) -> Script:
        text = kit.script.read_text(encoding="utf-8")
        lines = text.split("\n")[:-1]
        expected = kit.expected.read_text(encoding="utf-8").split("\n")[:-1]
        assert text.endswith("\n") and len(lines) == len(expected)
        return cls(text, lines, expected)

    def translated(self) -> list[int]:
        """Indices of the lines the model translates: those whose expected text differs."""
        indices = [i for i, (ja, zh) in enumerate(zip(self.lines, self.expected)) if ja != zh]
        # The same lines the product's parser calls TEXT (blank lines, ふー…, ちゅっ are kept).
        assert indices == [line.index for line in parse_text(self.text, "txt").lines if line.kind is LineKind.TEXT]
        return indices

    def with_inserted(self, after: int, line: str) -> str:
        return "\n".join([*self.lines[: after + 1], line, *self.lines[after + 1 :]]) + "\n"

    def bilingual(self) -> str:
        """What ``asmr.translateDocument`` makes: each translated line followed by its translation."""
        out: list[str] = []
        translated = set(self.translated())
        for i, line in enumerate(self.lines):
            out.append(line)
            if i in translated:
                out.append(self.expected[i])
        return "\n".join(out) + "\n"


# -- clients ----------------------------------------------------------------------------------


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(apply_edit=True),
        window=types.WindowClientCapabilities(work_done_progress=True),
    )


def _recording(client: LanguageClient) -> LanguageClient:
    """Accept (and record) the server's ``workspace/applyEdit`` requests in ``client.applied``."""
    client.applied = []  # type: ignore[attr-defined]

    @client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        client.applied.append(params)  # type: ignore[attr-defined]
        return types.ApplyWorkspaceEditResult(applied=True)

    return client


async def bridge_client(daemon: RealDaemon) -> LanguageClient:
    """A client that starts ``asmr-daemon lsp`` (the stdio bridge) the way editors do: the
    bridge finds the daemon's socket through ``$XDG_RUNTIME_DIR``."""
    client = _recording(make_test_lsp_client())
    await client.start_io(sys.executable, "-m", "asmr_daemon", "lsp", env=daemon.env)
    return client


async def tcp_client(port: int, token: str | None = None, host: str = "127.0.0.1") -> LanguageClient:
    """A TCP client; ``initialize`` sends ``token`` unless told another one."""
    client = _recording(make_test_lsp_client())
    client.asmr_token = token  # type: ignore[attr-defined]
    await client.start_tcp(host, port)
    return client


async def connect(daemon: RealDaemon, transport: str) -> LanguageClient:
    if transport == "bridge":
        return await bridge_client(daemon)
    assert transport == "tcp" and daemon.tcp_port is not None
    return await tcp_client(daemon.tcp_port, daemon.token)


async def initialize(client: LanguageClient, token: str | None = None) -> types.InitializeResult:
    token = token if token is not None else getattr(client, "asmr_token", None)
    params = types.InitializeParams(
        capabilities=capabilities(), initialization_options={"token": token} if token is not None else None
    )
    return await asyncio.wait_for(client.initialize_session(params), ANSWER_TIMEOUT)


async def close(client: LanguageClient) -> None:
    """``shutdown`` + ``exit``; the daemon closes this connection (the bridge process then ends)."""
    await asyncio.wait_for(client.shutdown_async(None), ANSWER_TIMEOUT)
    client.exit(None)
    if client._server is not None:  # the bridge
        assert await asyncio.wait_for(client._server.wait(), 30) == 0
    await asyncio.wait_for(client.stop(), 30)  # ends when the daemon has closed the connection


async def drop(client: LanguageClient) -> None:
    """Hang up without ``exit`` (a connection the daemon refused, an editor that crashed)."""
    if client.protocol.writer is not None:
        client.protocol.writer.close()
    client._stop_event.set()
    for task in client._async_tasks:
        task.cancel()
    await asyncio.gather(*client._async_tasks, return_exceptions=True)
    if client._server is not None and client._server.returncode is None:
        client._server.kill()
        await client._server.wait()


URI_ROOT = "file:///tmp/asmr-e2e-docs"


def open_doc(client: LanguageClient, text: str, name: str = "script.txt") -> str:
    uri = f"{URI_ROOT}/{name}"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)
        )
    )
    return uri


async def hover(client: LanguageClient, uri: str, line: int) -> str:
    result = await asyncio.wait_for(
        client.text_document_hover_async(
            types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=0))
        ),
        ANSWER_TIMEOUT,
    )
    assert result is not None and isinstance(result.contents, types.MarkupContent)
    return result.contents.value


def apply_edits(text: str, edits: list[types.TextEdit]) -> str:
    """``text`` after ``edits`` (UTF-16 positions, LSP semantics: all ranges refer to ``text``)."""
    lines = text.split("\n")

    def offset(position: types.Position) -> int:
        before = sum(len(line) + 1 for line in lines[: position.line])
        if position.line >= len(lines):
            return len(text)
        units = lines[position.line].encode("utf-16-le")[: 2 * position.character]
        return before + len(units.decode("utf-16-le"))

    spans = sorted(((offset(e.range.start), offset(e.range.end), e.new_text) for e in edits), reverse=True)
    for start, end, new_text in spans:
        text = text[:start] + new_text + text[end:]
    return text
