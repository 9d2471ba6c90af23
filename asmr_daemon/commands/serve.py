"""Run the daemon: load the model once, watch the inbox, serve editors, until stopped.

Under systemd (asmr-daemon install-service) it reports READY=1 once the model is loaded, pings
the watchdog, and stops cleanly on SIGTERM (finishing the file in flight); SIGHUP reloads the
settings, and a changed ``[model] adapter`` switches adapters without reloading the base model
(as ``asmr-daemon use-adapter DIR`` and the editor command ``asmr.useAdapter`` do).
"""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from asmr_daemon import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    cli.add_model_arguments(parser)
    folders = parser.add_argument_group("folders")
    folders.add_argument("--inbox", metavar="DIR", help="folder to watch for scripts (default: ~/ASMR/inbox)")
    folders.add_argument("--outbox", metavar="DIR", help="folder for translations (default: ~/ASMR/outbox)")
    folders.add_argument("--state-dir", metavar="DIR",
                         help="job queue, translation memory, status (default: $XDG_STATE_HOME/asmr-daemon)")
    parser.add_argument("--lsp-tcp", metavar="HOST:PORT", help="also serve editors over TCP (default: Unix socket only)")
    parser.add_argument("--lsp-socket", metavar="PATH",
                        help="the editor socket (default: $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock); "
                             "a second daemon needs its own, and its own --state-dir")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def overrides(args: argparse.Namespace) -> dict[tuple[str, str], object]:
    return {
        **cli.model_overrides(args),
        ("paths", "inbox"): getattr(args, "inbox", None),
        ("paths", "outbox"): getattr(args, "outbox", None),
        ("paths", "state_dir"): getattr(args, "state_dir", None),
        ("lsp", "tcp"): getattr(args, "lsp_tcp", None),
        ("lsp", "socket"): getattr(args, "lsp_socket", None),
    }


def run(args: argparse.Namespace) -> int:
    from asmr_daemon.config import load_settings
    from asmr_daemon.service.logs import setup_logging
    from asmr_daemon.service.root import run_daemon

    setup_logging(verbose=getattr(args, "verbose", False))
    config_file = Path(args.config) if args.config else None
    flags = overrides(args)
    return run_daemon(load_settings(config_file, flags), functools.partial(load_settings, config_file, flags))
