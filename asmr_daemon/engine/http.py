"""HTTP to the generation server: one pooled ``httpx.Client`` (keep-alive for the many rows in
flight, separate connect and read timeouts) and a small retry loop with an injectable sleep.

Connection errors, timeouts and the answers in ``RETRY_STATUS`` are retried with exponential
backoff and jitter; when the retries run out, ``BackendUnavailable``. Other answers are returned
as (status, body text) for the caller to judge; 401 is ``BackendError`` naming the key's variable.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from asmr_daemon.config import OpenAISettings
from asmr_daemon.errors import BackendError, BackendUnavailable

log = logging.getLogger(__name__)

# Answers worth another try: the server is starting, overloaded or restarting.
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 8.0
CONNECT_TIMEOUT_SECONDS = 5.0  # a server that is down is known quickly; generating may take long


class ServerClient:
    """Requests to ``settings.base_url``; thread-safe (``httpx.Client`` is), shared by every
    backend derived for another adapter on the same server."""

    def __init__(self, settings: OpenAISettings, *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        """``transport``: ``httpx.MockTransport`` in tests; by default real connections, pooled
        up to ``max_concurrent`` kept alive."""
        environ = os.environ if environ is None else environ
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.api_key_env = settings.api_key_env
        api_key = environ.get(settings.api_key_env) if settings.api_key_env else None
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._sleep = sleep
        self._client = httpx.Client(
            headers=headers, transport=transport,
            timeout=httpx.Timeout(settings.timeout_seconds, connect=min(CONNECT_TIMEOUT_SECONDS, settings.timeout_seconds)),
            limits=httpx.Limits(max_connections=max(1, settings.max_concurrent),
                                max_keepalive_connections=max(1, settings.max_concurrent)))

    def request(self, method: str, path: str, body: dict[str, Any] | None, *, retry: bool,
                retry_on: frozenset[int] = RETRY_STATUS) -> tuple[int, str]:
        """(status, body text), retried ``settings.retries`` times when ``retry``."""
        url = self.base_url + path
        attempts = 1 + (max(0, self.settings.retries) if retry else 0)
        problem = ""
        for attempt in range(attempts):
            if attempt:
                delay = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
                self._sleep(delay * (0.75 + 0.5 * random.random()))
            try:
                response = self._client.request(method, url, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in retry_on:
                    if response.status_code == 401:
                        raise BackendError(f"the server at {self.base_url} refused the API key (401)",
                                           f"put the key in the environment variable "
                                           f"{self.api_key_env or '(none configured)'}")
                    return response.status_code, response.text
                problem = f"{response.status_code} {short(response.text)}"
            log.debug("%s %s failed (attempt %d/%d): %s", method, url, attempt + 1, attempts, problem)
        raise BackendUnavailable(f"the generation server at {self.base_url} is unreachable ({problem})",
                                 UNREACHABLE_HINT)

    def close(self) -> None:
        self._client.close()


UNREACHABLE_HINT = "start the server or fix [openai] base_url; the daemon keeps files queued until it answers"


def short(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters, for messages quoting a server's answer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
