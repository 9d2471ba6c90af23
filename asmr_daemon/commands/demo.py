"""Try asmr-daemon end to end in about a minute.

With no model configured, it builds a tiny DEMO model (a tiny base plus a LoRA trained in
seconds on the bundled demo script: it only knows those lines), starts the real daemon on a
temporary inbox/outbox, drops the bundled script in, shows the translation side by side when
it appears, tells how to connect an editor, and stops the daemon cleanly. With a model
configured (--base-model or [model] base_model) it runs the same flow on your model.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from asmr_daemon.cli import add_model_arguments, command_name, model_overrides
from asmr_daemon.errors import AsmrError
from asmr_daemon.preflight import check_input_file, check_model

TIMEOUT_SECONDS = 900.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--script", type=Path, metavar="FILE",
                        help="script to drop into the inbox (default: the bundled demo script)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders and print where they are")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from asmr_daemon.config import load_settings
    from asmr_daemon.demo import SCRIPT_FILE

    console = Console()
    settings = load_settings(Path(args.config) if args.config else None, model_overrides(args))
    script = check_input_file(args.script, "--script") if args.script else SCRIPT_FILE
    if settings.model.base_model is not None:
        check_model(settings)  # your model: refused before the daemon spends minutes loading it
    root = Path(tempfile.mkdtemp(prefix="asmr-demo-"))
    adapter: Path | None
    try:
        if settings.model.base_model is None:
            console.print("[bold yellow]DEMO MODEL[/]: no model is configured, so a tiny model is trained now "
                          "on the bundled demo script. It only knows those lines; it is not a translator.")
            with console.status("building the demo model (a tiny base + a LoRA trained on the demo lines)..."):
                base, adapter = build_demo_model(root / "model")
        else:
            base, adapter = settings.model.base_model, settings.model.adapter
            console.print(f"Using your model: {base}" + (f" + {adapter}" if adapter else ""))
        translation = run_daemon_once(console, root, script, base, adapter, args.config)
        show_side_by_side(console, script, translation)
        print_hints(console, root if args.keep else None, base, adapter)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def print_hints(console, kept: Path | None, base: Path, adapter: Path | None) -> None:  # type: ignore[no-untyped-def]
    """What to do next, with commands that work as printed (see ``cli.command_name``)."""
    from rich.markup import escape

    cmd = command_name()
    console.print(escape(f"\nEditors: with `{cmd} serve` running, point your editor at it: "
                         'Neovim `require("asmr").setup({})` (lsp/nvim), VS Code (lsp/vscode), or any LSP '
                         f"editor with the command `{cmd} lsp`. Hover a Japanese line to see its translation."), soft_wrap=True)
    console.print(escape(f"Next: `{cmd} serve --base-model ~/models/chatglm2-6b --adapter ~/models/my-lora`, "
                         "then drop scripts into ~/ASMR/inbox."), soft_wrap=True)
    if kept is None:
        return
    model = f"--base-model {base}" + (f" --adapter {adapter}" if adapter else "")
    console.print(escape(f"Demo folders kept in {kept}. Use this model again:\n"
                         f"  {cmd} translate FILE {model} --state-dir {kept / 'state'}\n"
                         f"  {cmd} serve {model} --inbox {kept / 'inbox'} --outbox {kept / 'outbox'} "
                         f"--state-dir {kept / 'state'} --lsp-socket {kept / 'run' / 'lsp.sock'}"), soft_wrap=True)


def build_demo_model(root: Path) -> tuple[Path, Path]:
    """A tiny native base and a LoRA that reproduces the demo pairs exactly (the training core)."""
    from asmr_daemon.demo import load_pairs
    from asmr_daemon.tiny_model import build_tiny_base, corpus_for, train_demo_adapter

    pairs = load_pairs()
    base = build_tiny_base(root / "base", corpus_for(pairs), fmt="glm")
    adapter = train_demo_adapter(base, pairs, root / "adapter", fmt="native")
    return base, adapter


def run_daemon_once(console, root: Path, script: Path, base: Path, adapter: Path | None,  # type: ignore[no-untyped-def]
                    config: str | None) -> Path:
    """Start the real daemon, drop ``script`` into its inbox, wait for the output, stop the daemon."""
    from asmr_daemon.scripts import output_name

    inbox, outbox, state, runtime = (root / name for name in ("inbox", "outbox", "state", "run"))
    for folder in (inbox, outbox, state, runtime):
        folder.mkdir(parents=True, exist_ok=True)
    notify_path = runtime / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    command = [sys.executable, "-m", "asmr_daemon", "serve", "--base-model", str(base),
               "--inbox", str(inbox), "--outbox", str(outbox), "--state-dir", str(state)]
    if adapter:
        command += ["--adapter", str(adapter)]
    if config:
        command += ["--config", config]
    # Its own runtime dir: the demo's editor socket never clashes with a daemon you already run.
    env = dict(os.environ, NOTIFY_SOCKET=str(notify_path), XDG_RUNTIME_DIR=str(runtime))
    log = (root / "daemon.log").open("w")
    daemon = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        with console.status("starting the daemon and loading the model..."):
            wait_for_ready(listener, daemon, root / "daemon.log")
        console.print(f"daemon ready (pid {daemon.pid}); dropping {script.name} into {inbox}")
        staged = inbox / f".{script.name}.part"  # ignored by the watcher until renamed
        shutil.copyfile(script, staged)
        staged.rename(inbox / script.name)
        result = outbox / output_name(script.name)
        with console.status("translating..."):
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while not result.exists():
                if daemon.poll() is not None:
                    raise AsmrError(f"the daemon exited with code {daemon.returncode}: "
                                    f"{_tail(root / 'daemon.log')}")
                if time.monotonic() > deadline:
                    raise AsmrError("no translation appeared in time", f"see {root / 'daemon.log'}")
                failed = list((inbox / "failed").glob("*.error.txt"))
                if failed:
                    raise AsmrError(f"the demo script failed: {failed[0].read_text(encoding='utf-8')}")
                time.sleep(0.2)
        daemon.send_signal(signal.SIGTERM)
        if daemon.wait(timeout=60) != 0:
            raise AsmrError(f"the daemon stopped with code {daemon.returncode}: {_tail(root / 'daemon.log')}")
        console.print("daemon stopped cleanly")
        return result
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        listener.close()
        log.close()


def wait_for_ready(listener: socket.socket, daemon: subprocess.Popen, log: Path) -> None:
    """Block until the daemon sends READY=1 over the notify socket, as systemd would see it."""
    listener.settimeout(0.5)
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise AsmrError(f"the daemon exited with code {daemon.returncode} while starting: {_tail(log)}")
        try:
            message = listener.recv(4096).decode("utf-8", "replace")
        except TimeoutError:
            continue
        if "READY=1" in message.splitlines():
            return
    raise AsmrError("the daemon did not become ready in time", f"see {log}")


def show_side_by_side(console, source: Path, translation: Path) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    from asmr_daemon.scripts import read_script

    src_lines = read_script(source).lines
    out_lines = translation.read_text(encoding="utf-8").splitlines()
    table = Table(title=f"{source.name}  ->  {translation.name}", show_lines=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("原文 (Japanese)", overflow="fold")
    table.add_column("译文 (Chinese)", overflow="fold")
    for line, out in zip(src_lines, out_lines, strict=True):
        table.add_row(str(line.index + 1), line.raw, out if out != line.raw else f"[dim]{out}[/]")
    console.print(table)


def _tail(log: Path, lines: int = 5) -> str:
    try:
        return " | ".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
