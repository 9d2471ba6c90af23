"""``OpenAIBackend`` against a scripted fake server (no vLLM, no torch): the request it sends,
retries with backoff, the typed errors, runtime adapters, and the daemon keeping jobs queued
while the server is down. The real server is in test_remote_vllm.py."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from asmr_daemon.config import (
    DecodingSettings,
    EngineSettings,
    OpenAISettings,
    load_settings,
)
from asmr_daemon.engine.engine import Engine
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.engine.remote import OpenAIBackend, probe
from asmr_daemon.errors import (
    AdapterError,
    BackendError,
    BackendUnavailable,
    ConfigError,
)
from asmr_daemon.watch.jobs import JobCode, JobState, JobStore
from asmr_daemon.watch.runner import Folders, JobRunner

from .fake_server import FakeServer, completion

EOS = 2


class Tokenizer:
    """ChatGLM2's scheme in miniature: [gMASK]=64790, sop=64792, one id per character."""

    eos_id = EOS

    def encode_prompt(self, text: str) -> list[int]:
        return [64790, 64792, *(ord(c) for c in text)]

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids if i > 2)


@pytest.fixture
def server():
    fake = FakeServer()
    yield fake
    fake.close()


def make(url: str, *, sleeps: list[float] | None = None, environ: dict[str, str] | None = None,
         adapter_dir: Path | None = None, **overrides) -> OpenAIBackend:
    settings = OpenAISettings(base_url=url, model="tiny", adapter="demo", timeout_seconds=5, retries=3)
    for key, value in overrides.items():
        setattr(settings, key, value)
    record = sleeps if sleeps is not None else []
    return OpenAIBackend(settings, Tokenizer(), adapter_dir=adapter_dir, environ=environ or {},  # type: ignore[arg-type]
                         sleep=record.append)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sends_exact_ids_greedy_and_cuts_at_eos(server):
    server.complete = lambda m, p, body: (200, completion([ord("你"), ord("好"), EOS, ord("x")]))
    backend = make(server.url)
    prompts = [backend.encode("おはよう"), backend.encode("こんばんは")]
    out = backend.generate(prompts, max_new_tokens=[10, 3], repetition_penalty=None)
    assert [backend.decode(o) for o in out] == ["你好", "你好"]
    sent = sorted(server.completions(), key=lambda b: b["max_tokens"], reverse=True)
    assert [b["prompt"] for b in sent] == prompts  # token ids, exactly the local backend's
    for body in sent:
        assert body["model"] == "demo" and body["temperature"] == 0.0 and body["n"] == 1
        assert body["repetition_penalty"] == 1.0 and body["stop_token_ids"] == [EOS]
        assert body["return_token_ids"] is True
    assert [b["max_tokens"] for b in sent] == [10, 3]
    backend.generate([prompts[0]], max_new_tokens=[4], repetition_penalty=1.3)
    assert server.completions()[-1]["repetition_penalty"] == 1.3


def test_rows_are_limited_to_the_servers_context_and_empty_limits_skip_the_request(server):
    server.max_model_len = 20
    backend = make(server.url)
    prompt = backend.encode("あ" * 10)  # 12 ids
    assert backend.generate([prompt, prompt], max_new_tokens=[50, 0]) == [[5, 6], []]
    assert [b["max_tokens"] for b in server.completions()] == [8]


def test_503_is_retried_with_growing_backoff(server):
    server.queued.extend([(503, {"error": "busy"}), (503, {"error": "busy"})])
    sleeps: list[float] = []
    backend = make(server.url, sleeps=sleeps)
    assert backend.generate([backend.encode("a")], max_new_tokens=[5]) == [[5, 6]]
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] > 0


def test_a_server_that_is_down_raises_backend_unavailable_after_the_retries():
    sleeps: list[float] = []
    backend = make(f"http://127.0.0.1:{closed_port()}/v1", sleeps=sleeps, retries=2)
    with pytest.raises(BackendUnavailable, match="unreachable") as info:
        backend.generate([[1, 2, 3]], max_new_tokens=[4])
    assert len(sleeps) == 2
    assert "queued" in str(info.value)  # the hint says nothing is lost


