"""Translation memory on a real SQLite file in a temp dir."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

from asmr_daemon.config import DecodingSettings
from asmr_daemon.engine.memory import (
    TranslationMemory,
    context_key,
    normalize,
    translation_key,
)
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.engine.requests import Translation

BASE = dict(identity="glm2+lora-a", template="{source}", decoding=DecodingSettings())


def key(source: str = "おはよう", **changes: object) -> str:
    return translation_key(source, **{**BASE, **changes})  # type: ignore[arg-type]


def test_wal_mode_and_idempotent_migrations(tmp_path: Path) -> None:
    path = tmp_path / "tm.sqlite3"
    first = TranslationMemory(path)
    assert first.journal_mode() == "wal"
    first.put("k", source="はい", text="是", problem=None, identity="x")
    second = TranslationMemory(path)  # a second process (CLI status) opening the same file
    assert second.applied_migrations() == [1] == first.applied_migrations()
    assert second.get("k") == Translation("はい", "是", None, "memory")
    first.close()
    second.close()
    third = TranslationMemory(path)
    assert third.stats() == {"translations": 1, "flagged": 0, "corrections": 0}
    third.close()


def test_key_depends_on_everything_that_decides_the_output() -> None:
    base = key()
    variants = [
        key("おやすみ"),
        key(identity="glm2+lora-b"),
        key(template="翻译：{source}"),
        key(decoding=dataclasses.replace(DecodingSettings(), retry_repetition_penalty=1.5)),
        key(decoding=dataclasses.replace(DecodingSettings(), min_new_tokens=8)),
        key(context=[ContextLine("ねえ")]),
        key(glossary=[GlossaryEntry("ミナ", "米娜")]),
        key(glossary=[GlossaryEntry("ミナ", "美奈")]),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Same text, different spacing or Unicode composition: same key.
    assert key(" おはよう\u3000") == base
    assert key("か\u3099") == key("が")
    # Known translations of context lines are hints, not part of the key.
    assert key(context=[ContextLine("ねえ", "喂")]) == key(context=[ContextLine("ねえ")])


def test_normalize_keeps_full_width_punctuation() -> None:
    assert normalize("  ねえ！　聞いて？ \n") == "ねえ！ 聞いて？"


def test_two_threads_two_connections(memory: TranslationMemory) -> None:
    seen: dict[str, int] = {}

    def writer(name: str) -> None:
        seen[name] = id(memory._conn())
        for i in range(30):
            memory.put(f"{name}{i}", source=f"{name}{i}", text="译", problem=None, identity="x")

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["a"] != seen["b"]
    assert memory.stats()["translations"] == 60
    assert memory.get("b29") is not None


def test_corrections_and_exports(memory: TranslationMemory) -> None:
    ctx = context_key([ContextLine("ねえ")])
    assert context_key([]) == ""
    memory.put("k1", source="はい", text="是", problem=None, identity="x")
    memory.put("k2", source="ちゅぱちゅぱ", text="ちゅぱちゅぱ", problem="leftover kana", identity="x")
    memory.record_correction(" すき ", "喜欢")
    memory.record_correction("すき", "我喜欢", ctx)
    memory.record_correction("すき", "最喜欢了")  # a later correction replaces the earlier one
    assert memory.correction_for("すき") == "最喜欢了"
    assert memory.correction_for("すき", ctx) == "我喜欢"
    assert memory.correction_for("きらい") is None
    assert memory.corrections() == [("すき", "我喜欢"), ("すき", "最喜欢了")]
    assert memory.accepted() == [("はい", "是")]
    assert memory.stats() == {"translations": 2, "flagged": 1, "corrections": 2}


def _filled(path: Path, rows: int = 3000) -> None:
    memory = TranslationMemory(path)
    for i in range(rows):
        memory.put(f"k{i}", source=f"原文{i}" * 5, text=f"译文{i}" * 5, problem=None, identity="x")
    memory.close()
    import sqlite3

    db = sqlite3.connect(path)  # fold the WAL into the file, so the damage below hits real pages
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _damage_pages(path: Path) -> None:
    """Overwrite pages in the middle of the file (the header stays: SQLite still opens it)."""
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        for offset in range(size // 3, size - 4096, 4096 * 3):
            handle.seek(offset)
            handle.write(b"\xa5" * 4096)


def test_a_damaged_memory_is_set_aside_and_a_new_one_started(tmp_path: Path, caplog) -> None:
    path = tmp_path / "memory.sqlite"
    _filled(path)
    _damage_pages(path)
    memory = TranslationMemory(path)
    try:
        assert memory.set_aside is not None and memory.set_aside.name.startswith("memory.sqlite.corrupt-")
        assert memory.set_aside.exists() and memory.stats()["translations"] == 0
        memory.put("k", source="はい", text="是", problem=None, identity="x")
        assert memory.get("k") is not None
    finally:
        memory.close()
    assert "is damaged" in caplog.text and memory.set_aside.name in caplog.text


def test_garbage_instead_of_a_memory_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    path.write_bytes(b"this is not a database\n" * 100)
    memory = TranslationMemory(path)
    assert memory.set_aside is not None and memory.set_aside.read_bytes().startswith(b"this is not")
    assert memory.applied_migrations() == [1]
    memory.close()


def test_a_bad_page_found_while_running_is_a_cache_miss(tmp_path: Path, caplog) -> None:
    path = tmp_path / "memory.sqlite"
    _filled(path)
    memory = TranslationMemory(path)  # sound at start
    _damage_pages(path)
    results: list[object] = []

    def lookups() -> None:  # a fresh thread: a fresh connection that reads the damaged pages
        results.extend(memory.get(f"k{i}") for i in range(0, 3000, 50))
        memory.put("new", source="はい", text="是", problem=None, identity="x")

    thread = threading.Thread(target=lookups)
    thread.start()
    thread.join()
    memory.close()
    assert len(results) == 60 and None in results  # misses, no exception
    assert caplog.text.count("a read failed") == 1  # reported once, not once per line


def test_many_lookups_at_once_give_what_one_at_a_time_gives(tmp_path) -> None:
    from asmr_daemon.engine import memory as memory_module

    memory = TranslationMemory(tmp_path / "m.sqlite")
    for i in range(0, 1200, 3):
        memory.put(f"k{i}", source=f"s{i}", text=f"t{i}", problem=None if i % 2 else "repetition", identity="x")
    memory.record_correction("すき", "最喜欢了")
    memory.record_correction("すき", "我喜欢", "ctx")
    keys = [f"k{i}" for i in range(1200)] + ["k3"]  # more than one query's worth, a duplicate
    assert len(keys) > memory_module.QUERY_KEYS
    assert memory.get_many(keys) == {k: memory.get(k) for k in keys if memory.get(k) is not None}
    assert len(memory.get_many(keys)) == 400
    pairs = [("すき", "ctx"), ("  すき ", ""), ("すき", "other"), ("きらい", "")]
    assert memory.corrections_for(pairs) == {("すき", "ctx"): "我喜欢", ("  すき ", ""): "最喜欢了"}
