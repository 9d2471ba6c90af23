"""decode_bytes and read_script: encodings, newlines and the errors for bad inputs."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from asmr_daemon.errors import (
    BinaryFileError,
    EmptyFileError,
    EncodingError,
    FileTooLargeError,
    InputCode,
)
from asmr_daemon.scripts import decode_bytes, read_script

VARIANTS = {
    "dialogue.txt": ("utf-8", False, "\n"),
    "dialogue.utf8bom.txt": ("utf-8-sig", True, "\n"),
    "dialogue.utf16le.txt": ("utf-16-le", True, "\n"),
    "dialogue.utf16be.txt": ("utf-16-be", True, "\n"),
    "dialogue.sjis.txt": ("cp932", False, "\n"),
    "dialogue.eucjp.txt": ("euc_jp", False, "\n"),
    "dialogue.crlf.txt": ("utf-8", False, "\r\n"),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_decodes_to_the_same_text(fixtures: Path, name: str) -> None:
    master = (fixtures / "dialogue.txt").read_bytes().decode("utf-8")
    decoded = decode_bytes((fixtures / name).read_bytes(), source_name=name)
    encoding, bom, newline = VARIANTS[name]
    assert (decoded.encoding, decoded.bom, decoded.newline) == (encoding, bom, newline)
    assert decoded.text.replace("\r\n", "\n") == master
    assert not decoded.text.startswith("\ufeff")


@pytest.mark.parametrize(
    "text", ["あいう", "おはよう", "耳かき", "大丈夫", "おやすみなさい", "カタカナ", "ふー……ちゅっ"]
)
def test_euc_jp_that_is_also_valid_cp932_is_read_as_euc_jp(text: str) -> None:
    data = text.encode("euc_jp")
    data.decode("cp932")  # the ambiguity: these bytes are valid CP932 too (half-width katakana)
    decoded = decode_bytes(data, source_name="x.txt")
    assert (decoded.encoding, decoded.text) == ("euc_jp", text)


@pytest.mark.parametrize("text", ["おはよう", "耳かきの時間です。", "（囁き）ありがとう"])
def test_cp932_is_read_as_cp932(text: str) -> None:
    decoded = decode_bytes(text.encode("cp932"), source_name="x.txt")
    assert (decoded.encoding, decoded.text) == ("cp932", text)


def test_ascii_is_utf8() -> None:
    decoded = decode_bytes(b"Track 1\r\nHello\r\n", source_name="x.txt")
    assert (decoded.encoding, decoded.newline, decoded.bom) == ("utf-8", "\r\n", False)


def test_dominant_newline_and_cr_only() -> None:
    assert decode_bytes(b"a\rb\rc\r\nd", source_name="x").newline == "\r"
    assert decode_bytes(b"single line", source_name="x").newline == "\n"


@pytest.mark.parametrize("data", [b"", codecs.BOM_UTF8, b" \n\t\r\n", "\u3000\n".encode(), codecs.BOM_UTF16_LE + " \n".encode("utf-16-le")])
def test_empty(data: bytes) -> None:
    with pytest.raises(EmptyFileError) as info:
        decode_bytes(data, source_name="inbox/a.txt")
    assert "inbox/a.txt" in info.value.message
    assert info.value.code is InputCode.EMPTY


@pytest.mark.parametrize(
    "data",
    [b"hello\x00world", codecs.BOM_UTF8 + b"a\x00b", b"\x01\x02\x03\x04 text" * 3, "台本\x07\x08\x01\x02".encode()],
)
def test_binary(data: bytes) -> None:
    with pytest.raises(BinaryFileError) as info:
        decode_bytes(data, source_name="x.txt")
    assert info.value.message == "x.txt: looks like a binary file, not a text script"


def test_utf16_with_bom_may_contain_nul_bytes() -> None:
    data = codecs.BOM_UTF16_LE + "Hello".encode("utf-16-le")  # every other byte is NUL
    assert decode_bytes(data, source_name="x").text == "Hello"


def test_truncated_utf16_is_an_encoding_error() -> None:
    data = codecs.BOM_UTF16_BE + "こんにちは".encode("utf-16-be")[:-1]
    with pytest.raises(EncodingError, match="byte order mark"):
        decode_bytes(data, source_name="x.txt")


def test_undecodable_names_encodings_and_offset() -> None:
    data = b"OK so far \xff\xfe\xfd\xfc"
    with pytest.raises(EncodingError) as info:
        decode_bytes(data, source_name="song.txt")
    msg = info.value.message
    assert msg.startswith("song.txt: ")
    for name in ("UTF-8", "Shift_JIS/CP932", "EUC-JP", "offset 10"):
        assert name in msg
    assert info.value.hint == "save it as UTF-8"


# --- bad fixture files through read_script ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "error", "fragment"),
    [
        ("bad/empty.txt", EmptyFileError, "empty"),
        ("bad/binary.txt", BinaryFileError, "looks like a binary file, not a text script"),
        ("bad/image.dat", BinaryFileError, "looks like a binary file, not a text script"),
        ("bad/latin1.txt", EncodingError, "first invalid UTF-8 byte at offset 3"),
    ],
)
def test_bad_fixture(fixtures: Path, name: str, error: type[Exception], fragment: str) -> None:
    path = fixtures / name
    with pytest.raises(error) as info:
        read_script(path)
    assert str(path) in info.value.message
    assert fragment in info.value.message


def test_too_large_checked_before_reading(fixtures: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fixtures / "dialogue.txt"
    size = path.stat().st_size

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened although it is too large")

    monkeypatch.setattr(Path, "open", no_reading)
    with pytest.raises(FileTooLargeError) as info:
        read_script(path, max_bytes=100)
    assert info.value.message == f"{path}: the file is {size} bytes, over the limit of 100 bytes"
    assert "max_file_bytes" in (info.value.hint or "")
    assert info.value.code is InputCode.TOO_LARGE


def test_directory_is_not_a_script(tmp_path: Path) -> None:
    with pytest.raises(Exception) as info:
        read_script(tmp_path)
    assert getattr(info.value, "code", None) is InputCode.NOT_REGULAR
