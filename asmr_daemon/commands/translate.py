"""Translate script files once: read, segment, translate, write ``NAME.zh.EXT`` next to each input
(or into ``-o DIR``).

When a daemon is running (and no model option is given) the daemon does the work with the model
it already has loaded — a second copy of a 6B model would not fit next to it on most GPUs.
Otherwise the model is loaded in this process; either way every line lands in the translation
memory, so translating again is instant.
"""

from __future__ import annotations

import argparse
import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING

from asmr_daemon.cli import add_model_arguments, model_overrides

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from asmr_daemon.progress import PlainProgress
    from asmr_daemon.translate_file import Rendered


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", type=Path, help="script files (.txt .srt .vtt .lrc .ass .docx .pdf)")
    parser.add_argument("-o", "--output-dir", metavar="DIR", type=Path,
                        help="where to write NAME.zh.EXT (default: next to each input)")
    parser.add_argument("--bilingual", action="store_true", default=None,
                        help="txt: each line followed by its translation")
    parser.add_argument("--state-dir", metavar="DIR", help="translation memory location")
    parser.add_argument("--in-process", action="store_true",
                        help="load the model here even when a daemon is running")
    parser.add_argument("--socket", metavar="PATH", type=Path,
                        help="the daemon's socket (default: $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from asmr_daemon.config import load_settings
    from asmr_daemon.errors import InputError
    from asmr_daemon.preflight import check_input_files, check_writable_dir, naming
    from asmr_daemon.progress import make_progress
    from asmr_daemon.runtime import build_engine, require_base_model
    from asmr_daemon.translate_file import result_lines, translate_file

    check_distinct_outputs(args)  # before any work: one output must never take two inputs
    console = Console(stderr=True)
    args.files = check_input_files(args.files, "script")  # before a daemon call or a model load
    if args.output_dir is not None:
        args.output_dir = check_writable_dir(args.output_dir, "-o")
    model_flags = any(value is not None for value in model_overrides(args).values())
    if not (args.in_process or model_flags or args.state_dir or args.config):
        status = translate_with_daemon(args, console)
        if status is not None:
            return status
    overrides = model_overrides(args) | {("output", "bilingual"): args.bilingual,
                                         ("paths", "state_dir"): args.state_dir}
    settings = load_settings(Path(args.config) if args.config else None, overrides)
    require_base_model(settings)  # a config problem is reported before the slow model load
    runtime = build_engine(settings)
    failures = 0
    try:
        with make_progress(console, TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeElapsedColumn(), TimeRemainingColumn(), unit=" lines") as bar:
            for src in args.files:
                dest = destination(args, src)
                task = bar.add_task(escape(src.name), total=None)
                try:
                    result = translate_file(runtime.engine, src, dest, settings,
                                            progress=functools.partial(_show_progress, bar, task))
                except (InputError, FileNotFoundError) as exc:
                    failures += 1
                    console.print(f"[red]{escape(naming(src, str(exc)))}[/]")
                    continue
                finally:
                    bar.remove_task(task)  # a result line replaces the bar: none is left behind
                for line in result_lines(Path(os.path.abspath(src)), result.as_dict()):
                    console.print(line, markup=False, highlight=False, soft_wrap=True)
    finally:
        runtime.close()
    return 1 if failures else 0


def _show_progress(bar: Progress | PlainProgress, task: TaskID, done: int, total: int) -> None:
    bar.update(task, completed=done, total=total)


def check_distinct_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, two inputs that would be written to one output
    (``translate dd1/y.txt dd2/y.txt -o out``: the second would replace the first)."""
    from asmr_daemon.errors import ConfigError

    seen: dict[Path, Path] = {}
    for src in args.files:
        dest = destination(args, src)
        if dest in seen:
            first = Path(os.path.abspath(seen[dest]))
            if first == Path(os.path.abspath(src)):
                raise ConfigError(f"{first} is given twice", "name each file once")
            raise ConfigError(f"{first} and {os.path.abspath(src)} would both be written to {dest}",
                              "translate them with separate commands, or without -o so each output "
                              "lands next to its input")
        seen[dest] = src


def destination(args: argparse.Namespace, src: Path) -> Path:
    """``NAME.zh.EXT`` in ``-o DIR`` or next to the input (absolute: the daemon has its own cwd)."""
    from asmr_daemon.scripts import output_name

    return Path(os.path.abspath(args.output_dir or src.parent)) / output_name(src.name)


def translate_with_daemon(args: argparse.Namespace, console) -> int | None:  # type: ignore[no-untyped-def]
    """Have the running daemon translate the files; None when no daemon answers.

    The daemon only translates: this command reads each script (and a ``glossary.tsv`` beside
    it) and writes the output itself, as the user -- the daemon touches no path a client names."""
    from asmr_daemon.errors import AsmrError, DaemonNotRunning
    from asmr_daemon.lsp.endpoint import default_socket_path
    from asmr_daemon.preflight import naming
    from asmr_daemon.translate_file import publish_rendered, result_lines

    socket_path = args.socket or default_socket_path()
    failures = 0
    for number, src in enumerate(args.files):
        src = Path(os.path.abspath(src))
        dest = destination(args, src)
        try:
            with console.status(f"{src.name}: translating with the running daemon..."):
                rendered = _render_with_daemon(socket_path, src, bool(args.bilingual))
            result = publish_rendered(rendered, src, dest).as_dict()
        except DaemonNotRunning:
            if number == 0:
                return None  # nobody listens: load the model here instead
            raise
        except (AsmrError, OSError) as exc:
            failures += 1
            console.print(naming(src, str(exc)), style="red", markup=False, highlight=False)
            continue
        for line in result_lines(src, result):
            console.print(line + (" (by the running daemon)" if line.startswith(str(src)) else ""),
                          markup=False, highlight=False, soft_wrap=True)
    return 1 if failures else 0


def _render_with_daemon(socket_path: Path, src: Path, bilingual: bool) -> Rendered:
    """``asmr.translateFile`` with the script's bytes: the daemon's ``Rendered`` output."""
    import base64

    from asmr_daemon.engine.glossary import SCRIPT_GLOSSARY_NAME
    from asmr_daemon.lsp.client import execute_command
    from asmr_daemon.lsp.commands import TRANSLATE_FILE
    from asmr_daemon.review import Flag
    from asmr_daemon.translate_file import Rendered

    script = {"name": src.name, "content": base64.b64encode(src.read_bytes()).decode("ascii")}
    glossary = src.parent / SCRIPT_GLOSSARY_NAME
    if glossary.is_file():
        script["glossary"] = glossary.read_text(encoding="utf-8")
    answer = execute_command(socket_path, TRANSLATE_FILE, [script, {"bilingual": bilingual}])
    return Rendered(base64.b64decode(answer["content"]), tuple(Flag(**f) for f in answer.get("flags") or ()))
