"""Switch the running daemon to another LoRA adapter without reloading the base model.

Talks to the daemon over its editor socket (the ``asmr.useAdapter`` command). The adapter is read
and checked while the daemon keeps translating; requests already submitted finish on the old
adapter, new ones use the new one. To make it permanent, also set ``[model] adapter`` in the config
(after editing the config, ``systemctl --user reload asmr-daemon`` switches too).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", metavar="DIR", type=Path, help="peft adapter directory (e.g. from asmr-daemon train)")
    parser.add_argument("--socket", metavar="PATH", type=Path,
                        help="the daemon's socket (default: $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock)")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.engine.compat import read_adapter_header, short
    from asmr_daemon.lsp.client import execute_command
    from asmr_daemon.lsp.commands import USE_ADAPTER
    from asmr_daemon.lsp.endpoint import default_socket_path

    adapter = Path(os.path.abspath(args.adapter.expanduser()))
    read_adapter_header(adapter)  # a wrong path is told here, not by the daemon
    result = execute_command(args.socket or default_socket_path(), USE_ADAPTER, [str(adapter)])
    identity = result.get("identity") if isinstance(result, dict) else result
    Console().print(f"the daemon now uses {adapter} (identity {short(str(identity) if identity else None)})")
    return 0
