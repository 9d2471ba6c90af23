"""The real daemon with the tiny real model, given the new kinds of script a translator meets:
an Aegisub .ass, a .docx and a text-layer .pdf dropped into the inbox come out as the
documented outputs (NAME.zh.ass, NAME.zh.txt, NAME.zh.txt)."""

from __future__ import annotations

import signal

import pytest
from docmaker import make_docx, make_pdf

from .e2e import READY_TIMEOUT, final_outputs, logs, wait_until

pytestmark = pytest.mark.slow

ASS_HEAD = ("[Script Info]\r\nTitle: おかえり\r\nScriptType: v4.00+\r\n\r\n[V4+ Styles]\r\n"
            "Format: Name, Fontname, Fontsize\r\nStyle: Default,ＭＳ ゴシック,48\r\n\r\n[Events]\r\n"
            "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\r\n"
            "Comment: 0,0:00:00.00,0:00:01.00,Default,,0,0,0,,メモ：ここは訳さない\r\n")


def _dialogue(n: int, text: str) -> str:
    return f"Dialogue: 0,0:00:{n:02d}.00,0:00:{n + 1:02d}.00,Default,姉,0,0,0,,{{\\an8}}{text}\r\n"


def test_ass_docx_and_pdf_through_the_daemon(world) -> None:
    inbox, outbox = world["inbox"], world["outbox"]
    source = world["script"].read_text(encoding="utf-8").split("\n")[:-1]
    expected = world["expected"].split("\n")[:-1]
    spoken = [(ja, zh) for ja, zh in zip(source, expected, strict=True) if ja]
    ass_in = ASS_HEAD + "".join(_dialogue(n, ja) for n, (ja, _) in enumerate(spoken))
    ass_out = ASS_HEAD + "".join(_dialogue(n, zh) for n, (_, zh) in enumerate(spoken))

    proc = world["spawn"]()
    world["notify"].wait_for("READY=1", READY_TIMEOUT, proc)
    (inbox / "字幕.ass").write_bytes(ass_in.encode("utf-8"))
    make_docx(inbox.parent / "台本.docx", source).rename(inbox / "台本.docx")
    make_pdf(inbox.parent / "台本2.pdf", [ja for ja, _ in spoken]).rename(inbox / "台本2.pdf")

    wanted = {"字幕.zh.ass", "台本.zh.txt", "台本2.zh.txt"}
    wait_until(lambda: {p.name for p in final_outputs(outbox)} >= wanted, 240, "3 outputs", world)
    assert (outbox / "字幕.zh.ass").read_bytes() == ass_out.encode("utf-8")
    assert (outbox / "台本.zh.txt").read_text(encoding="utf-8") == world["expected"]
    assert (outbox / "台本2.zh.txt").read_text(encoding="utf-8") == "".join(zh + "\n" for _, zh in spoken)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, logs(world)
