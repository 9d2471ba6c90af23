"""Scripts as documents: .docx and text-layer .pdf are read in reading order into text lines,
translated like a .txt and written as NAME.zh.txt; PDFs without usable text are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from docmaker import make_docx, make_pdf

from asmr_daemon.errors import InputCode, InputError
from asmr_daemon.scripts import LineKind, output_name, read_script, write_translation


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    path = make_docx(tmp_path / "台本.docx", ["【トラック1　耳かき】", "（囁き）おかえりなさい。", "ふー……"],
                     table=[["姉", "今日もお疲れさま"], ["妹", "ちゅっ"]])
    doc = read_script(path)
    assert doc.format == "docx" and doc.encoding == "utf-8"
    assert [line.raw for line in doc.lines] == ["【トラック1　耳かき】", "（囁き）おかえりなさい。", "ふー……",
                                                "姉", "今日もお疲れさま", "妹", "ちゅっ"]
    assert [line.kind is LineKind.TEXT for line in doc.lines] == [True, True, False, True, True, True, False]
    assert output_name(path.name) == "台本.zh.txt"
    dest = write_translation(doc, {0: "【音轨1　掏耳朵】", 1: "（耳语）欢迎回来。"}, tmp_path / output_name(path.name))
    assert dest.read_text(encoding="utf-8") == "【音轨1　掏耳朵】\n（耳语）欢迎回来。\nふー……\n姉\n今日もお疲れさま\n妹\nちゅっ\n"


def test_docx_bilingual_layout(tmp_path: Path) -> None:
    doc = read_script(make_docx(tmp_path / "a.docx", ["おかえりなさい。"]))
    dest = write_translation(doc, {0: "欢迎回来。"}, tmp_path / "a.zh.txt", bilingual=True)
    assert dest.read_text(encoding="utf-8") == "おかえりなさい。\n欢迎回来。\n"


def test_text_pdf_in_reading_order(tmp_path: Path) -> None:
    lines = ["【トラック1】", "おかえりなさい、お兄ちゃん。", "今日もお疲れさま。", "ふー……"]
    doc = read_script(make_pdf(tmp_path / "台本.pdf", lines))
    assert doc.format == "pdf"
    assert [line.raw for line in doc.lines] == lines
    assert [line.index for line in doc.text_lines] == [0, 1, 2]
    assert output_name("台本.pdf") == "台本.zh.txt"


@pytest.mark.parametrize(
    ("kwargs", "code", "message", "hint"),
    [
        ({"text_layer": False}, InputCode.EMPTY, "the PDF has no text layer", "run OCR on it first"),
        ({"vertical": True}, InputCode.MALFORMED, "page 1 has vertical text (縦書き); the PDF text extractor "
         "cannot put its columns in reading order", "export the script as .docx or .txt"),
    ],
)
def test_pdf_without_usable_text_is_refused(tmp_path: Path, kwargs: dict[str, bool], code: InputCode,
                                            message: str, hint: str) -> None:
    path = make_pdf(tmp_path / "scan.pdf", ["おかえりなさい", "お兄ちゃん"], **kwargs)
    with pytest.raises(InputError) as info:
        read_script(path)
    assert info.value.code is code
    assert info.value.message.startswith(f"{path}: {message}")
    assert hint in (info.value.hint or "")


def test_broken_documents_are_refused(tmp_path: Path) -> None:
    for name in ("bad.docx", "bad.pdf"):
        path = tmp_path / name
        path.write_bytes(b"this is not a document at all")
        with pytest.raises(InputError, match=f"{name}: not a readable"):
            read_script(path)
