"""Settings: one typed, defaulted object built from a TOML file, then ``ASMR_*`` environment
variables, then command-line flags (later sources win).

The file is ``$XDG_CONFIG_HOME/asmr-daemon/config.toml`` unless ``--config`` (or
``ASMR_CONFIG``) names another. Keys are ``[section] key``; the matching environment variable is
``ASMR_SECTION_KEY`` (e.g. ``[model] base_model`` <- ``ASMR_MODEL_BASE_MODEL``).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asmr_daemon.errors import ConfigError

DEFAULT_TEMPLATE = "[Round 1]\n\n问：将下面的日文翻译成中文：{source}\n\n答："


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def default_config_path() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "asmr-daemon" / "config.toml"


def default_state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "asmr-daemon"


def default_runtime_dir() -> Path:
    """Where the daemon's socket lives; ``$XDG_RUNTIME_DIR`` is per-user and mode 0700."""
    value = os.environ.get("XDG_RUNTIME_DIR")
    return (Path(value) if value else default_state_dir() / "run") / "asmr-daemon"


@dataclass
class ModelSettings:
    base_model: Path | None = None
    adapter: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: 4-bit for a large model on CPU when bitsandbytes is installed, else unquantized.
    quantize: Literal["auto", "none", "4bit", "8bit"] = "auto"
    backend: Literal["local", "openai"] = "local"
    # An adapter that records another base than this one is refused unless this is set.
    allow_other_base: bool = False


@dataclass
class PathSettings:
    inbox: Path = field(default_factory=lambda: Path.home() / "ASMR" / "inbox")
    outbox: Path = field(default_factory=lambda: Path.home() / "ASMR" / "outbox")
    state_dir: Path = field(default_factory=default_state_dir)
    # Empty means "inside the inbox" (inbox/done, inbox/failed).
    done_dir: Path | None = None
    failed_dir: Path | None = None

    @property
    def done(self) -> Path:
        return self.done_dir or self.inbox / "done"

    @property
    def failed(self) -> Path:
        return self.failed_dir or self.inbox / "failed"


@dataclass
class PromptSettings:
    template: str = DEFAULT_TEMPLATE
    context_lines: int = 0
    glossary: Path | None = None


@dataclass
class DecodingSettings:
    # Max new tokens = max(min_new_tokens, ratio * source tokens): translations are rarely
    # longer than 2-3x their source, and a cap stops runaway repetition early.
    max_new_tokens_ratio: float = 3.0
    min_new_tokens: int = 16
    retry_repetition_penalty: float = 1.3


@dataclass
class EngineSettings:
    batch_size: int = 32
    token_budget: int = 8192
    # Intra-op CPU threads of the engine's worker thread (the one running the model); 0 = every
    # core that other processes leave idle, followed twice a second (engine/threads.py says why).
    cpu_threads: int = 0


@dataclass
class WatchSettings:
    stable_seconds: float = 1.0
    rescan_seconds: float = 30.0
    observer: Literal["auto", "inotify", "polling"] = "auto"
    max_file_bytes: int = 5_000_000
    # A file still changing after this long (a stuck download, a log someone writes to) goes to
    # failed/ as "unstable" instead of being watched forever; 0 waits forever.
    max_wait_seconds: float = 600.0


@dataclass
class OutputSettings:
    encoding: Literal["utf-8", "original"] = "utf-8"
    newline: Literal["original", "lf", "crlf"] = "original"
    bilingual: bool = False
    # Outputs are private (0600). True: the watch folder gives them (and their review reports) the
    # inbox folder's group, readable by it (0640), for a shared inbox.
    group_from_inbox: bool = False


@dataclass
class LspSettings:
    tcp: str = ""
    socket: Path | None = None  # default: $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock
    # Every TCP client must send it; empty: the daemon's own, generated into STATE_DIR/lsp.token.
    token: str = ""
    # Bounds per editor connection; 0 = derived from [watch] max_file_bytes (see lsp/framing.py).
    max_header_bytes: int = 4096
    max_message_bytes: int = 0
    max_requests_in_flight: int = 32
    max_output_bytes: int = 0


