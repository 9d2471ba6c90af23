"""Settings: defaults, TOML file, environment and flags, and the errors a user sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmr_daemon.config import DEFAULT_TEMPLATE, load_settings
from asmr_daemon.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    settings = load_settings(environ={})
    assert settings.source_file is None
    assert settings.paths.state_dir == tmp_path / "state" / "asmr-daemon"
    assert settings.paths.inbox == tmp_path / "home" / "ASMR" / "inbox"
    assert settings.paths.outbox == tmp_path / "home" / "ASMR" / "outbox"
    assert settings.paths.done == settings.paths.inbox / "done"
    assert settings.paths.failed == settings.paths.inbox / "failed"
    assert settings.prompt.template == DEFAULT_TEMPLATE
    assert settings.model.device == "auto"


def test_default_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "asmr-daemon").mkdir()
    (tmp_path / "asmr-daemon" / "config.toml").write_text('[engine]\nbatch_size = 3\n', encoding="utf-8")
    settings = load_settings(environ={})
    assert settings.engine.batch_size == 3
    assert settings.source_file == tmp_path / "asmr-daemon" / "config.toml"


def test_precedence_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nbase_model = "/models/a"\ndevice = "cpu"\n[engine]\nbatch_size = 4\n')
    environ = {"ASMR_MODEL_BASE_MODEL": "/models/b", "ASMR_ENGINE_BATCH_SIZE": "6"}
    settings = load_settings(path, {("engine", "batch_size"): 8, ("model", "adapter"): None}, environ=environ)
    assert settings.model.base_model == Path("/models/b")  # environment beats the file
    assert settings.model.device == "cpu"  # file beats the default
    assert settings.engine.batch_size == 8  # flag beats the environment
    assert settings.model.adapter is None  # a flag that was not given changes nothing


def test_paths_expand_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    settings = load_settings(write(tmp_path, '[paths]\ninbox = "~/in"\n'), environ={})
    assert settings.paths.inbox == tmp_path / "in"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[model]\ndevice = "gpu"\n', "config.toml: [model] device = 'gpu' is not allowed (use one of: auto, cpu, cuda)"),
        ('[engine]\nbatchsize = 4\n', "config.toml: unknown key 'batchsize' in [engine] (allowed keys: batch_size, token_budget, cpu_threads)"),
        ('[engin]\nbatch_size = 4\n', "config.toml: unknown section [engin]"),
        ('[engine]\nbatch_size = "many"\n', "config.toml: [engine] batch_size = 'many' is not an integer"),
        ('[output]\nbilingual = "maybe"\n', "config.toml: [output] bilingual = 'maybe' is not a boolean (use true or false)"),
        ('[watch]\nstable_seconds = -1\n', "config.toml: [watch] stable_seconds = -1 must not be negative"),
        ('[model\n', "config.toml: not valid TOML"),
    ],
)
def test_bad_file_names_file_key_and_allowed_values(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ={})
    assert expected in str(info.value)
    assert str(tmp_path / "config.toml") in str(info.value)


def test_bad_environment_variable_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="environment variable ASMR_MODEL_QUANTIZE: \\[model\\] quantize = '3bit'"):
        load_settings(write(tmp_path, ""), environ={"ASMR_MODEL_QUANTIZE": "3bit"})


def test_explicit_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
