"""Install the systemd user service: writes ``$XDG_CONFIG_HOME/systemd/user/asmr-daemon.service``
with the path of this installation's ``asmr-daemon``, then tells you how to enable it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from asmr_daemon.config import default_config_path
from asmr_daemon.errors import AsmrError, ConfigError

UNIT_NAME = "asmr-daemon.service"

# The unit, with {exec_start} filled in. systemd/asmr-daemon.service in the repository is this
# text rendered with the default ExecStart (a test keeps the two equal).
UNIT_TEMPLATE = """\
# asmr-daemon: translates Japanese ASMR scripts dropped into the inbox (systemd user service).
# Installed by `asmr-daemon install-service`; settings live in ~/.config/asmr-daemon/config.toml.
[Unit]
Description=asmr-daemon: Japanese ASMR script translator (ChatGLM2 + LoRA)
# No After=default.target: default.target is ordered after what it wants (WantedBy= below), so
# that would be an ordering cycle.

[Service]
# The daemon sends READY=1 only after the model is loaded, STOPPING=1 on SIGTERM, and
# WATCHDOG=1 every WatchdogSec/2.
Type=notify
NotifyAccess=main
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=10
# Loading a 6B model from a slow disk (and converting a ChatGLM2 checkpoint) takes minutes.
TimeoutStartSec=600
# SIGTERM lets the daemon finish the file in flight; an interrupted job resumes at the next start.
TimeoutStopSec=120
WatchdogSec=60
# Hardening that works in user units without user namespaces. Not MemoryDenyWriteExecute=:
# torch's CPU kernels (oneDNN/xbyak JIT), the CUDA driver and triton generate machine code at run
# time and need writable+executable pages. Not PrivateTmp=/ProtectSystem=/ProtectHome=/
# PrivateDevices=: in a user manager they need unprivileged user namespaces (the unit fails to
# start where those are disabled), and PrivateDevices= would hide /dev/nvidia*.
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native

[Install]
WantedBy=default.target
"""

DEFAULT_EXEC_START = "%h/.local/bin/asmr-daemon serve"


def _quote(word: str) -> str:
    """One ExecStart word: '%' is a specifier in unit files, spaces need quotes."""
    word = word.replace("%", "%%")
    if any(c in word for c in " \t\"'\\;$"):
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$") + '"'
    return word


def exec_start_command(config: Path | None = None) -> str:
    """The ExecStart line for this installation: the ``asmr-daemon`` script next to the running
    Python (a virtual environment's bin/), else ``python -m asmr_daemon``."""
    script = Path(sys.executable).parent / "asmr-daemon"
    if script.is_file() and os.access(script, os.X_OK):
        words = [str(script), "serve"]
    else:
        words = [sys.executable, "-m", "asmr_daemon", "serve"]
    if config is not None:
        words += ["--config", str(config.expanduser().resolve())]
    return " ".join(_quote(w) for w in words)


def render_unit(exec_start: str = DEFAULT_EXEC_START) -> str:
    return UNIT_TEMPLATE.format(exec_start=exec_start)


def unit_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "systemd" / "user" / UNIT_NAME


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print the unit instead of writing it")
    parser.add_argument("--force", action="store_true",
                        help="write the unit even though the service could not start with the current settings")


def startup_problem(config: Path | None) -> AsmrError | None:
    """Why ``serve`` would refuse to start with these settings (the unit would restart in a loop
    under ``Restart=on-failure``), or None."""
    from asmr_daemon.config import load_settings
    from asmr_daemon.preflight import check_base

    try:
        settings = load_settings(config)
        if settings.model.base_model is None:
            where = config or settings.source_file or default_config_path()
            return ConfigError("no base model is configured, so the service could not start",
                               f'set [model] base_model = "~/models/chatglm2-6b" in {where} first')
        check_base(settings)
    except AsmrError as exc:
        return exc
    return None


def run(args: argparse.Namespace) -> int:
    from asmr_daemon.cli import command_name
    from asmr_daemon.watch.outputs import atomic_write_text

    config = Path(args.config).expanduser().resolve() if getattr(args, "config", None) else None
    unit = render_unit(exec_start_command(config))
    problem = startup_problem(config)
    if args.dry_run:
        sys.stdout.write(unit)
        if problem is not None:
            print(f"asmr-daemon install-service: warning: {problem}", file=sys.stderr)
        return 0
    if problem is not None and not args.force:
        raise ConfigError(f"not installing the service: {problem.message}",
                          f"{problem.hint + '; ' if problem.hint else ''}or pass --force to install it anyway")
    dest = unit_path()
    atomic_write_text(dest, unit)
    if problem is not None:
        print(f"WARNING: the service will not start until this is fixed: {problem}", file=sys.stderr)
    print(f"wrote {dest}")
    print("enable and start it with:")
    print("  systemctl --user daemon-reload && systemctl --user enable --now asmr-daemon")
    print(f"then: {command_name()} status   (logs: journalctl --user -u asmr-daemon -f)")
    print("to keep it running while you are logged out: loginctl enable-linger")
    return 0
