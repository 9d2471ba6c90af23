"""The composition root of ``serve`` and ``lsp --standalone``: one ``Service`` owns the settings,
the engine, the editors' ``Translator``, the LSP endpoint and the watch ``Daemon``.

Every part reads what it needs from here or is handed it by ``reload`` / ``use_adapter``; there
are no copies to go stale (the model description is one dict, the settings one object).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from asmr_daemon import sdnotify
from asmr_daemon.config import Settings
from asmr_daemon.engine.compat import check_provenance
from asmr_daemon.engine.prompts import validate_template
from asmr_daemon.lsp.endpoint import LspEndpoint
from asmr_daemon.lsp.server import build_server
from asmr_daemon.lsp.translate import Translator
from asmr_daemon.preflight import check_model, check_serve, socket_path
from asmr_daemon.progress import StatusProgress
from asmr_daemon.runtime import Runtime, build_engine, require_base_model
from asmr_daemon.service.daemon import Daemon
from asmr_daemon.service.state import STATUS_FILE, StateLock, StatusFile
from asmr_daemon.translate_file import translate_file

log = logging.getLogger("asmr_daemon.serve")


class Service:
    """The running product around one resident model. ``reload`` and ``use_adapter`` reach the
    engine, the editors (``translator``), the watch folder (``daemon``) and systemd's STATUS."""

    def __init__(self, settings: Settings, runtime: Runtime, *,
                 read_settings: Callable[[], Settings] | None = None) -> None:
        """``read_settings``: where SIGHUP reads the settings from again (config file + flags)."""
        self.settings = settings
        self.runtime = runtime
        self.engine = runtime.engine
        self.read_settings = read_settings
        self.model: dict[str, Any] = describe(runtime)
        self.translator = Translator(self.engine, settings, use_adapter=self.use_adapter)
        self.endpoint: LspEndpoint | None = None
        self.status: StatusFile | None = None
        self.daemon: Daemon | None = None

    @classmethod
    def load(cls, settings: Settings, *, read_settings: Callable[[], Settings] | None = None,
             progress: bool = False) -> Service:
        """Load the model (or connect to the generation server) and start the engine."""
        return cls(settings, build_engine(settings, progress=progress), read_settings=read_settings)

    # -- running -----------------------------------------------------------------------------------

    def serve(self, *, lock: StateLock | None = None, status: StatusFile | None = None,
              notify: Callable[..., bool] = sdnotify.notify) -> int:
        """Watch folder + editors until SIGTERM; returns the exit code."""
        self.status = status
        self.endpoint = LspEndpoint(self.translator, self.settings, socket_path=socket_path(self.settings))
        self.daemon = Daemon(self.settings, self.translate_file, model=self.describe_model,
                             reload=self.reload_from_source if self.read_settings else None,
                             parts=[self.endpoint], status_extra=self._engine_status,
                             lock=lock, status=status, notify=notify)
        return self.daemon.run()

    def serve_stdio(self, stdin: BinaryIO, stdout: BinaryIO) -> int:
        """One editor over stdio (``lsp --standalone``)."""
        build_server(self.translator).start_io(stdin, stdout)
        return 0

    def translate_file(self, src: Path, staged: Path) -> None:
        """What the watch folder does with one file, with the current settings: written to the
        job's staging name, which the job runner then publishes. Lines done/total of the file in
        flight go to the status record, for ``status``."""
        progress = StatusProgress(self.status) if self.status is not None else None
        try:
            translate_file(self.engine, src, staged, self.settings, staged=True, progress=progress)
        finally:
            if progress is not None:
                progress.clear()

    def close(self) -> None:
        self.runtime.close()

    # -- changes that reach every part ----------------------------------------------------------

    def reload_from_source(self) -> None:
        """SIGHUP: read the settings again and apply them (AsmrError: the old ones stay)."""
        assert self.read_settings is not None
        self.reload(self.read_settings())

    def reload(self, new: Settings) -> None:
        """Apply new settings everywhere: prompt and decoding to the engine (new requests),
        the editors and the watch folder; a changed adapter is switched to. Base model, backend
        and folders change on restart. Raises (changing nothing) for an unusable template or adapter."""
        validate_template(new.prompt.template)
        old = self.settings.model
        if (new.model.base_model, new.model.backend) != (old.base_model, old.backend):
            log.warning("base model or backend changes take effect after a restart "
                        "(systemctl --user restart asmr-daemon)")
        elif new.model.adapter != old.adapter:
            if new.model.adapter is None:
                log.warning("running without an adapter takes effect after a restart")
            else:
                self.use_adapter(new.model.adapter)  # AdapterError: the reload fails, old settings stay
        self.engine.configure(template=new.prompt.template, decoding=new.decoding)
        self.settings = new
        self.translator.settings = new
        if self.daemon is not None:
            self.daemon.apply(new)

    def use_adapter(self, adapter_dir: Path) -> str:
        """Hot switch (CLI, editors, SIGHUP): the base stays loaded; status, systemd's STATUS and
        new translations all use the new adapter. Returns its identity."""
        adapter_dir = Path(os.path.abspath(adapter_dir))
        self._check_provenance(adapter_dir)
        log.info("switching to adapter %s", adapter_dir)
        identity = self.engine.use_adapter(adapter_dir)
        self.model.update(adapter=str(adapter_dir), identity=identity, base_loads=base_load_count())
        if self.daemon is not None:
            self.daemon.announce()
        log.info("adapter %s active (identity %s); the base model was not reloaded", adapter_dir, identity)
        return identity

    def _check_provenance(self, adapter_dir: Path) -> None:
        """A hot switch gets the same provenance check as a start (the shapes are checked on the live model)."""
        model = self.settings.model
        if model.backend == "local" and model.base_model is not None:
            check_provenance(adapter_dir, Path(os.path.abspath(model.base_model)),
                             allow_other_base=model.allow_other_base)

    # -- what status shows ------------------------------------------------------------------------

    def describe_model(self) -> dict[str, Any]:
        return self.model

    def _engine_status(self) -> dict[str, Any]:
        return {"engine": dict(self.engine.stats)}


