"""Tiny .docx and .pdf scripts for the tests, made on the spot.

The PDF writer is hand-made on purpose (no PDF library can write Japanese without a font file):
a Type0 font with Identity-H (or Identity-V, vertical writing) encoding and a ToUnicode map,
which is what text extractors read; the glyphs themselves are never embedded.
"""

from __future__ import annotations

from pathlib import Path


def make_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, text in enumerate(row):
                grid.cell(r, c).text = text
    document.save(str(path))
    return path


def _cmap(chars: list[str]) -> bytes:
    entries = "\n".join(f"<{i + 1:04X}> <{ord(ch):04X}>" for i, ch in enumerate(chars))
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n"
        f"{len(chars)} beginbfchar\n{entries}\nendbfchar\n"
        "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


def make_pdf(path: Path, lines: list[str], *, vertical: bool = False, text_layer: bool = True) -> Path:
    """One A4 page with ``lines`` top to bottom (or right to left in columns when ``vertical``)."""
    chars = sorted({ch for line in lines for ch in line})
    code = {ch: i + 1 for i, ch in enumerate(chars)}
    ops = []
    for n, line in enumerate(lines if text_layer else []):
        hex_codes = "".join(f"{code[ch]:04X}" for ch in line)
        x, y = (500 - 30 * n, 780) if vertical else (40, 800 - 24 * n)
        ops.append(f"BT /F1 12 Tf 1 0 0 1 {x} {y} Tm <{hex_codes}> Tj ET")
    content = "\n".join(ops or ["q Q"]).encode("ascii")
    cmap = _cmap(chars or [" "])
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 5 0 R >> >> "
        b"/Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type0 /BaseFont /HeiseiMin-W3 /Encoding /Identity-%s "
        b"/DescendantFonts [6 0 R] /ToUnicode 7 0 R >>" % (b"V" if vertical else b"H"),
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /HeiseiMin-W3 /CIDSystemInfo << /Registry (Adobe) "
        b"/Ordering (Identity) /Supplement 0 >> /DW 1000 /FontDescriptor 8 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(cmap), cmap),
        b"<< /Type /FontDescriptor /FontName /HeiseiMin-W3 /Flags 4 /FontBBox [0 -120 1000 880] /ItalicAngle 0 "
        b"/Ascent 880 /Descent -120 /CapHeight 700 /StemV 80 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    path.write_bytes(bytes(out))
    return path
