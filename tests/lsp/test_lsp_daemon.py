"""With the real daemon (tiny model kit): hover over the stdio bridge and over TCP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import make_test_lsp_client

from asmr_daemon.lsp.endpoint import default_socket_path
from asmr_daemon.scripts import parse_text

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daemon(tiny_kit, tmp_path):
    port = free_port()
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "asmr_daemon", "serve", "--base-model", str(tiny_kit.base_dir), "--adapter", str(tiny_kit.adapter_dir),
         "--device", "cpu", "--inbox", str(tmp_path / "inbox"), "--outbox", str(tmp_path / "outbox"),
         "--state-dir", str(tmp_path / "state"), "--lsp-tcp", f"127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    sock = default_socket_path()
    deadline = time.monotonic() + 300
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"daemon did not start: {(tmp_path / 'daemon.log').read_text()}")
        time.sleep(0.2)
    yield port
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def first_text_line(tiny_kit) -> tuple[str, int, str]:
    text = tiny_kit.script.read_text(encoding="utf-8")
    doc = parse_text(text, "txt")
    expected = tiny_kit.expected.read_text(encoding="utf-8").splitlines()
    line = doc.text_lines[0]
    return text, line.index, expected[line.index].strip()


async def hover(client, text: str, line: int) -> str:
    await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    uri = "file:///tmp/asmr-lsp-test/script.txt"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text))
    )
    result = await asyncio.wait_for(
        client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=0))),
        120,
    )
    return result.contents.value


async def test_hover_over_bridge_and_tcp(daemon, tiny_kit):
    text, line, expected = first_text_line(tiny_kit)
    bridged = make_test_lsp_client()
    await bridged.start_io(sys.executable, "-m", "asmr_daemon", "lsp", env=dict(os.environ))
    assert await hover(bridged, text, line) == expected
    await bridged.shutdown_session()
    await bridged.stop()

    tcp = make_test_lsp_client()
    await tcp.start_tcp("127.0.0.1", daemon)
    assert await hover(tcp, text, line) == expected
    tcp.protocol.writer.close()
    tcp._stop_event.set()
