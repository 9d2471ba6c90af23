"""Bytes -> text for the encodings Japanese scripts actually arrive in.

Order of evidence, strongest first:

1. A BOM (UTF-8, UTF-16 LE/BE) decides outright. A UTF-32 BOM (whose LE form starts with the
   UTF-16 LE one) is recognised first and refused for what it is: no editor writes scripts in
   UTF-32, and reading it as UTF-16 would be garbage.
2. NUL bytes without a UTF-16 BOM, or many control bytes, mean a binary file: refuse it rather
   than "translate" mojibake.
3. ISO-2022-JP (7-bit JIS: old scripts, mail) announces itself with escape sequences
   (``ESC $ B``...); such bytes are also valid ASCII/UTF-8, so it is tried first.
4. Strict UTF-8: random Shift_JIS/EUC-JP bytes almost never form valid UTF-8, so success is
   conclusive.
5. CP932 (Windows Shift_JIS) and EUC-JP, each strictly. Many byte strings are valid in both
   (EUC-JP hiragana bytes read as CP932 half-width katakana, for instance), so when both decode
   we keep the one whose text looks more like Japanese (``plausibility``). Ties go to CP932,
   the more common of the two in the wild. Known blind spot: a CP932 file written only in
   half-width katakana can read as EUC-JP kanji; scripts are written in full-width kana.
6. Japanese text has kana. Legacy bytes that read as kanji without any kana are another
   language's encoding (GB2312/GBK and Big5 Chinese, EUC-KR Korean, which share byte ranges
   with EUC-JP and Shift_JIS): refused, saying which one it looks like, never misread.

No chardet: it is slow on long files, guesses among encodings we never see, and the rule above
is exact for the ones we do.
"""

from __future__ import annotations

import codecs
import unicodedata
from dataclasses import dataclass

from asmr_daemon.errors import BinaryFileError, EmptyFileError, EncodingError

# Control bytes that never occur in a text script (tab, LF, CR, FF, ESC and SUB are allowed:
# old editors leave form feeds and a DOS end-of-file SUB behind).
_CONTROL_BYTES = bytes(b for b in range(0x20) if b not in (0x09, 0x0A, 0x0C, 0x0D, 0x1A, 0x1B)) + b"\x7f"
_ALLOWED_CONTROL_CHARS = frozenset("\t\n\x0c\r\x1a\x1b")
_MAX_CONTROL_RATIO = 0.05

_UTF32_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32 LE"), (codecs.BOM_UTF32_BE, "UTF-32 BE"))
_ISO2022_ESCAPES = (b"\x1b$B", b"\x1b$@", b"\x1b(J", b"\x1b(I", b"\x1b$(D", b"\x1b$(O", b"\x1b$(Q")
_ISO2022_CODECS = ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004")
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_LEGACY = ("cp932", "euc_jp")
_TRIED = "UTF-8, UTF-16 with BOM, Shift_JIS/CP932, EUC-JP, ISO-2022-JP"
_HINT_UTF8 = "save it as UTF-8"


@dataclass(frozen=True, slots=True)
class Decoded:
    """Decoded text (BOM removed, newlines untouched) and how it was stored."""

    text: str
    encoding: str
    newline: str
    bom: bool


def detect_newline(text: str) -> str:
    """The dominant line ending (``"\\n"`` when the text has none)."""
    crlf = text.count("\r\n")
    cr = text.count("\r") - crlf
    lf = text.count("\n") - crlf
    best = max((lf, "\n"), (crlf, "\r\n"), (cr, "\r"), key=lambda pair: pair[0])
    return best[1] if best[0] > 0 else "\n"


def decode_bytes(data: bytes, *, source_name: str) -> Decoded:
    """Decode a script's bytes, or raise the InputError that says why it is not a script."""
    if not data:
        raise EmptyFileError(f"{source_name}: the file is empty (0 bytes)", "put the script text in the file")

    text, encoding, bom = _decode(data, source_name)

    if not text.strip():
        raise EmptyFileError(f"{source_name}: the file contains only whitespace", "put the script text in the file")
    controls = sum(1 for ch in text if unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROL_CHARS)
    if controls > _MAX_CONTROL_RATIO * len(text):
        raise _binary(source_name)
    return Decoded(text=text, encoding=encoding, newline=detect_newline(text), bom=bom)


