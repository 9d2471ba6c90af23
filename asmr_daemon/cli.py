"""Command line: ``asmr-daemon SUBCOMMAND``.

Each subcommand lives in ``asmr_daemon.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``; this module only builds the parser and turns typed errors into a
one-line message and an exit code (``ASMR_DEBUG=1`` shows the full traceback).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from asmr_daemon import __version__
from asmr_daemon.errors import AsmrError

# name -> (module, one-line help). Order is the order shown in --help.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "run the daemon: watch the inbox, serve editors, keep the model loaded"),
    "translate": ("translate", "translate script files once (uses the running daemon when reachable)"),
    "inspect": ("inspect_files", "show how files are read and what would reach the model (no model needed)"),
    "lsp": ("lsp", "stdio language server for editors that spawn a command (bridges to the daemon)"),
    "convert": ("convert", "convert a ChatGLM2 checkpoint/adapter to the native format once"),
    "train": ("train", "fine-tune a LoRA adapter on translation pairs"),
    "export-dataset": ("export_dataset", "write your corrections from the translation memory as training data"),
    "import-pairs": ("import_pairs", "make training data from a bilingual script or a script and its translation"),
    "use-adapter": ("use_adapter", "switch the running daemon to another LoRA adapter (no base-model reload)"),
    "status": ("status", "show whether the daemon runs, the model, the queue and recent failures"),
    "doctor": ("doctor", "check the installation, the Japanese pipeline and the configured model"),
    "install-service": ("install_service", "install the systemd user service"),
    "demo": ("demo", "try it: a tiny demo model translates a bundled script through the real daemon"),
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every subcommand understands (the config file)."""
    parser.add_argument("--config", metavar="FILE", help="settings file (default: $XDG_CONFIG_HOME/asmr-daemon/config.toml)")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options for commands that load a model (serve, translate, lsp --standalone, demo)."""
    group = parser.add_argument_group("model")
    group.add_argument("--base-model", metavar="DIR", help="ChatGLM2 or native GLM checkpoint directory")
    group.add_argument("--adapter", metavar="DIR", help="peft LoRA adapter directory")
    group.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where to run the model (default: auto)")
    group.add_argument("--quantize", choices=["auto", "none", "4bit", "8bit"],
                       help="load the base model quantized with bitsandbytes, on CPU or CUDA (default: auto = 4bit "
                            "for a large model on CPU when bitsandbytes is installed, else none)")
    group.add_argument("--backend", choices=["local", "openai"],
                       help="generate with the resident model, or on the [openai] server (vLLM) (default: local)")
    group.add_argument("--allow-other-base", action="store_true", default=None,
                       help="use an adapter even though it records another base model than this one")


def model_overrides(args: argparse.Namespace) -> dict[tuple[str, str], object]:
    """Flags that override ``[model]`` settings (None = not given)."""
    return {
        ("model", "base_model"): getattr(args, "base_model", None),
        ("model", "adapter"): getattr(args, "adapter", None),
        ("model", "device"): getattr(args, "device", None),
        ("model", "quantize"): getattr(args, "quantize", None),
        ("model", "backend"): getattr(args, "backend", None),
        ("model", "allow_other_base"): getattr(args, "allow_other_base", None),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asmr-daemon",
        description="Translate Japanese ASMR scripts into Chinese with ChatGLM2 + your LoRA.",
    )
    parser.add_argument("--version", action="version", version=f"asmr-daemon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(f"asmr_daemon.commands.{module_name}")
        command = sub.add_parser(name, help=help_text, description=(module.__doc__ or help_text).strip())
        add_common_arguments(command)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def command_name() -> str:
    """How the user runs this installation: ``asmr-daemon`` when that is on PATH and is this one,
    else the script's absolute path (``.../.venv/bin/asmr-daemon``), else ``python -m asmr_daemon``.
    Every hint printed uses it, so a copied command works right after setup."""
    import shutil

    script = os.path.join(os.path.dirname(sys.executable), "asmr-daemon")
    on_path = shutil.which("asmr-daemon")
    if on_path and os.path.realpath(on_path) == os.path.realpath(script):
        return "asmr-daemon"
    if os.path.isfile(script) and os.access(script, os.X_OK):
        return script
    return f"{sys.executable} -m asmr_daemon"


def describe_os_error(exc: OSError) -> str:
    """``[Errno 2] No such file or directory: 'work'`` -> ``/abs/work: no such file or directory``."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.filename is None:
        return reason
    where = os.path.abspath(os.fsdecode(exc.filename))
    if exc.filename2 is not None:
        where += f" -> {os.path.abspath(os.fsdecode(exc.filename2))}"
    return f"{where}: {reason}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prefix = f"asmr-daemon {args.command}"
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the catch-all: a user never sees a traceback unless they ask
        if os.environ.get("ASMR_DEBUG"):
            raise
        print(f"{prefix}: error: {user_message(exc)}", file=sys.stderr)
        return 1


def user_message(exc: Exception) -> str:
    """One line for any exception: typed errors as written, OS errors without ``[Errno N]``,
    anything else named as the bug it is."""
    if isinstance(exc, AsmrError):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"{describe_os_error(exc)} (check the permissions, or choose another path)"
    if isinstance(exc, OSError):
        return f"{describe_os_error(exc)} (check the path and try again)"
    return (f"unexpected {type(exc).__name__}: {exc} (this is a bug: run again with ASMR_DEBUG=1 "
            "to see the traceback, and report it)")
