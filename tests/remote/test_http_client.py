"""``ServerClient`` (the remote backend's HTTP) with ``httpx.MockTransport``: what it sends, its
timeouts, which answers it retries and with what backoff, and the errors it raises."""

from __future__ import annotations

import httpx
import pytest

from asmr_daemon.config import OpenAISettings
from asmr_daemon.engine.http import BACKOFF_FIRST_SECONDS, ServerClient
from asmr_daemon.errors import BackendError, BackendUnavailable


def client(handler, *, retries: int = 3, environ=None, **settings) -> tuple[ServerClient, list[float]]:
    slept: list[float] = []
    options = OpenAISettings(base_url="http://gen.example/v1/", model="tiny", retries=retries, timeout_seconds=30,
                             **settings)
    return ServerClient(options, environ=environ or {}, sleep=slept.append,
                        transport=httpx.MockTransport(handler)), slept


def test_a_request_goes_to_the_base_url_as_json_with_the_api_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text='{"ok": true}')

    http, slept = client(handler, environ={"KEY": "sekret"}, api_key_env="KEY")
    assert http.request("POST", "/completions", {"prompt": [1, 2]}, retry=True) == (200, '{"ok": true}')
    (request,) = seen
    assert str(request.url) == "http://gen.example/v1/completions"
    assert request.headers["authorization"] == "Bearer sekret"
    assert request.headers["content-type"] == "application/json"
    assert request.content == b'{"prompt":[1,2]}'
    assert slept == []


def test_connect_and_read_timeouts_are_separate():
    http, _ = client(lambda r: httpx.Response(200))
    timeout = http._client.timeout
    assert (timeout.connect, timeout.read) == (5.0, 30.0)


def test_overloaded_answers_and_refused_connections_are_retried_with_growing_backoff():
    answers = iter([httpx.ConnectError("refused"), httpx.Response(503, text="busy"), httpx.Response(200, text="done")])

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http, slept = client(handler)
    assert http.request("GET", "/models", None, retry=True) == (200, "done")
    assert len(slept) == 2
    assert 0.75 * BACKOFF_FIRST_SECONDS <= slept[0] <= 1.25 * BACKOFF_FIRST_SECONDS
    assert 1.5 * BACKOFF_FIRST_SECONDS <= slept[1] <= 2.5 * BACKOFF_FIRST_SECONDS


def test_when_retries_run_out_the_server_is_unavailable_and_the_message_says_why():
    http, slept = client(lambda r: httpx.Response(503, text="warming up"), retries=2)
    with pytest.raises(BackendUnavailable, match=r"gen.example/v1 is unreachable \(503 warming up\)"):
        http.request("GET", "/models", None, retry=True)
    assert len(slept) == 2


def test_other_answers_are_returned_once_and_a_refused_key_names_its_variable():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(404 if request.url.path.endswith("/gone") else 401, text="nope")

    http, slept = client(handler, api_key_env="MY_KEY")
    assert http.request("POST", "/gone", {}, retry=True) == (404, "nope")
    with pytest.raises(BackendError, match="refused the API key") as raised:
        http.request("GET", "/models", None, retry=True)
    assert "MY_KEY" in (raised.value.hint or "")
    assert calls == ["/v1/gone", "/v1/models"] and slept == []


def test_without_retry_one_failure_is_final():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    http, slept = client(handler)
    with pytest.raises(BackendUnavailable, match="ReadTimeout"):
        http.request("POST", "/unload_lora_adapter", {}, retry=False)
    assert slept == []
