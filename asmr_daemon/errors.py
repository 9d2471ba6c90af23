"""Typed errors. The library raises these; only the CLI and the LSP turn them into messages.

Every error carries what is wrong (``message``) and, where we know it, what to do (``hint``).
``str(err)`` is the one-line text a user sees.
"""

from __future__ import annotations

import enum


class AsmrError(Exception):
    """Base class for every error a user is meant to read."""

    # What to do when the raiser had nothing more specific to say (each kind has one).
    default_hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint or self.default_hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(AsmrError):
    """A configuration file, environment variable or flag has an invalid value."""


class InputCode(enum.StrEnum):
    """Short machine-readable reason a script could not be read (stored with failed jobs)."""

    EMPTY = "empty"
    BINARY = "binary"
    ENCODING = "encoding"
    TOO_LARGE = "too-large"
    MALFORMED = "malformed"
    NOT_REGULAR = "not-regular"
    UNSTABLE = "unstable"
    OUTSIDE_INBOX = "outside-inbox"


class InputError(AsmrError):
    """A script file cannot be read or parsed. ``code`` says which kind of problem."""

    code: InputCode = InputCode.MALFORMED

    def __init__(self, message: str, hint: str | None = None, *, code: InputCode | None = None) -> None:
        super().__init__(message, hint)
        if code is not None:
            self.code = code


class EmptyFileError(InputError):
    code = InputCode.EMPTY


class BinaryFileError(InputError):
    code = InputCode.BINARY


class EncodingError(InputError):
    code = InputCode.ENCODING


class FileTooLargeError(InputError):
    code = InputCode.TOO_LARGE


class MalformedScriptError(InputError):
    code = InputCode.MALFORMED


class ModelDirError(AsmrError):
    """A base-model directory is missing files, has the wrong kind of checkpoint, or mismatching shapes."""

    default_hint = ("give the checkpoint directory as downloaded (config.json, weight files, tokenizer.model): "
                    "--base-model DIR or [model] base_model")


class AdapterError(AsmrError):
    """A LoRA adapter directory is missing, unsupported, or made for another base model."""

    default_hint = "give the peft adapter directory (adapter_config.json + adapter weights): --adapter DIR"


class DeviceError(AsmrError):
    """The requested device or quantization is not available on this machine."""


class DaemonNotRunning(AsmrError):
    """No running daemon answered on its socket."""


class NotBuiltYet(AsmrError):
    """A subcommand that exists in the interface but is not implemented yet."""


class BackendUnavailable(AsmrError):
    """The generation server (``[model] backend = "openai"``) cannot be reached or is not ready:
    connection refused, timeouts or 5xx after the retries, or the configured model is not served.
    Temporary by nature: the daemon keeps such jobs queued and tries again later."""


class BackendError(AsmrError):
    """The generation server refused a request for a reason retrying will not fix (a 4xx answer)."""


class DatasetError(AsmrError):
    """A training data set (JSON Lines, a bilingual script, two aligned files) cannot be used."""

    default_hint = 'fix the file: one JSON object {"source": ..., "target": ...} per line'

