"""Check the installation: Python, torch and CUDA, library versions, the Japanese pipeline,
the config file in use and whether the configured model and adapter directories look valid.

Exits non-zero when something needed for translating is broken.
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


def run(args: argparse.Namespace) -> int:
    settings = load_settings(Path(args.config) if args.config else None, model_overrides(args))
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
    checks.append(_directory_check("base model", settings.model.base_model, _describe_base_model))
    if settings.model.backend == "openai" and settings.openai.adapter:
        checks.append(Check("adapter", None, f"{settings.openai.adapter!r}, served by the generation server"))
    else:
        checks.append(_directory_check("adapter", settings.model.adapter, _describe_adapter))
    if settings.model.backend == "openai":
        checks.append(_generation_server(settings))
    for name, path in (("inbox", settings.paths.inbox), ("outbox", settings.paths.outbox),
                       ("state dir", settings.paths.state_dir)):
        checks.append(Check(name, None, f"{path}{'' if path.exists() else ' (created on first run)'}"))
    return checks


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


def _directory_check(name: str, path: Path | None, describe: Callable[[Path], str]) -> Check:
    if path is None:
        return Check(name, None, "not configured (--base-model / [model] base_model; try `asmr-daemon demo`)"
                     if name == "base model" else "not configured (the base model is used as is)")
    try:
        return Check(name, True, f"{path}: {describe(path)}")
    except AsmrError as exc:
        return Check(name, False, str(exc))


def _describe_base_model(path: Path) -> str:
    from asmr_daemon.engine.model_dir import inspect_base_model

    return inspect_base_model(path)


def _describe_adapter(path: Path) -> str:
    from asmr_daemon.engine.adapters import inspect_adapter

    return inspect_adapter(path)
