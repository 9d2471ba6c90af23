from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from asmr_daemon.config import DecodingSettings, EngineSettings
from asmr_daemon.engine.engine import Engine
from asmr_daemon.engine.memory import TranslationMemory

from .fakes import FakeBackend

TEMPLATE = "{source}"


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[TranslationMemory]:
    mem = TranslationMemory(tmp_path / "state" / "memory.sqlite3")
    yield mem
    mem.close()


@pytest.fixture
def make_engine(memory: TranslationMemory) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def make(backend: FakeBackend | None = None, *, batch_size: int = 16, token_budget: int = 8192,
             start: bool = False, **decoding: object) -> Engine:
        engine = Engine(backend or FakeBackend(), memory, template=TEMPLATE,
                        decoding=DecodingSettings(**decoding),  # type: ignore[arg-type]
                        engine=EngineSettings(batch_size=batch_size, token_budget=token_budget))
        engines.append(engine)
        if start:
            engine.start()
        return engine

    yield make
    for engine in engines:
        backend = engine.backend
        if isinstance(backend, FakeBackend):
            backend.release()
        engine.close()
