"""pygls' JSON-RPC protocol with a default the daemon cannot keep: ``exit`` calls ``sys.exit`` in
pygls -- in the daemon that would take every other editor and the watch folder down with one
client. Here ``exit`` only closes this connection. (Who may connect at all, and the token, are
checked before a session exists: ``connection``.)

It also answers a request whose params do not fit its method (pygls drops it) with InvalidParams.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Unreadable:
    """A request that could not be deserialized: answered with InvalidParams."""

    id: Any
    error: Exception


class AsmrProtocol(LanguageServerProtocol):
    """pygls' protocol with a connection-scoped ``exit``."""

    on_exit: Callable[[], None] | None = None

    def structure_message(self, data: dict[str, Any]) -> Any:
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            # pygls drops a request whose params do not fit the method's type, leaving the
            # client waiting forever; answer it instead (InvalidParams).
            if isinstance(data, dict) and "id" in data and "method" in data:
                return _Unreadable(id=data["id"], error=exc)
            raise

    def handle_message(self, message: Any) -> None:
        if isinstance(message, _Unreadable):
            self._send_response(message.id, error=JsonRpcInvalidParams(message=f"invalid params: {message.error.__cause__ or message.error}").to_response_error())
            return
        super().handle_message(message)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any):  # type: ignore[override]
        if self.on_exit is None:  # stdio: the process is this one client, pygls may exit it
            yield from super().lsp_exit(*args)
            return
        self.on_exit()
