"""End to end with the real daemon and the tiny model: a script where some lines are forced to fail
the checks (a glossary term the model cannot produce) gets its output and its review report in the
outbox, ``status`` counts it, and an editor receives warnings on exactly those lines. Also: a
corrected outbox file survives dropping the script again, ``status`` shows a file's progress, and
the daemon's log lines carry timestamps."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kit import GLOSSARY_MISS
from lsprotocol import types
from real_daemon import ANSWER_TIMEOUT, RealDaemon, bridge_client, close, initialize, running_daemon

pytestmark = pytest.mark.slow

GLOSSARY = "お兄ちゃん\t欧尼酱\t\n"  # a term the tiny model cannot produce: its lines fail the check
FLAGGED = [3, 25]  # 0-based: the two lines with お兄ちゃん
PROBLEM = GLOSSARY_MISS
KEPT = "the translation failed the checks twice, so the Japanese source was kept"


def wait_until(condition, what: str, daemon: RealDaemon, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{daemon.log_text()}")
        time.sleep(0.05)


def status(daemon: RealDaemon) -> str:
    result = subprocess.run([sys.executable, "-m", "asmr_daemon", "status", "--state-dir", str(daemon.state_dir)],
                            capture_output=True, text=True, env={**daemon.env, "COLUMNS": "250"}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def diagnostics_for(client, uri: str) -> list[types.Diagnostic]:
    while True:
        params = await asyncio.wait_for(client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS),
                                        ANSWER_TIMEOUT)
        if params.uri == uri:
            return list(params.diagnostics)


async def test_flagged_lines_reach_the_outbox_status_and_the_editor(tiny_kit, tmp_path: Path) -> None:
    source_lines = tiny_kit.script.read_text(encoding="utf-8").splitlines()
    with running_daemon(tiny_kit, tcp=None) as daemon:
        inbox, outbox = daemon.inbox, daemon.outbox
        (inbox / "glossary.tsv").write_text(GLOSSARY, encoding="utf-8")
        shutil.copyfile(tiny_kit.script, inbox / "script.txt")
        output, review = outbox / "script.zh.txt", outbox / "script.zh.txt.review.txt"
        wait_until(lambda: review.exists() and not (inbox / "script.txt").exists(), "output and review", daemon)

        out_lines = output.read_text(encoding="utf-8").splitlines()
        expected = tiny_kit.expected.read_text(encoding="utf-8").splitlines()
        assert [i for i, (o, e) in enumerate(zip(out_lines, expected, strict=True)) if o != e] == FLAGGED
        assert all(out_lines[i] == source_lines[i] for i in FLAGGED)  # the source was kept
        report = review.read_text(encoding="utf-8")
        assert report.startswith("2 lines to review in the translation of script.txt\n")
        assert re.findall(rf"^Line (\d+): {PROBLEM}: (.*)$", report, re.MULTILINE) == [("4", KEPT), ("26", KEPT)]
        reasons = dict(re.findall(r"^Line (\d+): (.*)$", report, re.MULTILINE))
        assert f"  source: {source_lines[25]}\n" in report

        shown = status(daemon)
        assert re.search(r"to review\s+│ 1 output with flagged lines \(2 lines\)", shown), shown
        assert f"  {review} (2 lines)" in shown

        # The editor: the same script (and its glossary) opened elsewhere shows exactly those lines.
        work = tmp_path / "work"
        work.mkdir()
        shutil.copyfile(tiny_kit.script, work / "script.txt")
        (work / "glossary.tsv").write_text(GLOSSARY, encoding="utf-8")
        client = await bridge_client(daemon)
        await initialize(client)
        uri = (work / "script.txt").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="plaintext", version=1, text=(work / "script.txt").read_text(encoding="utf-8"))))
        diagnostics = await diagnostics_for(client, uri)
        assert [(d.range.start.line, d.range.start.character, d.range.end.line, d.range.end.character,
                 d.severity, d.message) for d in diagnostics] == [
            (i, 0, i, len(source_lines[i]), types.DiagnosticSeverity.Warning, reasons[str(i + 1)]) for i in FLAGGED]
        await close(client)

        # A corrected output is kept when the script comes again; the new one goes beside it.
        corrected = output.read_text(encoding="utf-8").replace(source_lines[25], "晚安，欧尼酱。")
        output.write_text(corrected, encoding="utf-8")
        shutil.copyfile(tiny_kit.script, inbox / "script.txt")
        beside = outbox / "script.zh (1).txt"
        wait_until(lambda: (outbox / "script.zh (1).txt.review.txt").exists()
                   and not (inbox / "script.txt").exists(), "the second output beside the first", daemon)
        assert output.read_text(encoding="utf-8") == corrected
        assert beside.read_text(encoding="utf-8").splitlines() == out_lines
        assert f"output written as {beside}: {output} was changed since asmr-daemon wrote it; your version is kept" \
            in daemon.log_text()

        # A long file: status shows the file in flight with lines done/total and the time left.
        # 3,000 lines, so that it is still in flight when a status (a CLI start, ~1-2 s) looks:
        # the engine translated 300 before two status calls had run.
        long_lines = [f"今日は{i}回目のお茶ですね。" for i in range(3000)]
        (tmp_path / "long.txt").write_text("\n".join(long_lines) + "\n", encoding="utf-8")
        os.rename(tmp_path / "long.txt", inbox / "long.txt")
        seen: list[str] = []

        def in_progress() -> bool:
            match = re.search(r"translating\s+│ (long\.txt: \d+/3000 lines \(\d+%\), .*?)\s+│", status(daemon))
            if match:
                seen.append(match.group(1))
            return any(re.fullmatch(r"long\.txt: ([1-9]\d{0,2}|[12]\d{3})/3000 lines \(\d+%\), about \d+:\d\d left", s)
                       for s in seen)

        wait_until(in_progress, "progress of long.txt in status", daemon, timeout=300)
        wait_until(lambda: (outbox / "long.zh.txt").exists(), "long.zh.txt", daemon, timeout=300)

        # Log lines carry a timestamp (no journal here: $JOURNAL_STREAM is not this stream).
        ours = [line for line in daemon.log_text().splitlines() if re.search(r"\b(INFO|WARNING) asmr_daemon", line)]
        assert ours and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING) asmr_daemon", line)
                            for line in ours), ours
