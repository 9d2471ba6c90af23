"""Training data: JSON Lines round trip and errors, corrections export, bilingual/aligned import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asmr_daemon.cli import main
from asmr_daemon.dataset import (
    deduplicate,
    pairs_from_memory,
    read_dataset,
    write_dataset,
)
from asmr_daemon.engine.memory import TranslationMemory
from asmr_daemon.engine.prompts import ContextLine, GlossaryEntry
from asmr_daemon.errors import DatasetError
from asmr_daemon.runtime import MEMORY_FILE
from asmr_daemon.training_data import TrainingPair


def test_jsonl_round_trip_with_context_and_glossary(tmp_path: Path) -> None:
    pairs = [
        TrainingPair("次は左耳です。", "接下来是左耳。"),
        TrainingPair("梵天でふわふわしますね。", "用绒毛棒轻轻扫一扫哦。",
                     context=(ContextLine("次は左耳です。", "接下来是左耳。"),),
                     glossary=(GlossaryEntry("梵天", "绒毛棒", "耳かきの綿"),)),
    ]
    out = tmp_path / "data.jsonl"
    assert write_dataset(out, pairs) == 2
    assert read_dataset(out) == pairs
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"source": "次は左耳です。", "target": "接下来是左耳。"}  # optional fields left out
    assert not list(tmp_path.glob(".*tmp"))  # written through a temp file, nothing left behind


def test_short_forms_of_context_and_glossary(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"source": "a", "target": "b", "context": ["前。", ["前2。", "上2。"]],
                                "glossary": [["梵天", "绒毛棒"]]}, ensure_ascii=False) + "\n\n", encoding="utf-8")
    (pair,) = read_dataset(path)
    assert pair.context == (ContextLine("前。"), ContextLine("前2。", "上2。"))
    assert pair.glossary == (GlossaryEntry("梵天", "绒毛棒"),)


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "d.jsonl:2: not valid JSON"),
    ('{"source": "a"}', "d.jsonl:2: 'target' must be a non-empty string"),
    ('{"source": "a", "target": "b", "note": 1}', "d.jsonl:2: unknown field(s) note"),
    ('{"source": "a", "target": "b", "glossary": [1]}', "d.jsonl:2: a glossary entry"),
])
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"source": "x", "target": "y"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=None) as info:
        read_dataset(path)
    assert message in str(info.value)


def test_deduplicate_keeps_the_last_target_at_the_first_place() -> None:
    pairs = [TrainingPair("あ。", "啊1"), TrainingPair("い。", "咿"), TrainingPair("あ。", "啊2"), TrainingPair("い。", "咿")]
    assert deduplicate(pairs) == [TrainingPair("あ。", "啊2"), TrainingPair("い。", "咿")]


def test_export_dataset_writes_corrections_deduplicated(tmp_path: Path) -> None:
    state = tmp_path / "state"
    memory = TranslationMemory(state / MEMORY_FILE)
    memory.put("k1", source="また明日ね。", text="明天见。", problem=None, identity="base+a")
    memory.put("k2", source="次は左耳です。", text="接下来左耳。", problem=None, identity="base+a")
    memory.put("k3", source="ちゅぱ", text="ちゅぱ", problem="leftover kana", identity="base+a")
    memory.record_correction("次は左耳です。", "接下来是左耳哦。")
    memory.record_correction("次は左耳です。", "接下来是左耳哦。", context_key="ctx")  # same pair, other context
    memory.record_correction("  おやすみ。 ", "晚安。")
    memory.close()

    out = tmp_path / "out" / "corrections.jsonl"
    assert main(["export-dataset", str(out), "--state-dir", str(state)]) == 0
    assert read_dataset(out) == [TrainingPair("次は左耳です。", "接下来是左耳哦。"), TrainingPair("おやすみ。", "晚安。")]

    assert main(["export-dataset", str(out), "--state-dir", str(state), "--include-accepted"]) == 0
    got = read_dataset(out)
    assert TrainingPair("また明日ね。", "明天见。") in got  # accepted model output
    assert TrainingPair("次は左耳です。", "接下来左耳。") not in got  # the correction wins
    assert all(p.source != "ちゅぱ" for p in got)  # flagged outputs are never training data
    assert len(got) == 3


def test_export_dataset_without_memory_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["export-dataset", str(tmp_path / "x.jsonl"), "--state-dir", str(tmp_path / "none")]) == 1
    assert "no translation memory" in capsys.readouterr().err


def test_pairs_from_memory_api(tmp_path: Path) -> None:
    memory = TranslationMemory(tmp_path / "m.sqlite")
    memory.record_correction("また明日ね。", "明天见哦！")
    assert pairs_from_memory(memory) == [TrainingPair("また明日ね。", "明天见哦！")]
    memory.close()


BILINGUAL = """【トラック1　おかえり】
【音轨1　欢迎回来】

おかえりなさい、お兄ちゃん。
欢迎回来，哥哥。
今日もお疲れさまでした。
今天也辛苦了。
"""


def test_import_pairs_from_a_bilingual_script(tmp_path: Path) -> None:
    script = tmp_path / "bi.txt"
    script.write_text(BILINGUAL, encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["import-pairs", str(script), "-o", str(out)]) == 0
    assert read_dataset(out) == [
        TrainingPair("【トラック1　おかえり】", "【音轨1　欢迎回来】"),
        TrainingPair("おかえりなさい、お兄ちゃん。", "欢迎回来，哥哥。"),
        TrainingPair("今日もお疲れさまでした。", "今天也辛苦了。"),
    ]


def test_import_pairs_names_an_unpaired_japanese_line(tmp_path: Path, capsys) -> None:
    script = tmp_path / "bi.txt"
    script.write_text(BILINGUAL + "また明日ね。\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["import-pairs", str(script), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{script}:8: Japanese line 'また明日ね。' has no Chinese line under it" in err
    assert not out.exists()
    assert main(["import-pairs", str(script), "-o", str(out), "--skip-unpaired"]) == 0
    assert len(read_dataset(out)) == 3


def test_import_pairs_from_two_aligned_files(tmp_path: Path, capsys) -> None:
    ja, zh = tmp_path / "a.txt", tmp_path / "a.zh.txt"
    ja.write_text("おかえりなさい。\n\n今日もお疲れさまでした。\nまた明日ね。\n", encoding="utf-8")
    zh.write_text("欢迎回来。\n\n今天也辛苦了。\n明天见哦。\n", encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    assert main(["import-pairs", str(ja), str(zh), "-o", str(out)]) == 0
    assert [p.target for p in read_dataset(out)] == ["欢迎回来。", "今天也辛苦了。", "明天见哦。"]

    zh_short = tmp_path / "b.zh.txt"
    zh_short.write_text("欢迎回来。\n\n今天也辛苦了。\n", encoding="utf-8")
    assert main(["import-pairs", str(ja), str(zh_short), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "has 3 text lines but" in err and "has 2" in err and f"{ja}:4" in err
