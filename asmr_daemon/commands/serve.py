"""Run the daemon: load the model once, watch the inbox, serve editors, until stopped.

Under systemd (asmr-daemon install-service) it reports READY=1 once the model is loaded, pings
the watchdog, and stops cleanly on SIGTERM (finishing the file in flight); SIGHUP reloads the
settings, and a changed ``[model] adapter`` switches adapters without reloading the base model
(as ``asmr-daemon use-adapter DIR`` and the editor command ``asmr.useAdapter`` do).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

from asmr_daemon import cli, sdnotify

log = logging.getLogger("asmr_daemon.serve")

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
    from asmr_daemon.preflight import check_model, check_serve
    from asmr_daemon.runtime import build_engine, require_base_model
    from asmr_daemon.service import (
        STATUS_FILE,
        Daemon,
        StateLock,
        StatusFile,
        setup_logging,
    )

    setup_logging(verbose=getattr(args, "verbose", False))
    config_file = Path(args.config) if args.config else None
    flags = overrides(args)
    settings = load_settings(config_file, flags)
    require_base_model(settings)
    check_serve(settings)  # folders, socket, port: refused in a second, not after the model load
    if settings.model.backend == "local":
        check_model(settings)  # before the state dir is touched (build_engine checks again, cheaply)
    state_dir = settings.paths.state_dir = Path(os.path.abspath(settings.paths.state_dir))
    # Take the state dir before loading gigabytes: a second daemon fails in a second, not minutes.
    lock = StateLock(state_dir)
    try:
        status = StatusFile(state_dir / STATUS_FILE)
        status.update(pid=os.getpid(), started=time.time(), phase="loading",
                      model={"base_model": str(settings.model.base_model),
                             "adapter": str(settings.model.adapter) if settings.model.adapter else None,
                             "device": settings.model.device})
        sdnotify.notify(f"STATUS=loading model {settings.model.base_model}")
        log.info("loading model %s%s", settings.model.base_model,
                 f" + adapter {settings.model.adapter}" if settings.model.adapter else "")
        runtime = build_engine(settings, progress=False)
        engine, loaded = runtime.engine, runtime.loaded
        try:
            model_info = describe(loaded, engine)
            status.update(model=model_info)
            log.info("model loaded: %s on %s (%.2f GiB)", model_info["base_model"], model_info["device"],
                     loaded.memory_bytes / 2**30)
            current = {"settings": settings}

            def translate(src: Path, staged: Path) -> None:
                from asmr_daemon.progress import StatusProgress
                from asmr_daemon.translate_file import translate_file

                progress = StatusProgress(status)  # lines done/total of the file in flight, for `status`
                try:
                    translate_file(engine, src, staged, current["settings"], staged=True, progress=progress)
                finally:
                    progress.clear()

            def use_adapter(adapter_dir: Path) -> str:
                """Hot switch (CLI, editors, SIGHUP): the base stays loaded; status shows the new adapter."""
                adapter_dir = Path(os.path.abspath(adapter_dir))
                check_swap(adapter_dir, current["settings"])
                log.info("switching to adapter %s", adapter_dir)
                identity = engine.use_adapter(adapter_dir)
                model_info.update(adapter=str(adapter_dir), identity=identity, base_loads=base_load_count())
                status.update(model={**status.data.get("model", {}), **model_info})
                log.info("adapter %s active (identity %s); the base model was not reloaded", adapter_dir, identity)
                return identity

            def on_reload(new: Any) -> None:
                old = current["settings"].model
                if (new.model.base_model, new.model.backend) != (old.base_model, old.backend):
                    log.warning("base model or backend changes take effect after a restart "
                                "(systemctl --user restart asmr-daemon)")
                elif new.model.adapter != old.adapter:
                    if new.model.adapter is None:
                        log.warning("running without an adapter takes effect after a restart")
                    else:
                        use_adapter(new.model.adapter)  # AdapterError: the reload fails, old settings stay
                current["settings"] = new

            daemon = Daemon(settings, translate, model_info=model_info,
                            reload_settings=lambda: load_settings(config_file, flags), on_reload=on_reload,
                            extra_services=lsp_services(engine, settings, use_adapter),
                            status_extra=lambda: {"engine": dict(engine.stats)},
                            lock=lock, status=status)
            return daemon.run()
        finally:
            engine.close()
    finally:
        lock.release()


def describe(loaded: Any, engine: Any) -> dict[str, Any]:
    """What ``status`` shows about the model."""
    return {
        "loaded": True,
        "base_model": str(loaded.base_dir),
        "adapter": str(loaded.adapter_dir) if loaded.adapter_dir else None,
        "identity": engine.identity,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "memory_bytes": loaded.memory_bytes,
        "base_loads": base_load_count(),
    }


def lsp_services(engine: Any, settings: Any, use_adapter: Any = None) -> list[Any]:
    """Hook for the editor endpoint (Unix socket, plus TCP with ``--lsp-tcp``): services with
    start()/stop() that the daemon runs next to the watch folder."""
    from asmr_daemon.lsp.endpoint import LspEndpoint
    from asmr_daemon.preflight import socket_path

    return [LspEndpoint(engine, settings, use_adapter=use_adapter, socket_path=socket_path(settings))]


def check_swap(adapter_dir: Path, settings: Any) -> None:
    """A hot switch gets the same provenance check as a start (the shapes are checked on the live model)."""
    from asmr_daemon.engine.compat import check_provenance

    if settings.model.backend == "local" and settings.model.base_model is not None:
        check_provenance(adapter_dir, Path(os.path.abspath(settings.model.base_model)),
                         allow_other_base=settings.model.allow_other_base)


def base_load_count() -> int:
    """How often this process loaded base-model weights (1 in a daemon, whatever the adapter switches)."""
    from asmr_daemon.engine.loading import base_load_count as count

    return count()
