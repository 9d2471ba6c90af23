"""Translate script files once: read, segment, translate, write ``NAME.zh.EXT`` next to each input
(or into ``-o DIR``). Loads the model in this process; every line lands in the translation memory
shared with the daemon, so translating again is instant.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asmr_daemon.cli import add_model_arguments, model_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="script files (.txt, .srt, .vtt, .lrc)")
    parser.add_argument("-o", "--output-dir", metavar="DIR", type=Path,
                        help="where to write NAME.zh.EXT (default: next to each input)")
    parser.add_argument("--bilingual", action="store_true", default=None,
                        help="txt: each line followed by its translation")
    parser.add_argument("--state-dir", metavar="DIR", help="translation memory location")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from asmr_daemon.config import load_settings
    from asmr_daemon.errors import InputError
    from asmr_daemon.runtime import build_engine, require_base_model
    from asmr_daemon.scripts import output_name
    from asmr_daemon.translate_file import translate_file

    overrides = model_overrides(args) | {("output", "bilingual"): args.bilingual,
                                         ("paths", "state_dir"): args.state_dir}
    settings = load_settings(Path(args.config) if args.config else None, overrides)
    require_base_model(settings)  # a config problem is reported before the slow model load
    console = Console(stderr=True)
    runtime = build_engine(settings)
    failures = 0
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            for src in args.files:
                dest = (args.output_dir or src.parent) / output_name(src.name)
                task = bar.add_task(src.name, total=None)
                try:
                    translate_file(runtime.engine, src, dest, settings,
                                   progress=lambda done, total, t=task: bar.update(t, completed=done, total=total))
                except (InputError, FileNotFoundError) as exc:
                    failures += 1
                    bar.update(task, description=f"[red]{src.name}: failed")
                    console.print(f"[red]{src}:[/] {exc}")
                    continue
                bar.update(task, description=f"{src.name} -> {dest}")
    finally:
        runtime.close()
    return 1 if failures else 0
