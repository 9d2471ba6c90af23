"""Build the resident engine from settings: the one place that turns ``[model]`` settings into a
loaded model, a backend, the translation memory and a started ``Engine``.

``serve``, ``translate``, ``lsp --standalone`` and ``demo`` all call ``build_engine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asmr_daemon.config import Settings
from asmr_daemon.errors import ConfigError

if TYPE_CHECKING:  # torch-heavy imports stay lazy so the CLI starts fast
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.loading import LoadedModel

MEMORY_FILE = "memory.sqlite"


@dataclass
class Runtime:
    engine: "Engine"
    loaded: "LoadedModel"

    def close(self) -> None:
        self.engine.close()


def require_base_model(settings: Settings) -> Path:
    if settings.model.base_model is None:
        raise ConfigError("no base model configured",
                          "pass --base-model DIR, set [model] base_model in the config file, "
                          "or try `asmr-daemon demo`")
    return settings.model.base_model


def build_engine(settings: Settings, *, progress: bool = True) -> Runtime:
    """Load the model once and start the engine's worker thread."""
    from asmr_daemon.engine.backend import LocalBackend
    from asmr_daemon.engine.engine import Engine
    from asmr_daemon.engine.loading import load_model
    from asmr_daemon.engine.memory import TranslationMemory
    from asmr_daemon.engine.prompts import validate_template

    model = settings.model
    validate_template(settings.prompt.template)
    loaded = load_model(require_base_model(settings), model.adapter, device=model.device,
                        quantize=None if model.quantize == "none" else model.quantize, progress=progress)
    settings.paths.state_dir.mkdir(parents=True, exist_ok=True)
    memory = TranslationMemory(settings.paths.state_dir / MEMORY_FILE)
    engine = Engine(LocalBackend(loaded), memory, template=settings.prompt.template,
                    decoding=settings.decoding, engine=settings.engine)
    engine.start()
    return Runtime(engine=engine, loaded=loaded)
