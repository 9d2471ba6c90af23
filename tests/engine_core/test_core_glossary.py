"""Glossary files, matching on the shared spaCy Japanese pipeline, and the usage check."""

from __future__ import annotations

from pathlib import Path

import pytest

from asmr_daemon.engine.glossary import (
    Glossary,
    check_glossary_used,
    glossary_for_script,
)
from asmr_daemon.engine.prompts import GlossaryEntry as E
from asmr_daemon.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "g.tsv", "# 术语表\n\nミナ\t米娜\t女主角\n春香\t春香\n\n# end\nミナ\t美奈\t改名\n")
    glossary = Glossary.load(path)
    assert glossary.entries == (E("ミナ", "美奈", "改名"), E("春香", "春香", ""))


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "g.tsv", "ミナ\t米娜\n# ok\nこれはタブがない\n")
    with pytest.raises(ConfigError, match=r"g\.tsv:3: malformed"):
        Glossary.load(path)
    with pytest.raises(ConfigError, match="g2.tsv:1"):
        Glossary.load(write(tmp_path / "g2.tsv", "a\tb\tc\td\n"))


def test_find_in_order_of_appearance_without_duplicates() -> None:
    glossary = Glossary((E("春香", "春香"), E("ゆう", "小悠"), E("お兄ちゃん", "哥哥"), E("ミナ", "米娜")))
    text = "ミナちゃん、ゆうべお兄ちゃんと春香さんがゆうと話したの。ミナも"
    assert glossary.find(text) == [E("ミナ", "米娜"), E("お兄ちゃん", "哥哥"), E("春香", "春香"), E("ゆう", "小悠")]


def test_hiragana_term_does_not_match_inside_a_word() -> None:
    glossary = Glossary((E("ゆう", "小悠"),))
    assert glossary.find("ゆうべは楽しかった") == []
    assert glossary.find("") == [] and Glossary(()).find("ゆう") == []


def test_glossary_for_script_merges_configured_and_local(tmp_path: Path) -> None:
    configured = write(tmp_path / "global.tsv", "ミナ\t米娜\n先輩\t前辈\n")
    work = tmp_path / "work"
    work.mkdir()
    script = work / "track1.txt"
    assert glossary_for_script(script, None) is None
    assert glossary_for_script(script, configured).entries == (E("ミナ", "米娜"), E("先輩", "前辈"))
    write(work / "glossary.tsv", "ミナ\t美奈\n")
    assert glossary_for_script(script, configured).entries == (E("ミナ", "美奈"), E("先輩", "前辈"))
    assert glossary_for_script(script, None).entries == (E("ミナ", "美奈"),)
    with pytest.raises(ConfigError, match="does not exist"):
        glossary_for_script(script, tmp_path / "missing.tsv")


def test_check_glossary_used() -> None:
    entries = [E("ミナ", "米娜"), E("先輩", "前辈")]
    assert check_glossary_used(entries, "米娜前辈") is None
    assert check_glossary_used(entries, "米娜学姐") == "glossary term 先輩 not used"
    assert check_glossary_used([], "任何") is None
