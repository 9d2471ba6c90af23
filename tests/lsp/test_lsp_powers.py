"""Least power per command (issue #11, Critical 1 b-d): what an authenticated editor may do.

``asmr.translateFile`` reads and writes no path a client names (script bytes in, output bytes
out); ``asmr.useAdapter`` only over the Unix socket; corrections only from authenticated
clients; error messages name no path. In-process endpoint, fake engine, loopback only.
"""

from __future__ import annotations

import asyncio
import base64

import pytest
from lsp_fakes import FakeEngine
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from test_lsp_endpoint import connect_unix
from test_lsp_security import URI, close, connect, endpoint_factory, open_text, world  # noqa: F401  (fixtures)

TRANSLATE_FILE = "asmr.translateFile"


async def command(client, name: str, *arguments) -> object:
    return await asyncio.wait_for(client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(arguments))), 30)


def content(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


async def test_translate_file_reads_and_writes_no_path_a_client_names(endpoint_factory, world):  # noqa: F811
    engine = FakeEngine()
    endpoint = endpoint_factory(engine)
    victim = world / "victim"
    victim.mkdir(mode=0o700)
    private = victim / "diary.txt"
    private.write_text("おはようございます\n", encoding="utf-8")
    private.chmod(0o600)
    bashrc = victim / ".bashrc"
    bashrc.write_text("# mine\n", encoding="utf-8")
    client = await connect(endpoint)
    for arguments in ([str(private), str(bashrc)], [str(private), str(world / "copy.txt"), {"bilingual": True}],
                      [{"name": "../.bashrc", "content": content("おはようございます\n")}],
                      [{"name": "/etc/passwd", "content": content("x\n")}], [str(world / "missing.txt")]):
        with pytest.raises(JsonRpcException) as excinfo:
            await command(client, TRANSLATE_FILE, *arguments)
        message = excinfo.value.message
        assert str(world) not in message and "victim" not in message and "passwd" not in message, message
    assert bashrc.read_text(encoding="utf-8") == "# mine\n"
    assert not (world / "copy.txt").exists() and engine.submitted == []
    await close(client)


async def test_translate_file_returns_the_output_of_the_given_bytes(endpoint_factory):  # noqa: F811
    endpoint = endpoint_factory(FakeEngine())
    client = await connect(endpoint)
    answer = await command(client, TRANSLATE_FILE, {"name": "track.txt", "content": content("おはようございます\n")},
                           {"bilingual": True})
    assert answer["name"] == "track.zh.txt"
    assert base64.b64decode(answer["content"]).decode("utf-8") == "おはようございます\n早上好\n"
    # an open document, as the editor has it
    open_text(client, "耳かきしますね\n")
    answer = await command(client, TRANSLATE_FILE, URI)
    assert (answer["name"], base64.b64decode(answer["content"])) == ("script.zh.txt", "我来给你掏耳朵哦\n".encode())
    await close(client)


async def test_translate_file_errors_name_the_file_not_where_it_passed(endpoint_factory):  # noqa: F811
    endpoint = endpoint_factory(FakeEngine())
    client = await connect(endpoint)
    with pytest.raises(JsonRpcException) as excinfo:
        await command(client, TRANSLATE_FILE, {"name": "empty.txt", "content": ""})
    assert excinfo.value.message.startswith("empty.txt") and "asmr-translate" not in excinfo.value.message
    await close(client)


async def test_use_adapter_only_over_the_socket(endpoint_factory, world):  # noqa: F811
    switched = []
    endpoint = endpoint_factory(FakeEngine(), use_adapter=lambda path: switched.append(path) or "adapter-identity")
    adapter = world / "adapters" / "v2"
    adapter.mkdir(parents=True)
    tcp = await connect(endpoint)
    with pytest.raises(JsonRpcException) as excinfo:
        await command(tcp, "asmr.useAdapter", str(adapter))
    assert "only over the daemon's Unix socket" in excinfo.value.message and str(world) not in excinfo.value.message
    assert switched == []
    await close(tcp)
    local = await connect_unix(endpoint.socket_path)
    await local.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    assert (await command(local, "asmr.useAdapter", str(adapter)))["identity"] == "adapter-identity"
    assert [str(p) for p in switched] == [str(adapter)]
    await close(local)


async def test_an_authenticated_client_records_corrections(endpoint_factory):  # noqa: F811
    # The counterpart of test_no_message_is_executed_before_initialize_with_the_token: the
    # token, not a blanket ban, is what stands between a peer and the memory.
    engine = FakeEngine()
    endpoint = endpoint_factory(engine)
    client = await connect(endpoint)
    open_text(client, "おはようございます\n大家早上好\n")
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=URI)))
    for _ in range(100):
        if engine.corrections:
            break
        await asyncio.sleep(0.05)
    assert engine.corrections == [("おはようございます", "大家早上好")]
    await close(client)
