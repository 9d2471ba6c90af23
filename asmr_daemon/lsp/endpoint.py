"""The daemon's language-server listener: many editors at once, one engine.

pygls' ``start_tcp`` serves a single client and then stops the server, so the daemon runs its
own ``asyncio`` loop (in a thread of its own) with a Unix socket -- and optionally a TCP port --
and builds one pygls session per connection (``server.build_server``). Sessions share the
``Translator`` (and so the engine and its memory); a session ending, by ``exit`` or by a dropped
connection, only cancels that session's work.

Security (``connection``): the socket lives in ``$XDG_RUNTIME_DIR/asmr-daemon`` (directory 0700,
socket 0600) and its peer's uid must be ours. Every TCP connection, loopback included, must
open with ``initialize`` carrying the token (``[lsp] token``, else ``STATE_DIR/lsp.token``,
made at the first start with TCP). Each connection sees the engine through its own
``FairEngine`` window, so one client's flood cannot starve the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from asmr_daemon.config import Settings, default_runtime_dir
from asmr_daemon.errors import AsmrError, ConfigError
from asmr_daemon.lsp.connection import Disconnect, GuardedWriter, authenticate, check_unix_peer
from asmr_daemon.lsp.fair import FairEngine
from asmr_daemon.lsp.framing import FrameError, Limits
from asmr_daemon.lsp.loop import message_loop
from asmr_daemon.lsp.token import tcp_token
from asmr_daemon.lsp.translate import SessionTranslator, Translator

if TYPE_CHECKING:
    from asmr_daemon.engine.engine import Engine

logger = logging.getLogger(__name__)


def default_socket_path() -> Path:
    return default_runtime_dir() / "lsp.sock"


def parse_tcp(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` / ``"[::1]:PORT"`` / ``":PORT"`` (loopback) -> (host, port)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(f"--lsp-tcp / [lsp] tcp = {value!r} is not HOST:PORT", "for example 127.0.0.1:9257")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port_text)


def _quiet_pygls() -> None:
    """pygls logs every message it sends at INFO -- whole scripts and their translations -- and
    every feature it registers, once per connection: in the daemon's journal that is noise and
    leaks the user's scripts. Its warnings and errors stay; debug logging (``-v``) shows all."""
    pygls = logging.getLogger("pygls")
    if pygls.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        pygls.setLevel(logging.WARNING)


class LspEndpoint:
    """A daemon service (``start()``/``stop()``) serving editors over a Unix socket and TCP."""

    def __init__(
        self,
        translator: Translator,
        settings: Settings,
        *,
        socket_path: Path | str | None = None,
        tcp: str | None = None,
        token: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``translator``: the composition root's (settings it is handed reach new sessions);
        ``settings``: where to listen ([lsp])."""
        self.translator = translator
        self.settings = settings
        self.limits = limits or Limits.from_settings(settings)
        self.socket_path = Path(socket_path) if socket_path else default_socket_path()
        tcp = settings.lsp.tcp if tcp is None else tcp
        self.tcp = parse_tcp(tcp) if tcp else None
        self._configured_token = settings.lsp.token if token is None else token
        self.token: str | None = None
        self.tcp_address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._socket_inode: int | None = None

    # -- service interface -------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket(s) and serve in a background thread; errors (address in use) raise here."""
        _quiet_pygls()
        if self.tcp:
            self.token = tcp_token(self._configured_token, self.settings.paths.state_dir)
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="asmr-lsp", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def stop(self, timeout: float = 10.0) -> None:
        """Close listeners and every connection; in-flight requests are cancelled."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(lambda: None if stopping.done() else stopping.set_result(None))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def describe(self) -> list[str]:
        """Where editors can connect (for ``status`` and logs)."""
        out = [f"unix:{self.socket_path}"]
        if self.tcp_address:
            out.append(f"tcp:{self.tcp_address[0]}:{self.tcp_address[1]}")
        return out

    # -- loop thread ---------------------------------------------------------------------------

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # reported to start() if it happened while binding
            if not ready.is_set():
                failure.append(exc)
            else:
                logger.exception("language-server endpoint stopped with an error")
        finally:
            ready.set()
            try:
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.get_running_loop().create_future()
        servers = [await self._listen_unix()]
        try:
            if self.tcp:
                tcp_server = await asyncio.start_server(
                    lambda r, w: self._connection(r, w, tcp=True), self.tcp[0], self.tcp[1], limit=self._read_limit
                )
                servers.append(tcp_server)
                self.tcp_address = tcp_server.sockets[0].getsockname()[:2]
            ready.set()
            logger.info("language server listening on %s", ", ".join(self.describe()))
            await self._stopping
        finally:
            for server in servers:
                server.close()
            for writer in list(self._writers):
                writer.close()
            self._remove_socket()
            # Let the connection tasks see EOF and cancel their sessions' work.
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if pending:
                await asyncio.wait(pending, timeout=2.0)

    async def _listen_unix(self) -> asyncio.AbstractServer:
        directory = self.socket_path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        self._clear_stale_socket()
        server = await asyncio.start_unix_server(
            lambda r, w: self._connection(r, w, tcp=False), path=str(self.socket_path), limit=self._read_limit
        )
        os.chmod(self.socket_path, 0o600)
        self._socket_inode = self.socket_path.stat().st_ino
        return server

    def _clear_stale_socket(self) -> None:
        path = self.socket_path
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise AsmrError(f"{path} exists and is not a socket", "remove it or choose another runtime directory")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # left behind by a daemon that died
                return
        raise AsmrError(f"another asmr-daemon is already serving editors on {path}", "stop it first (asmr-daemon status)")

    def _remove_socket(self) -> None:
        try:
            if self._socket_inode is not None and self.socket_path.stat().st_ino == self._socket_inode:
                self.socket_path.unlink()
        except FileNotFoundError:
            pass

    @property
    def _read_limit(self) -> int:
        """The stream reader's buffer for one header line (the frame reader caps the rest)."""
        return max(65536, self.limits.max_header_bytes)

    def _session_translator(self) -> Translator:
        fair = FairEngine(self.translator.engine, self.limits.engine_window)
        return SessionTranslator(self.translator, cast("Engine", fair))  # an Engine to the session

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, tcp: bool) -> None:
        from asmr_daemon.lsp.server import build_server

        peer = _describe_peer(writer)
        self._writers.add(writer)
        server = None
        try:
            if tcp:
                assert self.token is not None
                first = await authenticate(reader, writer, self.limits, self.token)
            else:
                check_unix_peer(writer)
                first = None
            output = GuardedWriter(writer, self.limits, peer)
            server = build_server(self._session_translator(), on_exit=writer.close)
            server.transport = "tcp" if tcp else "socket"
            server.protocol.set_writer(output)  # type: ignore[arg-type]
            logger.info("editor connected (%s)", peer)
            await message_loop(reader, output, server.protocol, self.limits, peer, first)
        except (Disconnect, FrameError) as exc:
            logger.warning("editor %s disconnected: %s", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:
            logger.exception("editor connection (%s) failed", peer)
        finally:
            if server is not None:
                server.close_session()
                logger.info("editor disconnected (%s)", peer)
            self._writers.discard(writer)
            writer.close()


def _describe_peer(writer: asyncio.StreamWriter) -> str:
    peer: Any = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"tcp {peer[0]}:{peer[1]}"
    return "unix socket"
