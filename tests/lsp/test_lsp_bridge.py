"""``asmr-daemon lsp``: the stdio bridge to the daemon's socket (endpoint in-process, fake engine)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from lsp_fakes import FakeEngine
from lsprotocol import types
from pytest_lsp import make_test_lsp_client

from asmr_daemon.config import Settings
from asmr_daemon.lsp.endpoint import LspEndpoint
from asmr_daemon.lsp.translate import Translator

BRIDGE = [sys.executable, "-m", "asmr_daemon", "lsp"]


def test_bridge_without_daemon_says_how_to_start_one(tmp_path):
    sock = tmp_path / "none" / "lsp.sock"
    proc = subprocess.run([*BRIDGE, "--socket", str(sock)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1
    from asmr_daemon.cli import command_name

    assert proc.stderr.strip() == (
        f"asmr-daemon lsp: no daemon is running (socket {sock}); start it with `{command_name()} serve` "
        "or use --standalone"
    )


async def test_bridge_relays_a_whole_session(tmp_path):
    endpoint = LspEndpoint(Translator(FakeEngine(), Settings()), Settings(), socket_path=tmp_path / "run" / "lsp.sock")
    endpoint.start()
    try:
        client = make_test_lsp_client()
        await client.start_io(*BRIDGE, "--socket", str(endpoint.socket_path))
        await client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
        uri = "file:///tmp/asmr-lsp-test/a.txt"
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text="おはようございます\n"))
        )
        hover = await asyncio.wait_for(
            client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=0, character=0))),
            20,
        )
        assert hover.contents.value == "早上好"
        await client.shutdown_session()  # shutdown + exit: the bridge process ends by itself
        assert await asyncio.wait_for(client._server.wait(), 20) == 0
        await client.stop()
    finally:
        endpoint.stop()
