"""Test-only entry point: the real language server over stdio, with ``lsp_fakes.FakeEngine``.

Adds ``fake.state`` (the engine's records) and ``fake.remember`` (put lines in its memory).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from lsp_fakes import FakeEngine  # noqa: E402

from asmr_daemon.config import Settings  # noqa: E402
from asmr_daemon.lsp.server import build_server  # noqa: E402
from asmr_daemon.lsp.translate import Translator  # noqa: E402


def main() -> None:
    engine = FakeEngine()
    server = build_server(Translator(engine, Settings()))

    @server.command("fake.state")
    def state(ls, *args):
        return engine.state()

    @server.command("fake.remember")
    def remember(ls, *sources):
        for source in sources:
            engine.memory[source] = engine._translation(source)
        return len(sources)

    server.start_io()


if __name__ == "__main__":
    main()
