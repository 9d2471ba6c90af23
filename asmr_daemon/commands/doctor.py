"""Check the installation: Python, torch and CUDA, library versions, the Japanese pipeline, the
config file in use, and -- with the very checks ``translate`` and ``serve`` make before loading --
the device, quantization, base model, whether the adapter fits it and was trained on it, the state
dir, the inbox/outbox and the editor socket.

Exits 1 when ``translate`` or ``serve`` would refuse.
"""

from __future__ import annotations

import argparse
import functools
import platform
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from asmr_daemon import preflight
from asmr_daemon.cli import add_model_arguments, model_overrides
from asmr_daemon.config import Settings, load_settings
from asmr_daemon.errors import AsmrError


@dataclass
class Check:
    name: str
    ok: bool | None  # None = informational / not configured
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--state-dir", metavar="DIR", help="the daemon's state dir (default: from the settings)")
    parser.add_argument("--lsp-socket", metavar="PATH", help="the editor socket to check (default: the daemon's)")


def run(args: argparse.Namespace) -> int:
    flags = model_overrides(args) | {("paths", "state_dir"): args.state_dir, ("lsp", "socket"): args.lsp_socket}
    settings = load_settings(Path(args.config) if args.config else None, flags)
    checks = collect_checks(settings)
    table = Table(title="asmr-daemon doctor", show_lines=False)
    table.add_column("check")
    table.add_column("", justify="center")
    table.add_column("detail", overflow="fold")
    for check in checks:
        mark = {True: "[green]ok[/]", False: "[red]FAIL[/]", None: "[dim]-[/]"}[check.ok]
        table.add_row(check.name, mark, escape(check.detail))
    Console().print(table)
    return 1 if any(check.ok is False for check in checks) else 0


def collect_checks(settings: Settings) -> list[Check]:
    checks = [Check("python", True, f"{platform.python_version()} ({platform.python_implementation()})")]
    checks.append(_guard("torch", _torch))
    for package in ("transformers", "peft", "spacy", "sudachipy", "pygls", "watchdog"):
        checks.append(_guard(package, functools.partial(metadata.version, package)))
    checks.append(_guard("japanese pipeline", _japanese_pipeline))
    checks.append(Check("config file", None, str(settings.source_file) if settings.source_file
                        else "none (defaults, environment and flags only)"))
    checks += model_checks(settings)
    if settings.model.backend == "openai":
        checks.append(_generation_server(settings))
    checks += daemon_checks(settings)
    return checks


def model_checks(settings: Settings) -> list[Check]:
    """The checks ``translate``/``serve`` make before loading (preflight), one row each; a row that
    depends on a failed one is shown as skipped."""
    if settings.model.backend == "openai":
        rows = [Check("device", None, "generation runs on the [openai] server"),
                _preflight("base model", preflight.check_base, settings)]
        if settings.openai.adapter:
            rows.append(Check("adapter", None, f"{settings.openai.adapter!r}, served by the generation server"))
        return rows
    rows = [_preflight("device", preflight.check_device, settings)]
    rows.append(_preflight("quantization", preflight.check_quantization, settings) if rows[0].ok
                else Check("quantization", None, "skipped: needs a usable device"))
    rows.append(_preflight("base model", preflight.check_base, settings))
    if settings.model.adapter is None:
        return rows + [Check("adapter", None, "not configured (the base model is used as is)")]
    if rows[-1].ok is False:
        return rows + [Check("adapter ↔ base", None, "skipped: needs a usable base model")]
    rows.append(_preflight("adapter ↔ base", preflight.check_adapter, settings))
    if rows[-1].ok is False:
        return rows + [Check("recorded base", None, "skipped: the adapter does not fit")]
    return rows + [_preflight("recorded base", preflight.check_recorded_base, settings)]


def daemon_checks(settings: Settings) -> list[Check]:
    rows = [_preflight("state dir", preflight.check_state_dir, settings),
            _preflight("inbox/outbox", preflight.check_folders, settings)]
    path = preflight.socket_path(settings)
    if preflight.socket_answers(path):  # translate uses it; serve would need its own socket
        rows.append(Check("socket", None, f"{path}: a daemon is running and answers there"))
        if settings.lsp.tcp:
            rows.append(Check("editor tcp", None, f"{settings.lsp.tcp} (the running daemon's)"))
        return rows
    rows.append(_preflight("socket", preflight.check_socket_free, settings))
    if settings.lsp.tcp:
        rows.append(_preflight("editor tcp", preflight.check_tcp, settings))
    return rows


def _preflight(name: str, check: Callable[[Settings], str], settings: Settings) -> Check:
    try:
        return Check(name, True, check(settings))
    except AsmrError as exc:
        return Check(name, False, str(exc))


def _generation_server(settings: Settings) -> Check:
    """``backend = "openai"``: is the server up, and does it serve the configured model and adapter?"""
    from asmr_daemon.engine.remote import probe

    ok, detail = probe(settings.openai)
    return Check("generation server", ok, detail)


def _guard(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except Exception as exc:  # doctor reports every failure instead of stopping at the first
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def _torch() -> str:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return f"{torch.__version__}, CUDA {torch.version.cuda}: {names}"
    return f"{torch.__version__}, no CUDA GPU (runs on the CPU)"


def _japanese_pipeline() -> str:
    from asmr_daemon.scripts import get_segmenter

    sample = "おかえりなさい、お兄ちゃん。今日もお疲れさまでした！ゆっくり休んでくださいね。"
    segments = get_segmenter().split(sample)
    return f"spaCy ja + SudachiPy: {sample!r} -> {len(segments)} sentences"