def describe(runtime: Runtime) -> dict[str, Any]:
    """What ``status`` shows about the model."""
    loaded = runtime.loaded
    return {
        "loaded": True,
        "base_model": str(loaded.base_dir),
        "adapter": str(loaded.adapter_dir) if loaded.adapter_dir else None,
        "identity": runtime.engine.identity,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "memory_bytes": loaded.memory_bytes,
        "base_loads": base_load_count(),
    }


def base_load_count() -> int:
    """How often this process loaded base-model weights (1 in a daemon, whatever the adapter switches)."""
    from asmr_daemon.engine.loading import base_load_count as count

    return count()


def run_daemon(settings: Settings, read_settings: Callable[[], Settings]) -> int:
    """``asmr-daemon serve``: take the state dir, load the model (status ``loading``), serve."""
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
        service = Service.load(settings, read_settings=read_settings)
        try:
            status.update(model=service.model)
            log.info("model loaded: %s on %s (%.2f GiB)", service.model["base_model"], service.model["device"],
                     service.runtime.loaded.memory_bytes / 2**30)
            return service.serve(lock=lock, status=status)
        finally:
            service.close()
    finally:
        lock.release()


def run_standalone(settings: Settings) -> int:
    """``asmr-daemon lsp --standalone``: the model in this process, one editor on stdio."""
    protocol_out = sys.stdout
    # stdout is the protocol channel: anything a library prints while loading goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        service = Service.load(settings, progress=True)
    try:
        sys.stdout = sys.stderr
        return service.serve_stdio(sys.stdin.buffer, protocol_out.buffer)
    finally:
        sys.stdout = protocol_out
        service.close()
