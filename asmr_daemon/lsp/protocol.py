"""pygls' JSON-RPC protocol with the two defaults the daemon cannot keep.

* ``exit`` calls ``sys.exit`` in pygls -- in the daemon that would take every other editor and
  the watch folder down with one client. Here ``exit`` only closes this connection.
* with a token (non-loopback TCP) ``initialize`` must carry ``initializationOptions.token``;
  anything else gets an error response and the connection is closed.

It also answers a request whose params do not fit its method (pygls drops it) with InvalidParams.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException,
    JsonRpcInvalidParams,
    JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

logger = logging.getLogger(__name__)

UNAUTHORIZED = -32001
TOKEN_REFUSED = "asmr-daemon: this address needs a token: set initializationOptions.token to [lsp] token"


@dataclass(frozen=True)
class _Unreadable:
    """A request that could not be deserialized: answered with InvalidParams."""

    id: Any
    error: Exception


class AsmrProtocol(LanguageServerProtocol):
    """pygls' protocol with a connection-scoped ``exit`` and an optional token check."""

    required_token: str | None = None
    on_exit: Callable[[], None] | None = None

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self._authorized = False

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
        if self.required_token is not None and not self._authorized:
            method = getattr(message, "method", None)
            if method == types.INITIALIZE and self._token_ok(message.params):
                self._authorized = True
            else:
                # An unauthenticated peer gets one error answer and the connection is closed; the
                # check lives here (not in the initialize handler) so a port scan costs one log
                # line, not a traceback per attempt.
                if getattr(message, "id", None) is not None and method is not None:
                    error = (JsonRpcException(message=TOKEN_REFUSED, code=UNAUTHORIZED) if method == types.INITIALIZE
                             else JsonRpcServerNotInitialized())
                    self._send_response(message.id, error=error.to_response_error())
                logger.warning("refused a connection without the right token")
                self._close()
                return
        super().handle_message(message)

    def _token_ok(self, params: Any) -> bool:
        options = getattr(params, "initialization_options", None)
        given = options.get("token") if isinstance(options, dict) else None
        return isinstance(given, str) and hmac.compare_digest(given.encode(), (self.required_token or "").encode())

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args: Any):  # type: ignore[override]
        if self.on_exit is None:  # stdio: the process is this one client, pygls may exit it
            yield from super().lsp_exit(*args)
            return
        self.on_exit()

    def _close(self) -> None:
        if self.on_exit is not None:
            self.on_exit()
        elif self.writer is not None:
            self.writer.close()
