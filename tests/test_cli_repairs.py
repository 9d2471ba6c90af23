"""``translate`` on a subtitle that players repair: the file is translated, structure kept byte
for byte, and each repair printed with its line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kit import Kit

pytestmark = pytest.mark.slow


def test_translate_prints_repairs_and_keeps_structure(tiny_kit: Kit, tmp_path: Path) -> None:
    ja = [line for line in tiny_kit.script.read_text(encoding="utf-8").split("\n") if line][:3]
    zh = [line for line in tiny_kit.expected.read_text(encoding="utf-8").split("\n") if line][:3]
    timings = ["00:00:01,00 --> 00:00:02,50", "00:00:03,000 --> 00:00:04,000  X1:63 X2:223 Y1:43 Y2:58",
               "0:00:05,000 --> 0:00:06,000"]
    # the second cue is not closed by a blank line before the third cue number
    src = tmp_path / "cues.srt"
    src.write_text(f"1\n{timings[0]}\n{ja[0]}\n\n2\n{timings[1]}\n{ja[1]}\n3\n{timings[2]}\n{ja[2]}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "translate", str(src), "-o", str(tmp_path / "out"),
                             "--base-model", str(tiny_kit.base_dir), "--adapter", str(tiny_kit.adapter_dir),
                             "--device", "cpu", "--in-process"],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert result.returncode == 0, result.stderr
    out = (tmp_path / "out" / "cues.zh.srt").read_text(encoding="utf-8")
    assert out == f"1\n{timings[0]}\n{zh[0]}\n\n2\n{timings[1]}\n{zh[1]}\n3\n{timings[2]}\n{zh[2]}\n"
    stderr = " ".join(result.stderr.split())
    assert "3 lines to review" in stderr
    assert "line 2: timing not written HH:MM:SS,mmm --> HH:MM:SS,mmm; read as players do, kept as written " \
           "(timing-nonstandard)" in stderr
    assert "line 8: no blank line before this cue number; read as a new cue (cue-not-closed)" in stderr
    assert "line 9: timing not written" in stderr
