"""render / write_translation / atomic_write_bytes / output_name."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from asmr_daemon.errors import EncodingError, MalformedScriptError
from asmr_daemon.scripts import (
    LineKind,
    atomic_write_bytes,
    output_name,
    parse_text,
    read_script,
    render,
    write_translation,
)


def _dir_listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def test_translations_land_on_their_lines(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "dialogue.txt")
    translations = {0: "【音轨1　掏耳朵】", 2: "欢迎回来。", 23: "晚安。"}
    dest = write_translation(doc, translations, tmp_path / "out" / "dialogue.zh.txt")
    assert dest == tmp_path / "out" / "dialogue.zh.txt"
    out = dest.read_bytes().decode("utf-8").split("\n")
    src = (fixtures / "dialogue.txt").read_text(encoding="utf-8").split("\n")
    assert len(out) == len(src)
    assert out[0] == "【音轨1　掏耳朵】"
    assert out[2] == "欢迎回来。"
    assert out[23] == "\u3000晚安。"  # indentation (prefix) kept
    assert out[7] == "ふー……"  # verbatim line untouched
    assert out[4] == src[4]  # missing translation keeps the source
    assert [i for i in range(len(src)) if out[i] != src[i]] == [0, 2, 23]


def test_newlines_in_a_translation_become_spaces(fixtures: Path) -> None:
    doc = read_script(fixtures / "dialogue.txt")
    out = render(doc, {2: "欢迎回来。\n辛苦了。\r\n躺下吧。"})
    assert out.split("\n")[2] == "欢迎回来。 辛苦了。 躺下吧。"
    assert len(out.split("\n")) == len(render(doc, {}).split("\n"))


def test_suffix_kept_after_translation(fixtures: Path) -> None:
    doc = read_script(fixtures / "dialogue.txt")
    assert render(doc, {4: "别紧张哦？"}).split("\n")[4] == "别紧张哦？  "


def test_bilingual_txt(fixtures: Path, tmp_path: Path) -> None:
    doc = parse_text("【トラック1】\n\n　おやすみなさい。  \nちゅっ\n", "txt")
    out = render(doc, {0: "【音轨1】", 2: "晚安。"}, bilingual=True)
    assert out == "【トラック1】\n【音轨1】\n\n　おやすみなさい。  \n　晚安。\nちゅっ\n"
    dest = write_translation(doc, {0: "【音轨1】", 2: "晚安。"}, tmp_path / "b.zh.txt", bilingual=True)
    assert dest.read_text(encoding="utf-8") == out


@pytest.mark.parametrize("name", ["sample.srt", "sample.vtt", "sample.lrc"])
def test_bilingual_only_for_txt(fixtures: Path, tmp_path: Path, name: str) -> None:
    doc = read_script(fixtures / name)
    with pytest.raises(ValueError, match="only supported for txt"):
        write_translation(doc, {}, tmp_path / name, bilingual=True)
    assert _dir_listing(tmp_path) == []


def test_crlf_preserved(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "dialogue.crlf.txt")
    data = write_translation(doc, {2: "欢迎回来。"}, tmp_path / "a.zh.txt").read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") == len(doc.lines)
    assert data.decode("utf-8").split("\r\n")[2] == "欢迎回来。"


def test_newline_override(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "dialogue.crlf.txt")
    data = write_translation(doc, {}, tmp_path / "a.txt", newline="lf").read_bytes()
    assert b"\r" not in data
    assert data == (fixtures / "dialogue.txt").read_bytes()
    data = write_translation(read_script(fixtures / "dialogue.txt"), {}, tmp_path / "b.txt", newline="crlf").read_bytes()
    assert data == (fixtures / "dialogue.crlf.txt").read_bytes()
    with pytest.raises(ValueError):
        write_translation(doc, {}, tmp_path / "c.txt", newline="mac")


def test_srt_translation_keeps_structure(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "sample.srt")
    first_text = doc.text_lines[0].index
    out = write_translation(doc, {first_text: "（耳语）欢迎回来。"}, tmp_path / "s.zh.srt").read_bytes().decode()
    lines = out.split("\r\n")
    assert lines[:4] == ["1", "00:00:01,000 --> 00:00:04,500", "（耳语）欢迎回来。", ""]
    assert out.endswith("\r\n")
    reparsed = parse_text(out, "srt")
    assert [line.kind for line in reparsed.lines][:2] == [LineKind.VERBATIM, LineKind.VERBATIM]


def test_default_output_is_utf8_without_bom(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "dialogue.sjis.txt")
    data = write_translation(doc, {0: "【音轨1　掏耳朵】"}, tmp_path / "a.txt").read_bytes()
    assert not data.startswith(codecs.BOM_UTF8)
    assert data.decode("utf-8").startswith("【音轨1　掏耳朵】\n")


@pytest.mark.parametrize(
    ("name", "bom"),
    [("dialogue.utf16le.txt", codecs.BOM_UTF16_LE), ("dialogue.utf16be.txt", codecs.BOM_UTF16_BE), ("dialogue.utf8bom.txt", codecs.BOM_UTF8)],
)
def test_original_encoding_with_bom(fixtures: Path, tmp_path: Path, name: str, bom: bytes) -> None:
    doc = read_script(fixtures / name)
    assert write_translation(doc, {}, tmp_path / "same.txt", encoding="original").read_bytes() == (fixtures / name).read_bytes()
    data = write_translation(doc, {2: "欢迎回来。"}, tmp_path / "zh.txt", encoding="original").read_bytes()
    assert data.startswith(bom) and not data[len(bom) :].startswith(bom)
    back = read_script(tmp_path / "zh.txt")
    assert back.encoding == doc.encoding
    assert back.lines[2].raw == "欢迎回来。"


def test_original_cp932_fails_clearly_with_chinese(fixtures: Path, tmp_path: Path) -> None:
    doc = read_script(fixtures / "dialogue.sjis.txt")
    out_dir = tmp_path / "outbox"
    out_dir.mkdir()
    # 欢 (simplified) does not exist in CP932
    with pytest.raises(EncodingError) as info:
        write_translation(doc, {0: "【音轨1】", 2: "欢迎回来。"}, out_dir / "a.zh.txt", encoding="original")
    assert info.value.message == "a.zh.txt: cannot write '轨' (line 1) in the encoding cp932"
    assert "UTF-8" in (info.value.hint or "")
    assert _dir_listing(out_dir) == []
    # Japanese-only output is fine in the original encoding
    same = write_translation(doc, {}, out_dir / "a.txt", encoding="original").read_bytes()
    assert same == (fixtures / "dialogue.sjis.txt").read_bytes()


def test_failed_replace_leaves_destination_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "out.zh.txt"
    dest.write_bytes(b"old contents\n")
    doc = parse_text("おはよう\n", "txt")

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_translation(doc, {0: "早上好"}, dest)
    assert dest.read_bytes() == b"old contents\n"
    assert _dir_listing(tmp_path) == ["out.zh.txt"]


def test_failed_write_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write_bytes(tmp_path / "state.json", b"{}")
    assert _dir_listing(tmp_path) == []


def test_atomic_write_creates_parents_and_replaces(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "state.json"
    atomic_write_bytes(dest, b"one")
    atomic_write_bytes(dest, b"two")
    assert dest.read_bytes() == b"two"
    assert _dir_listing(dest.parent) == ["state.json"]
    assert dest.stat().st_mode & 0o777 == 0o600  # private by default (DESIGN §11)
    atomic_write_bytes(tmp_path / "shared.txt", b"x", mode=0o640)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o640 & ~_umask()


def test_temp_file_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen.append(Path(src).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write_bytes(tmp_path / "x.zh.txt", b"data")
    assert len(seen) == 1 and seen[0].startswith(".x.zh.txt.tmp-")


def test_bad_input_writes_nothing(fixtures: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "outbox"
    with pytest.raises(MalformedScriptError):
        doc = read_script(fixtures / "bad" / "bad_timing.srt")
        write_translation(doc, {}, out_dir / "bad_timing.zh.srt")
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("name", "expected"),
    [("a.txt", "a.zh.txt"), ("b.srt", "b.zh.srt"), ("noext", "noext.zh"), ("x.y.lrc", "x.y.zh.lrc"), (".hidden", ".hidden.zh")],
)
def test_output_name(name: str, expected: str) -> None:
    assert output_name(name) == expected


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