def test_a_model_the_server_does_not_serve_is_unavailable_and_named(server):
    backend = make(server.url, adapter="other")
    with pytest.raises(BackendUnavailable, match="'other'") as info:
        backend.generate([[1, 2]], max_new_tokens=[3])
    assert "tiny, demo" in str(info.value)


def test_other_refusals_are_backend_errors_not_retried(server):
    server.queued.append((400, {"error": {"message": "bad things"}}))
    sleeps: list[float] = []
    backend = make(server.url, sleeps=sleeps)
    with pytest.raises(BackendError, match="bad things"):
        backend.generate([[1, 2]], max_new_tokens=[3])
    assert sleeps == []


def test_the_api_key_comes_from_the_named_environment_variable(server):
    backend = make(server.url, environ={"MY_KEY": "sekret"}, api_key_env="MY_KEY")
    backend.generate([[1, 2]], max_new_tokens=[3])
    assert all(headers.get("Authorization") == "Bearer sekret" for *_, headers in server.requests)
    server.queued.append((401, {"error": "no"}))
    with pytest.raises(BackendError, match="MY_KEY"):
        backend.generate([[1, 2]], max_new_tokens=[3])


def test_identity_names_server_model_and_adapter(server):
    assert make(server.url).identity == f"openai:{server.url}|tiny+demo"
    assert make(server.url, adapter="").identity.endswith("|tiny+no-adapter")


