"""Checks that run before anything slow: before a model load (minutes for a 6B base), a training
run (hours) or a daemon start. Each raises the typed error the slow path would raise later -- one
line saying what is wrong and what to do -- or returns a one-line detail; ``doctor`` shows the same
functions as rows, so it is never more optimistic than ``translate`` or ``serve``.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from asmr_daemon.config import Settings
from asmr_daemon.errors import ConfigError, InputError


def absolute(path: Path) -> Path:
    """``~`` expanded and made absolute (messages show where a file really is)."""
    return Path(os.path.abspath(Path(path).expanduser()))


# ---------------------------------------------------------------------------------------------
# Files and folders
# ---------------------------------------------------------------------------------------------


def check_input_file(path: Path, what: str = "input") -> Path:
    """An existing, readable regular file; its absolute path."""
    path = absolute(path)
    if not path.exists():
        raise InputError(f"{what} {path} does not exist", "check the path")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder, not a file", "give the file inside it")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path} cannot be read (permission denied)", f"chmod u+r {path}")
    return path


def check_input_files(paths: Iterable[Path], what: str = "input") -> list[Path]:
    return [check_input_file(p, what) for p in paths]


def naming(path: Path, message: str) -> str:
    """``message`` about ``path``, naming the path once (not ``work: work: not a regular file``)."""
    return message if str(path) in message else f"{path}: {message}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable_dir(path: Path, what: str) -> Path:
    """A folder we can create or write into (nothing is created here)."""
    path = absolute(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder", "give a folder, or move the file away")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"{what} {path} cannot be created: {existing} is a file", "choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path} cannot be written: no write permission on {existing}",
                          "choose a folder you own")
    return path


def check_output_file(path: Path, what: str = "output") -> Path:
    """A file path we can write (atomically, so its folder must be writable); not a folder."""
    path = absolute(path)
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder", f"give a file name, e.g. {path / 'pairs.jsonl'}")
    check_writable_dir(path.parent, f"the folder of {what}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} is read-only", "choose another file name")
    return path


# ---------------------------------------------------------------------------------------------
# Device, quantization, base model, adapter
# ---------------------------------------------------------------------------------------------


def check_device(settings: Settings) -> str:
    """The device the model would run on (DeviceError when it is not there)."""
    import torch

    from asmr_daemon.engine.devices import resolve_device

    device = resolve_device(settings.model.device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)}), requested {settings.model.device}"
    return f"cpu, requested {settings.model.device}" + (" (no CUDA GPU found)" if settings.model.device == "auto" else "")


def check_quantization(settings: Settings) -> str:
    """The refusals ``load_model`` makes for ``--quantize`` before reading any weight."""
    quantize = settings.model.quantize
    if quantize == "none":
        return "none"
    from asmr_daemon.engine.devices import choose_precision, resolve_device
    from asmr_daemon.engine.loading import model_config, parameter_count
    from asmr_daemon.engine.model_dir import read_model_config

    device = resolve_device(settings.model.device)
    base = settings.model.base_model
    weights = parameter_count(model_config(base, read_model_config(base))) if base is not None else 0
    precision = choose_precision(device, quantize, weights)  # what load_model refuses: unknown mode, no bitsandbytes
    return f"{precision.describe()} on {device}" + (" (bitsandbytes)" if precision.quantize else "")


def check_base(settings: Settings) -> str:
    from asmr_daemon.engine.model_dir import inspect_base_model
    from asmr_daemon.runtime import require_base_model

    base = absolute(require_base_model(settings))
    return f"{base}: {inspect_base_model(base)}"


def check_adapter(settings: Settings) -> str:
    """The adapter fits the base (module names, shapes, layer count), from the files alone."""
    from asmr_daemon.engine.compat import check_compatible
    from asmr_daemon.runtime import require_base_model

    if settings.model.adapter is None:
        return "no adapter (the base model is used as is)"
    return check_compatible(absolute(settings.model.adapter), absolute(require_base_model(settings)))


def check_recorded_base(settings: Settings) -> str:
    """The adapter was trained on this base (or the user allowed another one)."""
    from asmr_daemon.engine.compat import check_provenance
    from asmr_daemon.runtime import require_base_model

    if settings.model.adapter is None:
        return "no adapter"
    return check_provenance(absolute(settings.model.adapter), absolute(require_base_model(settings)),
                            allow_other_base=settings.model.allow_other_base)


def check_model(settings: Settings) -> None:
    """Everything about the model that can be known without loading it (local backend)."""
    for check in (check_device, check_quantization, check_base, check_adapter, check_recorded_base):
        check(settings)


# ---------------------------------------------------------------------------------------------
# The daemon: state dir, folders, editor socket and port
# ---------------------------------------------------------------------------------------------


def socket_path(settings: Settings) -> Path:
    from asmr_daemon.lsp.endpoint import default_socket_path

    return absolute(settings.lsp.socket) if settings.lsp.socket else default_socket_path()


def peer_pid(path: Path) -> int | None:
    """The pid of the process accepting connections on the Unix socket ``path`` (``SO_PEERCRED``),
    or None when nothing answers (no file, or a stale one: the daemon replaces it)."""
    import struct

    if not path.exists():
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
            return int(struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0])
        except OSError:
            return None


def socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the Unix socket ``path`` (a running daemon)."""
    return peer_pid(path) is not None


