"""Fixtures for the whole suite: isolated user directories for every test, and the tiny-model kit."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from kit import Kit, get_kit

# Environment every test runs in: no network lookups by transformers/huggingface_hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
USER_DIRS = {
    "HOME": "home",
    "XDG_CONFIG_HOME": "config",
    "XDG_STATE_HOME": "state",
    "XDG_CACHE_HOME": "cache",
    "XDG_RUNTIME_DIR": "run",
}


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point HOME and the XDG directories at a fresh temp dir, so no test reads or writes real ones.

    A short, separate directory (not ``tmp_path``): a Unix socket path under XDG_RUNTIME_DIR must
    stay under ~108 bytes, and tests keep ``tmp_path`` to themselves.
    """
    root = tmp_path_factory.mktemp("user", numbered=True)
    for var, name in USER_DIRS.items():
        path = root / name
        path.mkdir(mode=0o700)
        monkeypatch.setenv(var, str(path))
    for var, value in OFFLINE_ENV.items():
        monkeypatch.setenv(var, value)


@pytest.fixture(scope="session")
def tiny_kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    """The tiny ChatGLM2 model + LoRA kit (see tests/kit.py), built once per session.

    Fails at teardown if anything imported the base directory's Python files during the session.
    """
    with pytest.MonkeyPatch.context() as mp:
        for var, value in OFFLINE_ENV.items():
            mp.setenv(var, value)
        # Reproducible metadata even if a build stamps a date.
        mp.setenv("SOURCE_DATE_EPOCH", os.environ.get("SOURCE_DATE_EPOCH", "0"))
        kit = get_kit(tmp_path_factory.mktemp("tiny-kit"))
    yield kit
    if kit.import_marker.exists():
        pytest.fail(f"remote code in the model directory was imported: {kit.import_marker} exists")