def test_with_adapter_switches_served_names_and_loads_directories_at_runtime(server, tmp_path):
    backend = make(server.url)
    assert backend.with_adapter(None).served_name == "tiny"
    assert backend.with_adapter("demo").identity == backend.identity
    with pytest.raises(AdapterError, match="does not serve an adapter named 'nope'"):
        backend.with_adapter("nope")

    chatglm = tmp_path / "chatglm-lora"
    chatglm.mkdir()
    (chatglm / "adapter_config.json").write_text(json.dumps({"target_modules": ["query_key_value"]}))
    with pytest.raises(AdapterError, match="convert it first"):
        backend.with_adapter(chatglm)

    native = tmp_path / "lora-v2"
    native.mkdir()
    (native / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj", "v_proj"]}))
    (native / "adapter_model.safetensors").write_bytes(b"weights-1")
    swapped = backend.with_adapter(native)
    loads = [body for method, path, body, _ in server.requests if path == "/v1/load_lora_adapter"]
    assert loads == [{"lora_name": swapped.served_name, "lora_path": str(native.resolve())}]
    assert swapped.served_name.startswith("lora-v2-") and swapped.identity != backend.identity
    swapped.generate([[1, 2]], max_new_tokens=[3])
    assert server.completions()[-1]["model"] == swapped.served_name

    # A restarted server forgot it: the next request loads it again and goes through.
    server.models.remove(swapped.served_name)
    server.queued.append((404, {"error": {"message": f"The model `{swapped.served_name}` does not exist."}}))
    assert swapped.generate([[1, 2]], max_new_tokens=[3]) == [[5, 6]]
    assert len([1 for _, path, _, _ in server.requests if path == "/v1/load_lora_adapter"]) == 2

    (native / "adapter_model.safetensors").write_bytes(b"weights-2")  # retrained in place: new name
    assert backend.with_adapter(native).served_name != swapped.served_name


def test_retiring_a_runtime_adapter_unloads_it_and_leaves_served_ones(server, tmp_path):
    backend = make(server.url)
    native = tmp_path / "lora-v3"
    native.mkdir()
    (native / "adapter_config.json").write_text(json.dumps({"target_modules": ["q_proj"]}))
    (native / "adapter_model.safetensors").write_bytes(b"weights")
    swapped = backend.with_adapter(native)
    assert swapped.served_name in server.models
    swapped.retire()
    swapped.retire()  # idempotent: one unload request
    unloads = [body for _, path, body, _ in server.requests if path == "/v1/unload_lora_adapter"]
    assert unloads == [{"lora_name": swapped.served_name}]
    assert swapped.served_name not in server.models
    served = backend.with_adapter("demo")
    served.retire()  # a --lora-modules adapter is not ours to unload
    assert "demo" in server.models
    assert len([1 for _, path, _, _ in server.requests if path == "/v1/unload_lora_adapter"]) == 1


def test_probe_says_what_is_served_or_why_not(server):
    ok, detail = probe(OpenAISettings(base_url=server.url, model="tiny", adapter="demo"))
    assert ok and "tiny, demo" in detail and "512" in detail
    ok, detail = probe(OpenAISettings(base_url=f"http://127.0.0.1:{closed_port()}/v1", model="tiny"))
    assert not ok and "unreachable" in detail


def test_settings_section_and_validation(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[model]\nbackend = "openai"\n[openai]\nbase_url = "http://gpu:8000/v1"\nmodel = "glm"\n'
                      'adapter = "mine"\nmax_concurrent = 64\ntimeout_seconds = 30\n')
    settings = load_settings(config, environ={"ASMR_OPENAI_RETRIES": "5"})
    assert settings.model.backend == "openai"
    openai = settings.openai
    assert (openai.base_url, openai.model, openai.adapter, openai.max_concurrent, openai.retries) == \
        ("http://gpu:8000/v1", "glm", "mine", 64, 5)
    assert openai.api_key_env == "ASMR_OPENAI_API_KEY"
    with pytest.raises(ConfigError, match="model is empty"):
        OpenAIBackend(OpenAISettings(), Tokenizer())  # type: ignore[arg-type]


def test_the_engine_answers_with_the_outage_instead_of_hanging(tmp_path):
    """What an editor sees: the request fails within the retries with a message saying why."""
    backend = make(f"http://127.0.0.1:{closed_port()}/v1", retries=1)
    memory = TranslationMemory(tmp_path / "memory.sqlite")
    engine = Engine(backend, memory, template="{source}", decoding=DecodingSettings(), engine=EngineSettings())
    engine.start()
    try:
        start = time.monotonic()
        future = engine.submit("おはよう")
        with pytest.raises(BackendUnavailable, match="unreachable"):
            future.result(timeout=30)
        assert time.monotonic() - start < 10
        assert memory.get(engine._front.key("おはよう", (), (), engine.identity)) is None  # nothing cached
    finally:
        engine.close()
        memory.close()


def test_an_outage_keeps_the_job_queued_without_spending_attempts(tmp_path):
    folders = Folders(inbox=tmp_path / "inbox", outbox=tmp_path / "outbox", done=tmp_path / "inbox" / "done",
                      failed=tmp_path / "inbox" / "failed")
    folders.inbox.mkdir()
    (folders.inbox / "a.txt").write_text("おはよう")
    store = JobStore(tmp_path / "jobs.sqlite")
    down = {"value": True}

    def translate(src: Path, dest: Path) -> None:
        if down["value"]:
            raise BackendUnavailable("the generation server at http://x/v1 is unreachable")
        dest.write_text("早上好")

    runner = JobRunner(store, folders, translate, max_attempts=2)
    job_id = store.enqueue("a.txt")
    for _ in range(5):  # more outages than attempts: still queued, never failed
        assert runner.process(store.claim()) is JobState.QUEUED
        assert runner.backend_problem and "unreachable" in runner.backend_problem
        job = store.get(job_id)
        assert job.state is JobState.QUEUED and job.attempts == 0 and job.error_code == JobCode.BACKEND
    assert not folders.failed.exists() and not list(folders.outbox.rglob("*.partial"))
    down["value"] = False
    assert runner.process(store.claim()) is JobState.DONE
    assert runner.backend_problem is None
    assert (folders.outbox / "a.zh.txt").read_text() == "早上好"
    store.close()
