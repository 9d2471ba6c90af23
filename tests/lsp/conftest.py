"""Fixtures: a pytest-lsp client talking over stdio to the real server with a fake engine."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def capabilities() -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            apply_edit=True,
            inlay_hint=types.InlayHintWorkspaceClientCapabilities(refresh_support=True),
        ),
        window=types.WindowClientCapabilities(work_done_progress=True),
        text_document=types.TextDocumentClientCapabilities(
            synchronization=types.TextDocumentSyncClientCapabilities(did_save=True),
        ),
    )


class EditorState:
    """What the fake editor received from the server besides responses."""

    def __init__(self) -> None:
        self.applied: list[types.ApplyWorkspaceEditParams] = []
        self.refreshes = asyncio.Queue()


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, str(HERE / "fake_server.py")]))
async def client(lsp_client: LanguageClient):
    editor = EditorState()
    lsp_client.editor = editor

    @lsp_client.feature(types.WORKSPACE_APPLY_EDIT)
    def apply_edit(params: types.ApplyWorkspaceEditParams) -> types.ApplyWorkspaceEditResult:
        editor.applied.append(params)
        return types.ApplyWorkspaceEditResult(applied=True)

    @lsp_client.feature(types.WORKSPACE_INLAY_HINT_REFRESH)
    def refresh(params: None) -> None:
        editor.refreshes.put_nowait(True)

    await lsp_client.initialize_session(types.InitializeParams(capabilities=capabilities()))
    yield
    await lsp_client.shutdown_session()
