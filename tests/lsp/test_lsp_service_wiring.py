"""The daemon's parts see the same state (issue 10's wiring bugs), end to end through a real
``asmr-daemon serve``: editors and the watch folder build the same memory keys from the same
glossary, and settings reloaded by SIGHUP reach both."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from lsprotocol import types
from poll import poll_until
from real_daemon import RealDaemon, close, hover, initialize, running_daemon, tcp_client

pytestmark = pytest.mark.slow

CONFIG = "[engine]\nbatch_size = 8\n"
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def daemon(tiny_kit):
    with running_daemon(tiny_kit, config=CONFIG) as d:
        yield d


def memory_keys(daemon: RealDaemon) -> set[str]:
    db = sqlite3.connect(f"file:{daemon.state_dir / 'memory.sqlite'}?mode=ro", uri=True)
    try:
        return {key for (key,) in db.execute("SELECT key FROM translations")}
    finally:
        db.close()


def drop(daemon: RealDaemon, rel: str, text: str) -> str:
    """Put a script into the inbox (atomically) and return its outbox file's text."""
    target = daemon.inbox / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = daemon.root / "incoming.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(target)
    out = daemon.outbox / Path(rel).with_suffix(".zh.txt")
    poll_until(out.exists, TIMEOUT, lambda: f"{out} (daemon log:\n{daemon.log_text()})")
    return out.read_text(encoding="utf-8")


async def hover_file(daemon: RealDaemon, path: Path, text: str) -> str:
    """Hover line 0 of ``text`` shown as the editor buffer of ``path``."""
    assert daemon.tcp_port is not None
    client = await tcp_client(daemon.tcp_port, daemon.token)
    try:
        await initialize(client)
        uri = path.as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=text)))
        return await hover(client, uri, 0)
    finally:
        await close(client)


async def test_a_glossary_beside_a_script_changes_the_hover_as_it_changes_the_outbox_file(daemon: RealDaemon) -> None:
    line = "おやすみなさい、お兄ちゃん。"
    work = daemon.inbox / "work"
    work.mkdir(parents=True, exist_ok=True)
    (work / "glossary.tsv").write_text("お兄ちゃん\t哥哥\n", encoding="utf-8")
    translated = drop(daemon, "work/night.txt", line + "\n").rstrip("\n")
    keys = memory_keys(daemon)

    # An editor on a script in that folder: the watch folder's memory entry, not a new one.
    # (Its first line: where the kit's output misses the term, the hover adds the warning below it.)
    assert (await hover_file(daemon, work / "night.txt", line + "\n")).split("\n")[0] == translated
    assert memory_keys(daemon) == keys

    # The same line where no glossary lies: another prompt, so another entry.
    elsewhere = daemon.root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    await hover_file(daemon, elsewhere / "night.txt", line + "\n")
    assert len(memory_keys(daemon) - keys) == 1


async def test_sighup_with_new_decoding_settings_reaches_the_inbox_and_the_editors(daemon: RealDaemon, tiny_kit) -> None:
    line = "次は左耳です。"
    expected = "接下来是左耳。"  # the kit's translation with the default decoding
    elsewhere = daemon.root / "editor"
    elsewhere.mkdir(exist_ok=True)
    assert await hover_file(daemon, elsewhere / "before.txt", line + "\n") == expected
    # An editor that stays connected across the reload must see the new settings too.
    assert daemon.tcp_port is not None
    connected = await tcp_client(daemon.tcp_port, daemon.token)
    await initialize(connected)

    # At most two new tokens per line: the model's answers are cut short, visibly.
    config = daemon.root / "config.toml"
    config.write_text(CONFIG + "\n[decoding]\nmin_new_tokens = 2\nmax_new_tokens_ratio = 0.01\n", encoding="utf-8")
    reloads = daemon.log_text().count("settings reloaded")
    daemon.proc.send_signal(signal.SIGHUP)
    poll_until(lambda: daemon.log_text().count("settings reloaded") > reloads, TIMEOUT, "the reload")

    translated = drop(daemon, "after.txt", line + "\n").rstrip("\n")
    assert translated != expected and len(translated) < len(expected), translated
    shown = await hover_file(daemon, elsewhere / "after.txt", line + "\n")
    assert shown.split("\n\n")[0] == translated
    try:
        uri = (elsewhere / "kept.txt").as_uri()
        connected.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="plaintext", version=1, text=line + "\n")))
        assert (await hover(connected, uri, 0)).split("\n\n")[0] == translated
    finally:
        await close(connected)
