"""A scripted stand-in for an OpenAI-compatible server (stdlib ``http.server``): records every
request and answers from a queue of canned responses, for the backend's unit tests."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = tuple[int, Any]  # (status, JSON body)
Handler = Callable[[str, str, dict[str, Any] | None], Answer]


@dataclass
class FakeServer:
    models: list[str] = field(default_factory=lambda: ["tiny", "demo"])
    max_model_len: int = 512
    # Scripted answers for POST /v1/completions, used first; then ``complete`` decides.
    queued: deque[Answer] = field(default_factory=deque)
    complete: Handler | None = None
    requests: list[tuple[str, str, dict[str, Any] | None, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.requests.append((method, self.path, body, dict(self.headers)))
                status, payload = fake.route(method, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._answer("GET")

            def do_POST(self) -> None:
                self._answer("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def route(self, method: str, path: str, body: dict[str, Any] | None) -> Answer:
        if method == "GET" and path == "/v1/models":
            return 200, {"object": "list", "data": [
                {"id": name, "object": "model", "root": f"/models/{name}",
                 "max_model_len": self.max_model_len if i == 0 else None}
                for i, name in enumerate(self.models)]}
        if method == "POST" and path == "/v1/completions":
            if self.queued:
                return self.queued.popleft()
            if self.complete is not None:
                return self.complete(method, path, body)
            return 200, completion([5, 6, 2])
        if method == "POST" and path == "/v1/load_lora_adapter" and body:
            self.models.append(body["lora_name"])
            return 200, "Success"
        if method == "POST" and path == "/v1/unload_lora_adapter" and body and body["lora_name"] in self.models:
            self.models.remove(body["lora_name"])
            return 200, "Success"
        return 404, {"error": {"message": f"no route {method} {path}", "code": 404}}

    def completions(self) -> list[dict[str, Any]]:
        return [body for method, path, body, _ in self.requests if path == "/v1/completions" and body]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(ids: list[int]) -> dict[str, Any]:
    return {"id": "cmpl-1", "object": "text_completion", "model": "demo",
            "choices": [{"index": 0, "text": "", "token_ids": ids, "finish_reason": "stop"}]}
