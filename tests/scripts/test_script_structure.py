"""Structure first, text last: SRT and WebVTT structure is found before anything is dialogue,
with or without blank lines between cues; what players repair or skip is reported, not fatal."""

from __future__ import annotations

import pytest

from asmr_daemon.errors import MalformedScriptError
from asmr_daemon.scripts import Document, LineKind, parse_text, render
from asmr_daemon.scripts.model import Repair


def _kinds(doc: Document) -> str:
    return "".join("T" if line.kind is LineKind.TEXT else "." for line in doc.lines)


def _codes(doc: Document) -> list[tuple[int, str]]:
    return [(r.line, r.code) for r in doc.repairs]


def test_srt_cue_without_blank_line_and_coordinates() -> None:
    text = ("1\n00:00:10,500 --> 00:00:13,000  X1:63 X2:223 Y1:43 Y2:58\n<i>お姉ちゃん</i>\n"
            "2\n00:00:15,000 --> 00:00:18,000  X1:53 X2:303 Y1:438 Y2:453\nこんばんは\n")
    doc = parse_text(text, "srt")
    assert _kinds(doc) == "..T..T"
    assert [line.reason for line in doc.lines[:2]] == ["cue number", "timing"]
    assert _codes(doc) == [(4, "cue-not-closed")]
    out = render(doc, {2: "姐姐", 5: "晚上好"})
    assert out.split("\n")[1] == "00:00:10,500 --> 00:00:13,000  X1:63 X2:223 Y1:43 Y2:58"
    assert out.split("\n")[2] == "<i>姐姐</i>"


def test_srt_timing_line_right_after_text_is_structure() -> None:
    doc = parse_text("00:00:01,000 --> 00:00:02,000\nはい\n00:00:02,000 --> 00:00:03,000 X1:1\nいいえ\n", "srt")
    assert _kinds(doc) == ".T.T"


@pytest.mark.parametrize(
    ("timing", "repaired"),
    [
        ("00:29:27,46 --> 00:29:29,83", True),  # 2-digit milliseconds (pysubs2 issue 11)
        ("0:00:01,000 --> 0:00:02,000", True),  # 1-digit hours
        ("  00:00:01,000 --> 00:00:02,000", True),  # whitespace before the timing
        ("00:00:01,000 --> 00:00:02,000", False),
    ],
)
def test_srt_timings_players_read(timing: str, repaired: bool) -> None:
    text = f"1\n{timing}\nおはよう\n"
    doc = parse_text(text, "srt")
    assert _kinds(doc) == "..T"
    assert _codes(doc) == ([(2, "timing-nonstandard")] if repaired else [])
    assert render(doc, {2: "早上好"}).split("\n")[1] == timing


def test_srt_lines_before_the_first_cue_are_copied_and_reported() -> None:
    text = "字幕：ファンサブ\n1\n00:00:01,000 --> 00:00:02,000\nはい\n"
    doc = parse_text(text, "srt", source_name="a.srt")
    assert _kinds(doc) == "...T"
    assert doc.repairs == [Repair(1, "block-copied",
                                  "not part of a cue (before the first timing line); copied as is")]


@pytest.mark.parametrize(
    ("text", "lineno", "problem"),
    [
        ("some text\n00:00:00,500 --> 00:00:07,000", 1, "expected a cue number or timing line"),
        ("some text", 1, "expected a cue number or timing line"),
        ("1\n00:00:07,000 --> 00:00:1d,890\nはい\n", 2, "bad SRT timing line"),
        ("1\n00:00:07,000 --> 00:00:11.890\nはい\n", 2, "'.' before the milliseconds"),
    ],
)
def test_srt_refused_when_nothing_is_usable_or_a_cue_would_be_lost(text: str, lineno: int, problem: str) -> None:
    with pytest.raises(MalformedScriptError) as info:
        parse_text(text, "srt", source_name="cut.srt")
    assert info.value.message.startswith(f"cut.srt: line {lineno}: ")
    assert problem in info.value.message


def test_vtt_cues_without_blank_lines_and_settings() -> None:
    text = ("WEBVTT\n\n00:05:04.080 --> 00:05:05.069 align:start position:0%\nこんにちは\n"
            "00:05:05.069 --> 00:05:06.000 align:start position:0%\nまたね\n")
    doc = parse_text(text, "vtt")
    assert _kinds(doc) == "...T.T"
    assert doc.repairs == []


def test_vtt_header_blocks_and_identifiers_are_structure() -> None:
    text = ("WEBVTT - 台本\nKind: captions\n\nNOTE ここはメモです\n続きのメモ\n\nSTYLE\n::cue { color: red }\n\n"
            "REGION\nid:fred width:40%\n\ncue-1 お姉さん\n0:00:01.000 --> 0:00:02.000 region:fred\nおかえり\n")
    doc = parse_text(text, "vtt")
    assert _kinds(doc) == "." * 14 + "T"
    assert doc.lines[12].reason == "cue identifier"
    assert doc.lines[3].reason == "NOTE block"


def test_vtt_skips_what_browsers_skip_and_reports_it() -> None:
    text = ("WEBVTT\n\n00:00:00.00 --> 00:00:01.000\n短すぎる\n\nテキストだけ\n\n"
            "STYLE\n::cue { color: red }\n\n.bar { width: 18px; }\n\n00:00:02.000 --> 00:00:03.000\nこんにちは\n")
    doc = parse_text(text, "vtt")
    assert _kinds(doc) == "." * 13 + "T"
    assert _codes(doc) == [(3, "cue-skipped"), (6, "block-skipped"), (11, "block-skipped")]
    assert render(doc, {}) == text


def test_vtt_letter_in_a_timestamp_is_refused() -> None:
    text = "WEBVTT\n\n00:00:00.500 --> 00:00:07.000\n一\n\n00:00:07.000 --> 00:00:1d.890\n二\n"
    with pytest.raises(MalformedScriptError) as info:
        parse_text(text, "vtt", source_name="a.vtt")
    assert info.value.message == "a.vtt: line 6: bad WebVTT timing line: '00:00:07.000 --> 00:00:1d.890'"


def test_vtt_whitespace_before_timing_is_valid() -> None:
    doc = parse_text("WEBVTT\n\nid\n \t\x0c00:00:00.000\t-->  00:00:01.000 \n   せりふ\n", "vtt")
    assert _kinds(doc) == "....T"
    assert doc.lines[4].prefix == "   " and doc.lines[4].body == "せりふ"