def _decode(data: bytes, source_name: str) -> tuple[str, str, bool]:
    for mark, name in _UTF32_BOMS:
        if data.startswith(mark):
            raise EncodingError(f"{source_name}: the file is {name} (it starts with the {name} byte order mark); "
                                f"scripts are read as {_TRIED}", _HINT_UTF8)
    for mark, codec in _BOMS:
        if data.startswith(mark):
            if codec == "utf-8-sig" and b"\x00" in data:
                raise _binary(source_name)
            try:
                # Decode after the mark with the plain codec: a doubled BOM is kept as text, not eaten.
                body = data[len(mark) :].decode("utf-8" if codec == "utf-8-sig" else codec)
                return body, codec, True
            except UnicodeDecodeError as exc:
                raise EncodingError(
                    f"{source_name}: starts with a {codec.upper()} byte order mark but byte "
                    f"{exc.start + len(mark)} is invalid in {codec.upper()}",
                    _HINT_UTF8,
                ) from None

    if b"\x00" in data:
        for codec in ("utf-16-le", "utf-16-be"):
            text = _strict(data, codec)
            if text is not None and sum(ch.isprintable() or ch in "\t\r\n" for ch in text) > 0.95 * len(text):
                raise EncodingError(f"{source_name}: looks like {codec.upper()} text without a byte order mark",
                                    _HINT_UTF8)
        raise _binary(source_name)
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    if controls > _MAX_CONTROL_RATIO * len(data):
        raise _binary(source_name)

    if any(escape in data for escape in _ISO2022_ESCAPES):
        for codec in _ISO2022_CODECS:
            try:
                return data.decode(codec), codec, False
            except UnicodeDecodeError:
                continue
    try:
        return data.decode("utf-8"), "utf-8", False
    except UnicodeDecodeError as exc:
        utf8_offset = exc.start

    candidates: list[tuple[float, str, str]] = []
    for codec in _LEGACY:
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            continue
        candidates.append((plausibility(text), codec, text))
    if not candidates:
        _refuse_other_language(data, None, source_name)
        raise EncodingError(
            f"{source_name}: the text is not in a supported encoding (tried {_TRIED}; "
            f"first invalid UTF-8 byte at offset {utf8_offset})",
            _HINT_UTF8,
        )
    # Stable max keeps CP932 (listed first) on a tie.
    best = max(candidates, key=lambda cand: cand[0])
    _refuse_other_language(data, best[2], source_name)
    return best[2], best[1], False


def _refuse_other_language(data: bytes, text: str | None, source_name: str) -> None:
    if (other := not_japanese(data, text)) is not None:
        why = "it has no Japanese reading" if text is None else "read as Japanese it has kanji but no kana"
        raise EncodingError(f"{source_name}: this looks like {other}, not Japanese: {why}",
                            "only Japanese scripts are translated; if it is Japanese, save it as UTF-8")


def _binary(source_name: str) -> BinaryFileError:
    return BinaryFileError(
        f"{source_name}: looks like a binary file, not a text script",
        "scripts must be text (.txt, .srt, .vtt, .lrc, .ass) or a .docx / .pdf document",
    )


def plausibility(text: str) -> float:
    """Score in [-1, 1]: how much ``text`` looks like Japanese prose rather than mojibake.

    Kana, JIS level-1 kanji, ASCII and Japanese punctuation score 1; other kanji 0.5 (real
    but rare); half-width katakana, private-use and unassigned characters -1 -- they are
    what a wrong guess between CP932 and EUC-JP produces.
    """
    if not text:
        return 0.0
    return sum(_char_score(ch) for ch in text) / len(text)


def _char_score(ch: str) -> float:
    cp = ord(ch)
    if cp < 0x80:
        return 1.0 if ch.isprintable() or ch in "\t\r\n" else -1.0
    if 0x3040 <= cp <= 0x30FF or 0x3000 <= cp <= 0x303F or 0xFF01 <= cp <= 0xFF5E:
        return 1.0  # kana, CJK punctuation, full-width ASCII
    if 0x2010 <= cp <= 0x206F or 0x2190 <= cp <= 0x27BF:
        return 1.0  # ― … ‥ ※ arrows, ♪ and other symbols scripts use
    if 0xFF61 <= cp <= 0xFF9F:
        return -1.0  # half-width katakana: rare in scripts, typical of EUC-JP read as CP932
    if 0x4E00 <= cp <= 0x9FFF:
        return 1.0 if _is_jis_level1(ch) else 0.5
    if 0xE000 <= cp <= 0xF8FF or unicodedata.category(ch) in ("Co", "Cn", "Cc"):
        return -1.0
    return 0.0


def _is_jis_level1(ch: str) -> bool:
    """JIS X 0208 level-1 kanji (the ~3000 common ones): EUC-JP lead byte 0xB0-0xCF."""
    try:
        encoded = ch.encode("euc_jp")
    except UnicodeEncodeError:
        return False
    return len(encoded) == 2 and 0xB0 <= encoded[0] <= 0xCF


_MIN_CJK = 8  # below this there is too little text to tell


def not_japanese(data: bytes, text: str | None) -> str | None:
    """What language/encoding ``data`` looks like when it is not Japanese: its best Japanese
    reading ``text`` has kanji or half-width katakana but (almost) no kana -- Japanese prose
    always has kana -- or it has no Japanese reading at all (``text`` None). None when it may
    well be Japanese, or looks like nothing we know."""
    if text is not None:
        han = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\uff61" <= ch <= "\uff9f")
        kana = sum(1 for ch in text if "\u3041" <= ch <= "\u30ff")
        if han < _MIN_CJK or kana * 50 > han:
            return None
    for codec, name, script in _OTHERS:
        decoded = _strict(data, codec)
        if decoded is None:
            continue
        wide = [ch for ch in decoded if ord(ch) > 0x7F]
        if len(wide) >= _MIN_CJK and sum(1 for ch in wide if script(ch)) >= 0.9 * len(wide):
            return name
    return None


def _is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3"


def _is_hanzi(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3000" <= ch <= "\u303f" or "\uff01" <= ch <= "\uff5e"


# Korean first: Chinese read as EUC-KR gives hanja among the hangul, Korean text nearly none.
_OTHERS = (
    ("euc_kr", "Korean (EUC-KR)", _is_hangul),
    ("gb2312", "Chinese (GB2312)", _is_hanzi),
    ("big5", "Chinese (Big5)", _is_hanzi),
    ("gb18030", "Chinese (GBK/GB18030)", _is_hanzi),
)


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None