def daemon_behind_socket(path: Path) -> tuple[int, Path | None] | None:
    """(pid, state dir) of the daemon answering on ``path``, or None when nothing answers.

    The state dir comes from the lock the daemon holds open in it (``/proc/PID/fd``), so a daemon
    started with another ``--state-dir`` is found without any file of its own.
    """
    from asmr_daemon.service.state import LOCK_FILE

    pid = peer_pid(path)
    if pid is None:
        return None
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = Path(os.readlink(fd))
            if target.name == LOCK_FILE:
                return pid, target.parent
    except OSError:
        pass
    return pid, None


# AF_UNIX paths are limited to 108 bytes including the terminating NUL.
_MAX_SOCKET_PATH = 107


def check_socket_free(settings: Settings) -> str:
    path = socket_path(settings)
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ConfigError(f"editor socket path {path} is longer than {_MAX_SOCKET_PATH} bytes",
                          "pass a shorter --lsp-socket PATH")
    check_writable_dir(path.parent, "the folder of the editor socket")
    if socket_answers(path):
        raise ConfigError(f"another asmr-daemon already serves editors on {path}",
                          "stop it (systemctl --user stop asmr-daemon), or give this one its own "
                          "--lsp-socket PATH and --state-dir DIR")
    return f"{path} (free)"


def check_tcp(settings: Settings) -> str:
    """``[lsp] tcp`` parses and its port is free."""
    from asmr_daemon.lsp.endpoint import parse_tcp

    if not settings.lsp.tcp:
        return "off (Unix socket only)"
    host, port = parse_tcp(settings.lsp.tcp)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConfigError(f"--lsp-tcp / [lsp] tcp host {host!r} is not known", "use an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is already in use",
                                  "stop what listens there, or choose another --lsp-tcp HOST:PORT") from None
            raise ConfigError(f"cannot listen on {host}:{port} ({os.strerror(exc.errno or 0).lower()})",
                              "use an address of this machine, e.g. 127.0.0.1:9257") from None
    return f"{host}:{port} (free)"


def check_state_dir(settings: Settings) -> str:
    path = check_writable_dir(settings.paths.state_dir, "state dir")
    return f"{path}" + ("" if path.exists() else " (created on first run)")


def check_folders(settings: Settings) -> str:
    from asmr_daemon.service.daemon import check_folders as layout

    folders = layout(settings)  # ConfigError for a layout that would loop
    for name in ("inbox", "outbox", "done", "failed"):
        check_writable_dir(getattr(folders, name), name)
    return f"inbox {folders.inbox}, outbox {folders.outbox}"


def check_serve(settings: Settings) -> None:
    """What ``serve`` needs besides the model: folders, state dir, socket and port."""
    for check in (check_folders, check_state_dir, check_socket_free, check_tcp):
        check(settings)
