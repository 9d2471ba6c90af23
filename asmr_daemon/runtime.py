"""Build the resident engine from settings: the one place that turns ``[model]`` settings into a
loaded model, a backend, the translation memory and a started ``Engine``.

``serve``, ``translate``, ``lsp --standalone`` and ``demo`` all call ``build_engine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asmr_daemon.config import Settings
from asmr_daemon.errors import ConfigError
from asmr_daemon.private import private_dir

if TYPE_CHECKING:  # torch-heavy imports stay lazy so the CLI starts fast
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.loading import LoadedModel
    from asmr_daemon.engine.tokenizer import ChatGLM2Tokenizer

MEMORY_FILE = "memory.sqlite"


@dataclass
class RemoteModel:
    """What ``Runtime.loaded`` is with ``[model] backend = "openai"``: the attributes ``serve`` and
    ``status`` show (as ``LoadedModel`` has them), describing the server instead of a resident model.
    Only the tokenizer is local."""

    tokenizer: ChatGLM2Tokenizer
    base_dir: str          # what status shows as the model: the served name on its server
    adapter_dir: str | None  # the served adapter name
    device: str            # "remote http://host:port/v1"
    identity: str
    adapter_identity: str | None
    dtype: str = "remote"
    memory_bytes: int = 0  # nothing resident here but the tokenizer


@dataclass
class Runtime:
    engine: Engine
    loaded: LoadedModel | RemoteModel

    def close(self) -> None:
        self.engine.close()


def require_base_model(settings: Settings) -> Path:
    if settings.model.base_model is None:
        from asmr_daemon.cli import command_name

        raise ConfigError("no base model configured",
                          "pass --base-model DIR, set [model] base_model in the config file, "
                          f"or try `{command_name()} demo`")
    return settings.model.base_model


def build_engine(settings: Settings, *, progress: bool = True) -> Runtime:
    """Load the model once (or connect to the generation server) and start the engine's worker thread."""
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.memory import TranslationMemory
    from asmr_daemon.engine.prompts import validate_template

    validate_template(settings.prompt.template)
    loaded: LoadedModel | RemoteModel
    if settings.model.backend == "openai":
        backend, loaded = _remote_backend(settings)
    else:
        backend, loaded = _local_backend(settings, progress=progress)
    private_dir(settings.paths.state_dir)
    memory = TranslationMemory(settings.paths.state_dir / MEMORY_FILE)
    engine = Engine(backend, memory, template=settings.prompt.template,
                    decoding=settings.decoding, engine=settings.engine)
    engine.start()
    return Runtime(engine=engine, loaded=loaded)


def _local_backend(settings: Settings, *, progress: bool) -> tuple[Any, LoadedModel]:
    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.engine.loading import load_model
    from asmr_daemon.preflight import check_model

    check_model(settings)  # an adapter for another model is refused before minutes of loading
    model = settings.model
    loaded = load_model(require_base_model(settings), model.adapter, device=model.device,
                        quantize=None if model.quantize == "none" else model.quantize, progress=progress)
    return LocalBackend(loaded), loaded


def _remote_backend(settings: Settings) -> tuple[Any, RemoteModel]:
    """The server does the generating; the daemon only needs the base model's tokenizer (it sends
    and receives token ids). Connecting is lazy: a server that is down now is not an error yet.

    The adapter is ``[openai] adapter`` (a LoRA the server serves by name) or ``[model] adapter``
    (a local directory the server loads at runtime, as ``use-adapter`` does)."""
    from asmr_daemon.engine.remote import OpenAIBackend
    from asmr_daemon.engine.tokenizer import load_tokenizer

    openai = settings.openai
    if settings.model.adapter is not None and openai.adapter:
        raise ConfigError("both [model] adapter and [openai] adapter are set",
                          "with backend = \"openai\" use [openai] adapter = NAME for a LoRA the server serves "
                          "(--lora-modules NAME=DIR); [model] adapter only for one it loads at runtime")
    if settings.model.base_model is None:
        raise ConfigError("backend = \"openai\" needs [model] base_model for its tokenizer",
                          "point it at the directory the server serves (asmr-daemon convert output); "
                          "only tokenizer.model is read")
    tokenizer = load_tokenizer(settings.model.base_model)
    backend = OpenAIBackend(openai, tokenizer, adapter_dir=settings.model.adapter)
    adapter = backend.settings.adapter or None
    loaded = RemoteModel(tokenizer=tokenizer, base_dir=openai.model, adapter_dir=adapter,
                         device=f"remote {backend.base_url}", identity=backend.identity,
                         adapter_identity=adapter)
    return backend, loaded
