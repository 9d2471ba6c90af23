"""Parsing txt/srt/vtt/lrc into lines and rendering them back exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmr_daemon.errors import MalformedScriptError
from asmr_daemon.scripts import (
    Document,
    LineKind,
    format_for_path,
    parse_text,
    read_script,
    render,
)

ROUND_TRIP = [
    "dialogue.txt",
    "dialogue.utf8bom.txt",
    "dialogue.utf16le.txt",
    "dialogue.utf16be.txt",
    "dialogue.sjis.txt",
    "dialogue.eucjp.txt",
    "dialogue.iso2022jp.txt",
    "dialogue.crlf.txt",
    "sample.srt",
    "sample.vtt",
    "sample.lrc",
]


def _kinds(doc: Document) -> str:
    return "".join("T" if line.kind is LineKind.TEXT else "." for line in doc.lines)


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_round_trip_identity(fixtures: Path, segmenter: object, name: str) -> None:
    from asmr_daemon.scripts import decode_bytes

    path = fixtures / name
    decoded = decode_bytes(path.read_bytes(), source_name=name)
    doc = read_script(path)
    assert render(doc, {}) == decoded.text
    identity = {line.index: line.body for line in doc.text_lines}
    assert render(doc, identity) == decoded.text
    assert len(doc.lines) == len(decoded.text.splitlines())
    assert doc.newline == decoded.newline
    for line in doc.lines:
        if line.kind is LineKind.TEXT:
            assert line.prefix + line.body + line.suffix == line.raw
            assert "".join(line.segments) == line.body and line.segments
        else:
            assert line.body == "" and line.segments == ()


def test_dialogue_classification(fixtures: Path) -> None:
    doc = read_script(fixtures / "dialogue.txt")
    assert _kinds(doc) == "TTTTTTT..T.TT.T.T.TT.T.T.TTT.T"
    assert doc.lines[4].suffix == "  "  # trailing spaces kept verbatim
    assert doc.lines[23].prefix == "\u3000"  # full-width indentation kept verbatim
    assert doc.lines[2].segments == (
        "おかえりなさい。",
        "今日もお仕事、本当にお疲れさまでした。",
        "ほら、こっちに来て、ゆっくり横になってくださいね。",
    )
    assert doc.final_newline


def test_srt_structure(fixtures: Path) -> None:
    doc = read_script(fixtures / "sample.srt")
    assert doc.newline == "\r\n"
    assert _kinds(doc) == "..T...TT.......T...T"
    assert [line.body for line in doc.text_lines] == [
        "（囁き）おかえりなさい。",
        "今日もお仕事、本当にお疲れさまでした。",
        "ゆっくり休んでくださいね。",
        "「いい子、いい子」",
        "ちゅっ……えへへ、びっくりしました？",
    ]


def test_vtt_structure(fixtures: Path) -> None:
    doc = read_script(fixtures / "sample.vtt")
    # header, NOTE (even with Japanese in it), STYLE, identifiers, timings: all verbatim
    assert _kinds(doc) == ".............T..TT.......T"
    assert doc.lines[17].prefix == "  " and doc.lines[17].body == "ゆっくり休んでくださいね。"
    assert doc.lines[21].kind is LineKind.VERBATIM  # ちゅっ


def test_lrc_structure(fixtures: Path) -> None:
    doc = read_script(fixtures / "sample.lrc")
    assert not doc.final_newline
    assert _kinds(doc) == ".....TT..TT"
    assert doc.lines[6].prefix == "[00:05.50][01:20.00]"
    assert doc.lines[6].body == "いい子、いい子。"
    assert doc.lines[9].prefix == "[00:15.00] "
    translated = render(doc, {6: "乖孩子，乖孩子。"})
    assert translated.split("\n")[6] == "[00:05.50][01:20.00]乖孩子，乖孩子。"


@pytest.mark.parametrize(
    ("text", "lineno", "bad"),
    [
        ("1\n00:00:01.000 --> 00:00:02,000\nはい\n", 2, "00:00:01.000 --> 00:00:02,000"),
        ("1\n00:61:00,000 --> 00:62:00,000\nはい\n", 2, "00:61:00,000 --> 00:62:00,000"),
        ("1\nこんにちは\n", 2, "こんにちは"),
        ("1\n00:00:01,000 --> 00:00:02,000\nはい\n\n2\n\n", 6, ""),
        ("こんにちは\n1\n", 3, ""),
    ],
)
def test_srt_malformed(text: str, lineno: int, bad: str) -> None:
    with pytest.raises(MalformedScriptError) as info:
        parse_text(text, "srt", source_name="cut.srt")
    assert info.value.message.startswith(f"cut.srt: line {lineno}: ")
    assert info.value.message.endswith(repr(bad))
    assert "00:00:01,000 --> 00:00:04,500" in (info.value.hint or "")


def test_srt_without_numbers_and_with_paragraph_break_is_accepted() -> None:
    text = "00:00:01,000 --> 00:00:02,000\nはい、どうぞ。\n\n続きの行です。\n"
    doc = parse_text(text, "srt")
    assert _kinds(doc) == ".T.T"
    assert render(doc, {}) == text


@pytest.mark.parametrize(
    ("text", "lineno"),
    [
        ("00:00:01.000 --> 00:00:02.000\nこんにちは\n", 1),
        ("WEBVTTX\n", 1),
        ("WEBVTT\n\n00:00:01,000 --> 00:00:02.000\nこんにちは\n", 3),
        ("WEBVTT\n\n00:00:01.000 --> 00:00:61.000\nこんにちは\n", 3),
        ("WEBVTT\n\nintro\nこんにちは\n", 3),  # nothing but a block without timing: nothing usable
        ("WEBVTT\n\nintro\n\n", 3),
    ],
)
def test_vtt_malformed(text: str, lineno: int) -> None:
    with pytest.raises(MalformedScriptError) as info:
        parse_text(text, "vtt", source_name="cut.vtt")
    assert info.value.message.startswith(f"cut.vtt: line {lineno}: ")


@pytest.mark.parametrize("name", ["bad/bad_timing.srt", "bad/no_header.vtt"])
def test_malformed_fixtures(fixtures: Path, name: str) -> None:
    path = fixtures / name
    with pytest.raises(MalformedScriptError) as info:
        read_script(path)
    line = 6 if name.endswith(".srt") else 1
    assert info.value.message.startswith(f"{path}: line {line}: ")
    assert "00:00:0" in info.value.message


def test_final_newline_and_empty_lines() -> None:
    for text in ["a\n\nb", "a\n\nb\n", "\nおはよう\n\n", "おはよう\r\nこんにちは\r\n"]:
        assert render(parse_text(text, "txt"), {}) == text


def test_mixed_newlines_keep_each_lines_own() -> None:
    text = "一行目\r\n二行目\r\n三行目\n四行目\r五行目"
    doc = parse_text(text, "txt")
    assert doc.newline == "\r\n"  # the dominant style, for writers asked to normalise
    assert render(doc, {}) == text
    assert render(doc, {1: "第二行"}) == "一行目\r\n第二行\r\n三行目\n四行目\r五行目"
    assert render(doc, {}, newline="\n") == "一行目\n二行目\n三行目\n四行目\n五行目"


def test_only_cr_lf_split_lines() -> None:
    doc = parse_text("おはよう\u2028こんにちは\x0cさようなら\n", "txt")
    assert len(doc.lines) == 1


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.txt", "txt"), ("b.SRT", "srt"), ("c.vtt", "vtt"), ("d.lrc", "lrc"), ("e.md", "txt"), ("noext", "txt")],
)
def test_format_for_path(name: str, fmt: str) -> None:
    assert format_for_path(Path("inbox") / name) == fmt
    assert format_for_path(name) == fmt


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown script format"):
        parse_text("x", "rtf")
