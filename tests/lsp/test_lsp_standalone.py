"""``asmr-daemon lsp --standalone``: no daemon; the stdio server loads the tiny model itself."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pytest_lsp import make_test_lsp_client
from real_daemon import Script, close, hover, initialize, open_doc

pytestmark = pytest.mark.slow


async def test_standalone_hover_is_the_expected_translation(tiny_kit, tmp_path) -> None:
    script = Script.of(tiny_kit)
    client = make_test_lsp_client()
    await client.start_io(sys.executable, "-m", "asmr_daemon", "lsp", "--standalone", "--base-model",
                          str(tiny_kit.base_dir), "--adapter", str(tiny_kit.adapter_dir),
                          "--state-dir", str(tmp_path / "state"), env=dict(os.environ))
    try:
        await initialize(client)
        uri = open_doc(client, script.text)
        line = script.translated()[0]
        assert await hover(client, uri, line) == script.expected[line]
    finally:
        await close(client)


def test_standalone_without_a_model_says_what_to_do() -> None:
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "lsp", "--standalone"], capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 1
    assert "no base model configured" in result.stderr and "--base-model" in result.stderr
    assert result.stdout == ""  # stdout is the protocol channel: nothing else may go there
