"""Helpers shared by the language-server tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lsp_fakes import FakeEngine, SerialEngine
from lsprotocol import types
from ports import free_port
from pytest_lsp import LanguageClient

from asmr_daemon.config import PathSettings, Settings
from asmr_daemon.lsp.endpoint import LspEndpoint
from asmr_daemon.lsp.framing import Limits
from asmr_daemon.lsp.translate import Translator


def open_doc(client: LanguageClient, text: str, name: str = "script.txt", language_id: str = "plaintext") -> str:
    uri = f"file:///tmp/asmr-lsp-test/{name}"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        )
    )
    return uri


async def state(client: LanguageClient) -> dict:
    return await client.workspace_execute_command_async(types.ExecuteCommandParams(command="fake.state"))


def pos(line: int, character: int = 0) -> types.Position:
    return types.Position(line=line, character=character)


def rng(start: int, end: int, end_character: int = 0) -> types.Range:
    return types.Range(start=pos(start), end=pos(end, end_character))


@contextmanager
def endpoints(root: Path, *, tcp_by_default: bool = False) -> Iterator[Callable[..., LspEndpoint]]:
    """A factory of started in-process endpoints (fake engine unless given) with their state, inbox,
    outbox and socket under ``root``; a loopback TCP listener on a free port too when
    ``tcp_by_default``. All are stopped (and their serial engines closed) on exit."""
    started: list[LspEndpoint] = []

    def make(engine=None, limits: Limits | None = None, **kwargs) -> LspEndpoint:
        kwargs.setdefault("socket_path", root / "run" / "lsp.sock")
        if tcp_by_default:
            kwargs.setdefault("tcp", f"127.0.0.1:{free_port()}")
        settings = Settings(paths=PathSettings(state_dir=root / "state", inbox=root / "inbox", outbox=root / "outbox"))
        translator = Translator(engine or FakeEngine(), settings, use_adapter=kwargs.pop("use_adapter", None))
        endpoint = LspEndpoint(translator, settings, limits=limits, **kwargs)
        endpoint.start()
        started.append(endpoint)
        return endpoint

    try:
        yield make
    finally:
        for endpoint in started:
            endpoint.stop()
            if isinstance(endpoint.translator.engine, SerialEngine):
                endpoint.translator.engine.close()