@dataclass
class OpenAISettings:
    """``[model] backend = "openai"``: generation on an OpenAI-compatible server (vLLM).

    The daemon still reads the tokenizer from ``[model] base_model`` (the converted directory the
    server was started on): it sends token ids and decodes the returned ids itself.
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    # The served base model name (``vllm serve DIR --served-model-name NAME``; by default DIR itself).
    model: str = ""
    # A served LoRA name (``--lora-modules NAME=DIR``); empty = the base model alone.
    adapter: str = ""
    # Name of the environment variable that holds the API key (``vllm serve --api-key``); the key
    # itself never goes into the config file.
    api_key_env: str = "ASMR_OPENAI_API_KEY"
    # Per HTTP request; timeouts, connection errors, 429 and 5xx are retried ``retries`` times with
    # exponential backoff, then the batch waits (the daemon keeps its files queued).
    timeout_seconds: float = 60.0
    # Requests in flight at once (vLLM batches them); the engine's micro-batch ([engine] batch_size)
    # is what reaches the server together, so raise both for a big GPU server.
    max_concurrent: int = 32
    retries: int = 3


@dataclass
class Settings:
    model: ModelSettings = field(default_factory=ModelSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)
    paths: PathSettings = field(default_factory=PathSettings)
    prompt: PromptSettings = field(default_factory=PromptSettings)
    decoding: DecodingSettings = field(default_factory=DecodingSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    lsp: LspSettings = field(default_factory=LspSettings)
    # Which file the settings came from (None when no file exists); shown by ``doctor``.
    source_file: Path | None = None


Overrides = Mapping[tuple[str, str], Any]


def load_settings(config_file: Path | None = None, overrides: Overrides | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings: defaults < TOML file < ``ASMR_*`` environment < ``overrides`` (flags).

    ``config_file`` given explicitly must exist; the default one may be absent.
    ``overrides`` maps ``(section, key)`` to a value; ``None`` values are ignored (flag not given).
    """
    environ = os.environ if environ is None else environ
    explicit = config_file or (Path(environ["ASMR_CONFIG"]) if environ.get("ASMR_CONFIG") else None)
    path = explicit or default_config_path()
    settings = Settings()
    if path.is_file():
        _apply_file(settings, path)
        settings.source_file = path
    elif explicit is not None:
        raise ConfigError(f"config file {path} does not exist", "check the --config path")
    _apply_environment(settings, environ)
    for (section, key), value in (overrides or {}).items():
        if value is not None:
            _set(settings, section, key, value, origin="command line")
    return settings


def _apply_file(settings: Settings, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    sections = _sections()
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(f"{path}: unknown section [{section}]",
                              f"allowed sections: {', '.join(sorted(sections))}")
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{section}] must be a table")
        for key, value in table.items():
            _set(settings, section, key, value, origin=str(path))


def _apply_environment(settings: Settings, environ: Mapping[str, str]) -> None:
    for section, cls in _sections().items():
        for f in dataclasses.fields(cls):
            name = f"ASMR_{section}_{f.name}".upper()
            if name in environ:
                _set(settings, section, f.name, environ[name], origin=f"environment variable {name}")


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if dataclasses.is_dataclass(hints[f.name])}


def _set(settings: Settings, section: str, key: str, value: Any, *, origin: str) -> None:
    sections = _sections()
    if section not in sections:
        raise ConfigError(f"{origin}: unknown section [{section}]")
    target = getattr(settings, section)
    hints = typing.get_type_hints(type(target))
    if key not in hints:
        allowed = ", ".join(f.name for f in dataclasses.fields(target))
        raise ConfigError(f"{origin}: unknown key '{key}' in [{section}]", f"allowed keys: {allowed}")
    setattr(target, key, _coerce(value, hints[key], f"{origin}: [{section}] {key}"))


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a TOML/env/flag value to the annotated type, or raise a ConfigError saying what is allowed."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if value in ("", None) and type(None) in typing.get_args(annotation):
            return None
        return _coerce(value, options[0], where)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        if value not in allowed:
            raise ConfigError(f"{where} = {value!r} is not allowed", f"use one of: {', '.join(map(str, allowed))}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where} = {value!r} is not a path", "use a string such as \"~/models/chatglm2-6b\"")
        return Path(value).expanduser()
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where} = {value!r} is not a boolean", "use true or false")
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r} is not a number")
        try:
            number = annotation(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} = {value!r} is not a{'n integer' if annotation is int else ' number'}") from None
        if number < 0:
            raise ConfigError(f"{where} = {value!r} must not be negative")
        return number
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} = {value!r} is not a string")
        return value
    raise AssertionError(f"unsupported setting type {annotation!r}")  # a programming error, not user input
