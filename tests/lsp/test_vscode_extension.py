"""The VS Code extension builds from a clean copy (`npm ci && npm run compile`) and declares every
setting its code reads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

EXTENSION = Path(__file__).resolve().parents[2] / "lsp" / "vscode"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (tools/setup.sh --test installs it)")
def test_extension_compiles_from_a_clean_copy(tmp_path: Path) -> None:
    work = tmp_path / "vscode"
    shutil.copytree(EXTENSION, work, ignore=shutil.ignore_patterns("node_modules", "out"))
    for step in (["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "compile"]):
        result = subprocess.run(step, cwd=work, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{' '.join(step)} failed:\n{result.stdout}\n{result.stderr}"
    assert (work / "out" / "extension.js").is_file()


def test_package_json_declares_the_settings_the_code_reads() -> None:
    manifest = json.loads((EXTENSION / "package.json").read_text(encoding="utf-8"))
    declared = set(manifest["contributes"]["configuration"]["properties"])
    source = "\n".join(p.read_text(encoding="utf-8") for p in (EXTENSION / "src").glob("*.ts"))
    read = {f"asmr.{key}" for key in re.findall(r'config\.get<[^>]+>\("([^"]+)"\)', source)}
    assert read and read <= declared
