"""The remote backend: generation on an OpenAI-compatible server (vLLM), tokens in and tokens out.

Why token ids and not text: the daemon tokenizes prompts with its own ChatGLM2 tokenizer
(``[gMASK] sop`` + SentencePiece ids) and sends those ids as the completion prompt; the server
returns the generated ids (``return_token_ids``), which the daemon decodes with the same tokenizer.
So the server never tokenizes or detokenizes anything (start it with ``--skip-tokenizer-init``: no
tokenizer files, no remote code, no chance of a converted tokenizer splitting text differently),
and the rows it runs are exactly the rows the local backend runs — greedy results are identical.

Each row of a micro-batch is one HTTP request; up to ``max_concurrent`` are in flight at once and
the server batches them (vLLM's continuous batching). Connection errors, timeouts, 429 and 5xx are
retried with exponential backoff; when the retries run out, or the server does not serve the
configured model, ``BackendUnavailable`` is raised: the daemon keeps the job queued and tries again
later, and editors get its message. Other refusals (4xx) raise ``BackendError``.

HTTP goes through ``engine.http.ServerClient``: one pooled ``httpx`` client per server (keep-alive
for the rows in flight), shared by the backends derived for other adapters.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmr_daemon.config import OpenAISettings
from asmr_daemon.engine.chatglm2_names import CHATGLM2_ONLY_TARGETS
from asmr_daemon.engine.http import UNREACHABLE_HINT, ServerClient
from asmr_daemon.engine.http import short as _short
from asmr_daemon.engine.requests import Penalty, row_limits, row_penalties
from asmr_daemon.errors import (
    AdapterError,
    BackendError,
    BackendUnavailable,
    ConfigError,
)

if TYPE_CHECKING:  # the tokenizer module imports torch; ``status`` and ``doctor`` probe without it
    from asmr_daemon.engine.tokenizer import ChatGLM2Tokenizer

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ServerInfo:
    """What ``GET /models`` says: the served names (base first, then LoRAs) and the context length."""

    models: tuple[str, ...]
    max_model_len: int | None


def fetch_models(http: ServerClient) -> ServerInfo:
    """``GET /models``; BackendUnavailable when the server cannot be reached or refuses."""
    status, body = http.request("GET", "/models", None, retry=True)
    if status >= 400:
        raise BackendUnavailable(f"the server at {http.base_url} answered {status} to GET /models: {_short(body)}",
                                 UNREACHABLE_HINT)
    return _parse_models(body)


def require_served(info: ServerInfo, settings: OpenAISettings, base_url: str) -> None:
    """BackendUnavailable unless the server serves the configured model (and adapter)."""
    if settings.model not in info.models:
        raise BackendUnavailable(
            f"the server at {base_url} does not serve the model {settings.model!r}",
            f"it serves: {', '.join(info.models) or 'nothing'}; set [openai] model to one of them")
    if settings.adapter and settings.adapter not in info.models:
        raise BackendUnavailable(
            f"the server at {base_url} does not serve the adapter {settings.adapter!r}",
            f"it serves: {', '.join(info.models)}; start it with --enable-lora "
            f"--lora-modules {settings.adapter}=ADAPTER_DIR")


class OpenAIBackend:
    """Greedy generation on an OpenAI-compatible completions endpoint. ``generate`` is called from the
    engine's worker thread only; its requests run on a small thread pool of its own."""

    def __init__(self, settings: OpenAISettings, tokenizer: ChatGLM2Tokenizer, *,
                 adapter_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 http: ServerClient | None = None) -> None:
        """``adapter_dir``: a local adapter the server loads at runtime (see ``with_adapter``) instead
        of the served ``settings.adapter``; loaded on first use, so a server that is down now is fine.
        ``http``: the connection pool (made from ``settings``, ``environ`` and ``sleep`` when None)."""
        if not settings.model:
            raise ConfigError("[openai] model is empty",
                              "set it to the served model name (`vllm serve DIR` serves it as DIR, "
                              "or as --served-model-name NAME)")
        if settings.max_concurrent < 1:
            raise ConfigError("[openai] max_concurrent must be at least 1")
        self.settings = settings
        self.tokenizer = tokenizer
        self.http = http or ServerClient(settings, environ=environ, sleep=sleep)
        self.base_url = self.http.base_url
        from asmr_daemon.engine.tokenizer import SPECIAL_TOKENS  # imports torch: not for ``status``

        self.special_tokens: tuple[str, ...] = tuple(SPECIAL_TOKENS)
        self._pool = concurrent.futures.ThreadPoolExecutor(settings.max_concurrent, thread_name_prefix="asmr-http")
        self._info: ServerInfo | None = None
        # An adapter loaded at runtime (``with_adapter(DIR)``): (name, path), loaded again when the
        # server forgot it (it restarted).
        self._runtime_adapter: tuple[str, str] | None = None
        self._lock = threading.Lock()
        if adapter_dir is not None:
            name = _runtime_adapter_name(Path(adapter_dir))
            self.settings = replace(settings, adapter=name)
            self._runtime_adapter = (name, str(Path(adapter_dir).resolve()))

    @classmethod
    def _sibling(cls, other: OpenAIBackend, *, adapter: str, runtime: tuple[str, str] | None) -> OpenAIBackend:
        """A backend for another adapter sharing ``other``'s connection pool and row threads
        (one engine worker uses one backend at a time)."""
        backend = cls(replace(other.settings, adapter=adapter), other.tokenizer, http=other.http)
        backend._pool.shutdown(wait=False)
        backend._pool = other._pool
        backend._runtime_adapter = runtime
        return backend

    # -- Backend protocol ------------------------------------------------------------------

    @property
    def served_name(self) -> str:
        """The name requests go to: the LoRA when one is configured, else the base model."""
        return self.settings.adapter or self.settings.model

    @property
    def identity(self) -> str:
        """Server + base model + adapter name: part of every translation-memory key. A runtime-loaded
        adapter's name carries a hash of its files, so new weights under an old path get a new key."""
        return f"openai:{self.base_url}|{self.settings.model}+{self.settings.adapter or 'no-adapter'}"

    def encode(self, prompt: str) -> list[int]:
        """The local backend's ids exactly: ``[gMASK] sop`` + SentencePiece ids."""
        return self.tokenizer.encode_prompt(prompt)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def generate(self, prompts: list[list[int]], *, max_new_tokens: list[int] | int,
                 repetition_penalty: Penalty = None) -> list[list[int]]:
        """New ids per prompt, cut at eos and at the row's own limit (as ``LocalBackend.generate``).

        vLLM applies ``repetition_penalty`` to prompt and output tokens, like transformers does.
        """
        if not prompts:
            return []
        limits, penalties = row_limits(prompts, max_new_tokens), row_penalties(prompts, repetition_penalty)
        info = self.server_info()
        futures = []
        for ids, limit, penalty in zip(prompts, limits, penalties, strict=True):
            if info.max_model_len is not None:
                limit = min(limit, info.max_model_len - len(ids))  # the server refuses longer rows
            futures.append(self._pool.submit(self._complete, list(ids), limit, penalty)
                           if limit > 0 else None)
        try:
            return [f.result() if f is not None else [] for f in futures]
        except BaseException:
            for f in futures:
                if f is not None:
                    f.cancel()
            raise

    # -- hot swap ----------------------------------------------------------------------------

    def with_adapter(self, adapter: Path | str | None) -> OpenAIBackend:
        """A backend for another adapter on the same server (the engine swaps to it between batches).

        ``adapter`` is a served LoRA name (``--lora-modules NAME=DIR``), ``None`` for the base model,
        or a directory: a native-named peft adapter (``asmr-daemon convert`` output) that the server
        can read at that same path; it is loaded through ``POST /load_lora_adapter``, which vLLM
        allows only with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`` in the server's environment.
        """
        if adapter is None or adapter == "":
            return self._derive(adapter="", runtime=None)
        path = Path(adapter)
        if isinstance(adapter, str) and not path.is_dir():
            served = self.server_info(refresh=True).models
            if adapter not in served:
                raise AdapterError(f"the server at {self.base_url} does not serve an adapter named {adapter!r}",
                                   f"it serves: {', '.join(served) or 'nothing'}")
            return self._derive(adapter=adapter, runtime=None)
        name, lora_path = _runtime_adapter_name(path), str(path.resolve())
        backend = self._derive(adapter=name, runtime=(name, lora_path))
        backend.server_info(refresh=True)  # loads it now: a swap that cannot work fails here, not later
        return backend

    def retire(self) -> None:
        """Unload this backend's runtime-loaded adapter from the server (the engine calls it once
        no request needs this backend any more), so switches do not pile adapters up on the
        server (vLLM keeps at most ``--max-cpu-loras`` of them). Served ``--lora-modules`` adapters
        stay. Best effort: a server that is down forgot the adapter anyway."""
        if self._runtime_adapter is None:
            return
        name, _ = self._runtime_adapter
        self._runtime_adapter = None
        try:
            status, body = self._request("POST", "/unload_lora_adapter", {"lora_name": name}, retry=False)
        except (BackendUnavailable, BackendError) as exc:
            log.info("could not unload adapter %r from %s: %s", name, self.base_url, exc)
            return
        if status < 400:
            log.info("unloaded adapter %r from %s", name, self.base_url)
        else:
            log.info("the server kept adapter %r: %s", name, _short(body))

    def _derive(self, *, adapter: str, runtime: tuple[str, str] | None) -> OpenAIBackend:
        return OpenAIBackend._sibling(self, adapter=adapter, runtime=runtime)

    def _load_runtime_adapter(self) -> None:
        assert self._runtime_adapter is not None
        name, path = self._runtime_adapter
        # vLLM answers 500 for an adapter it cannot read: a refusal here, not an outage.
        status, body = self._request("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path},
                                     retry=True, retry_on=frozenset({429, 503}))
        if status == 404 or status == 405:
            raise AdapterError(
                f"the server at {self.base_url} does not load adapters at runtime",
                "start vllm with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment, or serve the "
                "adapter with --lora-modules NAME=DIR and set [openai] adapter = NAME")
        if status >= 400 and "already been loaded" not in body:
            raise AdapterError(f"the server could not load the adapter {path}: {_short(body)}",
                               "the path must be readable by the server, with native module names "
                               "(asmr-daemon convert --adapter)")
        log.info("loaded adapter %s as %r on %s", path, name, self.base_url)

    # -- the server --------------------------------------------------------------------------

    def server_info(self, *, refresh: bool = False) -> ServerInfo:
        """Served model names and context length (cached; refreshed after a model-not-found answer).
        Loads a runtime adapter the server does not know (new, or forgotten by a restart).
        Raises ``BackendUnavailable`` when the server cannot be reached or lacks our model."""
        with self._lock:
            if self._info is not None and not refresh:
                return self._info
        info = self._fetch_models()
        if self._runtime_adapter is not None and self._runtime_adapter[0] not in info.models:
            self._load_runtime_adapter()
            info = self._fetch_models()
        require_served(info, self.settings, self.base_url)
        with self._lock:
            self._info = info
        return info

    def _fetch_models(self) -> ServerInfo:
        return fetch_models(self.http)

    def _complete(self, ids: list[int], limit: int, penalty: float | None) -> list[int]:
        body: dict[str, Any] = {
            "model": self.served_name,
            "prompt": ids,
            "max_tokens": limit,
            "temperature": 0.0,  # greedy
            "n": 1,
            "repetition_penalty": 1.0 if penalty is None else float(penalty),
            "stop_token_ids": [self.tokenizer.eos_id],
            "return_token_ids": True,
        }
        for attempt in range(2):
            status, text = self._request("POST", "/completions", body, retry=True)
            if status < 400:
                return self._new_ids(text, limit)
            if status == 404 and attempt == 0:
                # The model is gone: a restarted server forgot a runtime-loaded adapter (loaded again
                # here), or it now serves something else (BackendUnavailable naming what it serves).
                self.server_info(refresh=True)
                continue
            raise BackendError(f"the server at {self.base_url} refused a completion ({status}): {_short(text)}")
        raise AssertionError("unreachable")

    def _new_ids(self, text: str, limit: int) -> list[int]:
        try:
            choice = json.loads(text)["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise BackendError(f"the server at {self.base_url} sent an unexpected answer: {_short(text)}") from exc
        ids = choice.get("token_ids")
        if ids is None:
            raise BackendError(f"the server at {self.base_url} returned no token ids",
                               "use vLLM >= 0.10.2 (completions with return_token_ids)")
        ids = [int(i) for i in ids][:limit]
        eos = self.tokenizer.eos_id
        return ids[: ids.index(eos)] if eos in ids else ids

    def _request(self, method: str, path: str, body: dict[str, Any] | None, *, retry: bool,
                 retry_on: frozenset[int] | None = None) -> tuple[int, str]:
        if retry_on is None:
            return self.http.request(method, path, body, retry=retry)
        return self.http.request(method, path, body, retry=retry, retry_on=retry_on)


def probe(settings: OpenAISettings, *, timeout: float = PROBE_TIMEOUT_SECONDS) -> tuple[bool, str]:
    """One quick ``GET /models`` for ``status`` and ``doctor``: (ok, one-line description)."""
    http = ServerClient(replace(settings, timeout_seconds=timeout, retries=0, max_concurrent=1))
    try:
        info = fetch_models(http)
        require_served(info, settings, http.base_url)
    except (BackendUnavailable, BackendError) as exc:
        return False, exc.message
    finally:
        http.close()
    served = ", ".join(info.models)
    return True, f"{http.base_url} serves {served}" + (
        f" (max_model_len {info.max_model_len})" if info.max_model_len else "")


def _parse_models(text: str) -> ServerInfo:
    try:
        data = json.loads(text)["data"]
        names = tuple(str(m["id"]) for m in data)
        lengths = [int(m["max_model_len"]) for m in data if m.get("max_model_len")]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendUnavailable(f"not an OpenAI-compatible /models answer: {_short(text)}") from exc
    return ServerInfo(models=names, max_model_len=min(lengths) if lengths else None)


def _runtime_adapter_name(path: Path) -> str:
    """``NAME-HASH``: the directory name plus a hash of its config and weights, so retrained weights
    in the same directory get a new served name (and new translation-memory keys)."""
    config = path / "adapter_config.json"
    if not config.is_file():
        raise AdapterError(f"{config} not found", "give a peft adapter directory")
    try:
        targets = set(json.loads(config.read_text(encoding="utf-8")).get("target_modules") or [])
    except (ValueError, OSError) as exc:
        raise AdapterError(f"{config} is not readable JSON: {exc}") from exc
    if targets & CHATGLM2_ONLY_TARGETS:  # vLLM knows the native GLM names only
        raise AdapterError(f"{path} uses ChatGLM2 module names ({', '.join(sorted(targets & CHATGLM2_ONLY_TARGETS))})",
                           "convert it first: asmr-daemon convert BASE DST --adapter ADAPTER --adapter-out NEW")
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.is_file() and (file.suffix in (".json", ".safetensors", ".bin")):
            digest.update(file.name.encode() + b"\0")
            with open(file, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return f"{path.resolve().name}-{digest.hexdigest()[:12]}"
