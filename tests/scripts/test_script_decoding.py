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
    "dialogue.iso2022jp.txt": ("iso2022_jp", False, "\n"),
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


def test_iso_2022_jp_is_read_not_taken_for_ascii(fixtures: Path, tmp_path: Path) -> None:
    from asmr_daemon.scripts import write_translation

    doc = read_script(fixtures / "dialogue.iso2022jp.txt")
    assert doc.encoding == "iso2022_jp"
    assert doc.lines[0].raw == (fixtures / "dialogue.txt").read_text(encoding="utf-8").split("\n")[0]
    dest = write_translation(doc, {2: "訳文"}, tmp_path / "out.txt", encoding="original")
    assert dest.read_bytes().decode("iso2022_jp").split("\n")[2] == "訳文"
    with pytest.raises(EncodingError, match="cannot write '欢' .* in the encoding iso2022_jp"):
        write_translation(doc, {2: "欢迎回来"}, tmp_path / "out.txt", encoding="original")


@pytest.mark.parametrize(("bom", "name"), [(codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE")])
def test_utf32_is_refused_as_utf32_not_read_as_utf16(bom: bytes, name: str) -> None:
    codec = "utf-32-le" if name.endswith("LE") else "utf-32-be"
    with pytest.raises(EncodingError) as info:
        decode_bytes(bom + "おはよう\n".encode(codec), source_name="a.srt")
    assert info.value.code is InputCode.ENCODING
    assert info.value.message.startswith(f"a.srt: the file is {name} (it starts with the {name} byte order mark)")
    assert info.value.hint == "save it as UTF-8"


CHINESE = "今天的天气很好，我们一起去公园散步吧。晚上回家以后再看电影。"
KOREAN = "오늘은 날씨가 좋네요. 같이 공원에 산책하러 가요. 저녁에는 영화를 봐요."


@pytest.mark.parametrize(
    ("text", "codec", "looks_like"),
    [(CHINESE, "gb2312", "Chinese (GB2312)"), ("今天的天氣很好，我們一起去公園散步吧。晚上回家以後再看電影。", "big5",
                                               "Chinese (Big5)"), (KOREAN, "euc_kr", "Korean (EUC-KR)")],
)
def test_other_languages_are_refused_saying_what_they_look_like(text: str, codec: str, looks_like: str) -> None:
    with pytest.raises(EncodingError) as info:
        decode_bytes(text.encode(codec), source_name="a.srt")
    assert info.value.message.startswith(f"a.srt: this looks like {looks_like}, not Japanese: ")
    assert info.value.hint == "only Japanese scripts are translated; if it is Japanese, save it as UTF-8"


def test_kanji_heavy_japanese_is_still_japanese() -> None:
    text = "第一章　東京都内某所。夜十時過ぎ、雨が降っている。主人公は駅前で待っている。"
    for codec in ("cp932", "euc_jp"):
        assert decode_bytes(text.encode(codec), source_name="a.txt").text == text


def test_utf16_without_bom_is_named() -> None:
    with pytest.raises(EncodingError) as info:
        decode_bytes("おはよう、お兄ちゃん\n".encode("utf-16-le"), source_name="a.txt")
    assert info.value.message == "a.txt: looks like UTF-16-LE text without a byte order mark"
