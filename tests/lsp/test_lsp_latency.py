"""Interactive requests go first: while the real daemon translates a 500-line file from the inbox,
a hover on a line that is not in that file is answered before the file is finished.

Asserted by order, not by a timer: when the hover's answer arrives the file's translation must
not be in the outbox yet, and the model must still have most of the file to do (the translation
memory, which the engine fills batch by batch, holds less than half of its lines); the outbox
file then does appear, so the test is not passing because the job never ran.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from lsprotocol import types
from real_daemon import (
    ANSWER_TIMEOUT,
    Script,
    bridge_client,
    close,
    hover,
    initialize,
    open_doc,
    running_daemon,
)

from asmr_daemon.scripts import parse_text
from asmr_daemon.scripts.model import LineKind

pytestmark = pytest.mark.slow

LINES = 500
# Small batches: the tiny model then needs many seconds (well over a hundred model steps) for
# the file, instead of a few large batches.
CONFIG = "[engine]\nbatch_size = 4\n"
PREFIXES = ("（囁き）", "（耳元で）", "（小声で）", "（優しく）", "（笑いながら）", "（そっと）", "（甘えるように）", "（くすっと笑って）")
SUFFIXES = ("", "ね", "よ", "な", "ねえ", "よね", "かな", "ですね", "だよ", "なの", "わね")
HOVERED = 14  # 次は左耳です。 -- in the kit's script, not in the long file


def segments(text: str) -> list[tuple[str, ...]]:
    """The model requests each TEXT line of ``text`` becomes (its non-blank segments)."""
    return [
        tuple(s for s in line.segments if s.strip())
        for line in parse_text(text, "txt").lines
        if line.kind is LineKind.TEXT
    ]


def long_script(sources: list[str], avoid: set[str]) -> tuple[str, set[str]]:
    """``LINES`` distinct lines built from the kit's training sources with spoken-style prefixes
    and sentence-final particles, none sharing a segment with another line or with ``avoid``,
    so neither the memory nor the engine's de-duplication can shorten the job. Returns the
    text and its segments."""
    candidates = [prefix + source + suffix for suffix in SUFFIXES for prefix in PREFIXES for source in sources]
    seen, chosen = set(avoid), []
    for raw, segs in zip(candidates, segments("\n".join(candidates) + "\n"), strict=True):
        if segs and not seen.intersection(segs):
            seen.update(segs)
            chosen.append(raw)
        if len(chosen) == LINES:
            break
    assert len(chosen) == LINES
    text = "\n".join(chosen) + "\n"
    return text, {s for segs in segments(text) for s in segs}


def memory_holds(state_dir: Path, sources: set[str]) -> int:
    """How many of ``sources`` the daemon's translation memory holds (the engine writes each
    batch's results there as the batch finishes)."""
    path = state_dir / "memory.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        rows = db.execute("SELECT DISTINCT source FROM translations").fetchall()
    return len(sources.intersection(source for (source,) in rows))


@pytest.fixture(scope="module")
def daemon(tiny_kit):
    with running_daemon(tiny_kit, tcp=None, config=CONFIG) as daemon:
        yield daemon


async def test_hover_is_answered_while_a_long_file_is_translated(daemon, tiny_kit):
    script = Script.of(tiny_kit)
    hovered = set(segments(script.lines[HOVERED] + "\n")[0])
    text, job_segments = long_script([p.source for p in tiny_kit.pairs], avoid=hovered)
    outbox_file = daemon.outbox / "long.zh.txt"

    client = await bridge_client(daemon)  # ready before the file is dropped
    await initialize(client)
    uri = open_doc(client, script.text)
    # A hover on a blank line: the daemon parses the buffer (spaCy) now, not during the race.
    blank = types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=1, character=0))
    assert await asyncio.wait_for(client.text_document_hover_async(blank), ANSWER_TIMEOUT) is None

    staged = daemon.root / "long.txt"
    staged.write_text(text, encoding="utf-8")
    daemon.inbox.mkdir(exist_ok=True)
    staged.rename(daemon.inbox / "long.txt")  # appears whole, like a finished download

    # Wait until the model is busy with the file: some of its lines translated, none finished
    # as a file. From here on its remaining lines are queued in the engine.
    deadline = time.monotonic() + 120
    while memory_holds(daemon.state_dir, job_segments) < 8:
        assert not outbox_file.exists(), "the long file was translated before the test could hover"
        assert time.monotonic() < deadline, daemon.log_text()
        await asyncio.sleep(0.05)

    answer = await hover(client, uri, HOVERED)
    finished_when_answered = outbox_file.exists()
    done_when_answered = memory_holds(daemon.state_dir, job_segments)

    assert answer == script.expected[HOVERED]
    assert not finished_when_answered, "the hover waited for the whole file"
    # Not merely before the file was written: a hover queued behind the file would be answered
    # with its last batch, just before the write. Answered first, it leaves most of it to do.
    assert done_when_answered < len(job_segments) // 2, (done_when_answered, len(job_segments))

    # ... and the file does get translated: the order above was not an accident of a stuck job.
    while not outbox_file.exists():
        assert time.monotonic() < deadline + 240, daemon.log_text()
        await asyncio.sleep(0.2)
    assert len(outbox_file.read_text(encoding="utf-8").splitlines()) == LINES
    assert memory_holds(daemon.state_dir, job_segments) == len(job_segments)
    await close(client)
