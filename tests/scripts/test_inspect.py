"""``asmr-daemon inspect``: how each file is read and exactly what would reach the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asmr_daemon.cli import main

SRT = "1\n00:00:01,000 --> 00:00:02,000\n<i>おかえり</i>なさい\n2\n00:00:02,000 --> 00:00:03,000 X1:1\nちゅっ\n"


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    good = tmp_path / "a.srt"
    good.write_text(SRT, encoding="utf-8")
    bad = tmp_path / "b.srt"
    bad.write_bytes("今天的天气很好，我们一起去公园散步吧。晚上回家以后再看电影。".encode("gb2312"))
    return good, bad


def test_json_form(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = files
    assert main(["inspect", "--json", str(good), str(bad)]) == 1  # one file is refused
    report = json.loads(capsys.readouterr().out)
    assert report["version"] == 1
    first, second = report["files"]
    assert {k: first[k] for k in ("path", "ok", "error", "format", "encoding", "bom", "newline", "final_newline")} == {
        "path": str(good), "ok": True, "error": None, "format": "srt", "encoding": "utf-8", "bom": False,
        "newline": "lf", "final_newline": True}
    assert first["summary"] == {"lines": 6, "translate": 1, "keep": 5, "segments": 1}
    assert [(line["line"], line["decision"], line["reason"]) for line in first["lines"]] == [
        (1, "keep", "cue number"), (2, "keep", "timing"), (3, "translate", "words"), (4, "keep", "cue number"),
        (5, "keep", "timing"), (6, "keep", "sound")]
    assert first["lines"][2] == {"line": 3, "decision": "translate", "reason": "words", "text": "<i>おかえり</i>なさい",
                                 "segments": ["おかえりなさい"], "kept_before": "", "kept_after": "",
                                 "dropped": ["</i>", "<i>"]}
    assert first["repairs"] == [{"line": 4, "code": "cue-not-closed",
                                 "message": "no blank line before this cue number; read as a new cue"}]
    assert first["warnings"] == [{"line": 3, "message": "markup between the words is not carried into the "
                                                        "translation: </i> <i>"}]
    assert second["ok"] is False and second["error"]["code"] == "encoding"
    assert "looks like Chinese (GB2312)" in second["error"]["message"]


def test_text_form(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    good, _ = files
    assert main(["inspect", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (f"{good}: srt, utf-8, lf line endings; 6 lines: 1 to translate (1 segments for the model), "
                      "5 kept")
    assert out[3].split() == ["3", "translate", "words", "<i>おかえり</i>なさい"]
    assert out[4].split() == ["->", "おかえりなさい"]
    assert "  repair, line 4: cue-not-closed: no blank line before this cue number; read as a new cue" in out
