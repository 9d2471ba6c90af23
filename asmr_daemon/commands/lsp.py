"""Language server over stdio, for editors that start a command (Helix, Emacs eglot, Neovim 0.7).

Connects to the running daemon (``asmr-daemon serve``) through its socket and relays stdio, so
the model stays loaded once for every editor. ``--standalone`` loads the model in this process
instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from asmr_daemon import cli


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="PATH",
                        help="the daemon's socket (default: $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock)")
    parser.add_argument("--standalone", action="store_true",
                        help="no daemon: load the model in this process and serve this editor only")
    cli.add_model_arguments(parser)
    parser.add_argument("--state-dir", metavar="DIR", help="translation memory location for --standalone")


def run(args: argparse.Namespace) -> int:
    from asmr_daemon.config import load_settings
    from asmr_daemon.lsp import bridge

    config_file = Path(args.config) if args.config else None
    if not args.standalone:
        from asmr_daemon.lsp.endpoint import default_socket_path

        return bridge.run_bridge(Path(args.socket) if args.socket else default_socket_path())
    from asmr_daemon.runtime import require_base_model
    from asmr_daemon.service.root import run_standalone

    settings = load_settings(config_file, {**cli.model_overrides(args), ("paths", "state_dir"): args.state_dir})
    require_base_model(settings)
    return run_standalone(settings)
