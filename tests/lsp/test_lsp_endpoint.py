"""The daemon's endpoint over real sockets (in-process, fake engine): many clients, exit, token.
The attacks on it are in test_lsp_security.py."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat

import pytest
from lsp_fakes import FakeEngine
from lsp_helpers import endpoints
from lsprotocol import types
from ports import free_port
from pygls.exceptions import JsonRpcException
from pygls.io_ import run_async
from pytest_lsp import LanguageClient, make_test_lsp_client

from asmr_daemon.config import Settings
from asmr_daemon.errors import AsmrError
from asmr_daemon.lsp.endpoint import LspEndpoint
from asmr_daemon.lsp.token import token_path
from asmr_daemon.lsp.translate import Translator

URI = "file:///tmp/asmr-lsp-test/script.txt"


@pytest.fixture
def endpoint_factory(tmp_path):
    with endpoints(tmp_path) as make:
        yield make


async def connect_unix(path) -> LanguageClient:
    client = make_test_lsp_client()
    reader, writer = await asyncio.open_unix_connection(str(path))
    client.protocol.set_writer(writer)
    client._async_tasks.append(
        asyncio.create_task(run_async(stop_event=client._stop_event, reader=reader, protocol=client.protocol, logger=logging.getLogger("client")))
    )
    return client


async def connect_tcp(port: int) -> LanguageClient:
    client = make_test_lsp_client()
    await client.start_tcp("127.0.0.1", port)
    return client


async def initialize(client: LanguageClient, token: str | None = None) -> types.InitializeResult:
    return await client.initialize_session(
        types.InitializeParams(capabilities=types.ClientCapabilities(), initialization_options={"token": token} if token else None)
    )


async def hover_text(client: LanguageClient, text: str) -> str:
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=URI, language_id="plaintext", version=1, text=text))
    )
    result = await asyncio.wait_for(
        client.text_document_hover_async(types.HoverParams(text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=0, character=0))),
        10,
    )
    return result.contents.value


async def close(client: LanguageClient) -> None:
    client.protocol.writer.close()
    client._stop_event.set()
    for task in client._async_tasks:
        task.cancel()


async def test_two_clients_at_once_both_get_answers(endpoint_factory):
    port = free_port()
    endpoint = endpoint_factory(tcp=f"127.0.0.1:{port}")
    assert endpoint.tcp_address == ("127.0.0.1", port)
    a, b = await connect_unix(endpoint.socket_path), await connect_tcp(port)
    await asyncio.gather(initialize(a), initialize(b, endpoint.token))
    answers = await asyncio.gather(hover_text(a, "おはようございます\n"), hover_text(b, "耳かきしますね\n"))
    assert answers == ["早上好", "我来给你掏耳朵哦"]
    await close(a)
    await close(b)


async def test_one_clients_exit_leaves_the_other_working(endpoint_factory):
    endpoint = endpoint_factory()
    a, b = await connect_unix(endpoint.socket_path), await connect_unix(endpoint.socket_path)
    await initialize(a)
    await initialize(b)
    await a.shutdown_async(None)
    a.exit(None)
    await asyncio.sleep(0.2)
    assert await hover_text(b, "おはようございます\n") == "早上好"
    # a third client can still connect, and an abrupt disconnect is harmless too
    c = await connect_unix(endpoint.socket_path)
    await initialize(c)
    await close(c)
    await close(b)
    d = await connect_unix(endpoint.socket_path)
    await initialize(d)
    assert await hover_text(d, "ゆっくり休んでね\n") == "好好休息吧"
    await close(d)
    await close(a)


async def test_every_tcp_client_needs_the_token(tmp_path, endpoint_factory):
    port = free_port()
    endpoint = endpoint_factory(tcp=f"127.0.0.1:{port}")
    generated = token_path(tmp_path / "state")
    assert stat.S_IMODE(generated.stat().st_mode) == 0o600
    assert endpoint.token == generated.read_text(encoding="ascii").strip() and len(endpoint.token) >= 40

    for token in (None, "a-guess"):
        refused = await connect_tcp(port)
        with pytest.raises(JsonRpcException) as excinfo:
            await asyncio.wait_for(initialize(refused, token), 10)
        assert "needs a token" in excinfo.value.message and "lsp.token" in excinfo.value.message
        await asyncio.sleep(0.1)
        assert refused.protocol.writer.transport.is_closing() or refused._async_tasks[0].done()
        await close(refused)

    allowed = await connect_tcp(port)
    await initialize(allowed, endpoint.token)
    assert await hover_text(allowed, "おはようございます\n") == "早上好"
    await close(allowed)


async def test_a_configured_token_is_used_and_kept_across_restarts(tmp_path, endpoint_factory):
    port = free_port()
    endpoint = endpoint_factory(tcp=f"0.0.0.0:{port}", token="s3cret")
    assert endpoint.token == "s3cret" and not token_path(tmp_path / "state").exists()
    allowed = await connect_tcp(port)
    await initialize(allowed, "s3cret")
    await close(allowed)
    endpoint.stop()
    first = endpoint_factory(tcp=f"127.0.0.1:{free_port()}").token
    assert endpoint_factory(tcp=f"127.0.0.1:{free_port()}", socket_path=tmp_path / "run2" / "lsp.sock").token == first


async def test_socket_permissions_and_stale_socket(tmp_path, endpoint_factory):
    path = tmp_path / "run" / "lsp.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    stale.close()
    endpoint = endpoint_factory(socket_path=path)
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with pytest.raises(AsmrError, match="already serving"):
        LspEndpoint(Translator(FakeEngine(), Settings()), Settings(), socket_path=path).start()
    client = await connect_unix(path)
    await initialize(client)
    await close(client)
    endpoint.stop()
    assert not path.exists()
