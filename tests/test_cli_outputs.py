"""``translate`` through the real CLI: a hand-edited output is never overwritten, two inputs for one
output are refused before any work, and flagged lines are printed and written to a review report."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from kit import GLOSSARY_MISS, Kit


def cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asmr_daemon", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=os.environ.copy(), timeout=600)


def test_two_inputs_for_one_output_are_refused_before_any_work(tmp_path: Path) -> None:
    for folder in ("dd1", "dd2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "y.txt").write_text("おはよう\n", encoding="utf-8")
    result = cli("translate", "dd1/y.txt", "dd2/y.txt", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"asmr-daemon translate: error: {tmp_path}/dd1/y.txt and {tmp_path}/dd2/y.txt would both be written to "
        f"{tmp_path}/out/y.zh.txt (translate them with separate commands, or without -o so each output lands next "
        "to its input)")
    assert not (tmp_path / "out").exists()


def test_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    (tmp_path / "y.txt").write_text("おはよう\n", encoding="utf-8")
    result = cli("translate", "y.txt", tmp_path / "y.txt", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path}/y.txt is given twice" in result.stderr
    assert not (tmp_path / "y.zh.txt").exists()


@pytest.mark.slow
def test_a_hand_edited_output_is_kept_and_the_new_one_written_beside_it(tiny_kit: Kit, tmp_path: Path) -> None:
    script = tmp_path / "script.txt"
    shutil.copyfile(tiny_kit.script, script)
    model = ("--base-model", tiny_kit.base_dir, "--adapter", tiny_kit.adapter_dir, "--device", "cpu")
    first = cli("translate", script, *model)
    assert first.returncode == 0, first.stderr
    output = tmp_path / "script.zh.txt"
    assert output.read_bytes() == tiny_kit.expected.read_bytes()
    assert f"{script} -> {output}" in first.stderr
    # On a pipe, progress is plain whole lines: no bars, no escape codes, nothing cut short.
    assert "━" not in first.stderr and "\x1b[" not in first.stderr and "…" not in first.stderr
    assert re.search(r"^script\.txt: 20/20 lines \(100%\), \d+:\d\d$", first.stderr, re.MULTILINE), first.stderr
    assert re.search(r"^Loading weights: 1/1 files \(100%\), \d+:\d\d$", first.stderr, re.MULTILINE)
    assert not (tmp_path / "script.zh.txt.review.txt").exists()  # nothing flagged, no report

    corrected = output.read_text(encoding="utf-8").replace("哥哥", "欧尼酱")
    output.write_text(corrected, encoding="utf-8")
    second = cli("translate", script, *model)
    assert second.returncode == 0, second.stderr
    assert output.read_text(encoding="utf-8") == corrected  # the user's file is untouched
    beside = tmp_path / "script.zh (1).txt"
    assert beside.read_bytes() == tiny_kit.expected.read_bytes()
    assert f"{script} -> {beside}" in second.stderr
    assert f"not {output}: {output} was changed since asmr-daemon wrote it; your version is kept" in second.stderr

    third = cli("translate", script, *model)  # our own copy beside it is simply replaced
    assert third.returncode == 0, third.stderr
    assert f"{script} -> {beside}" in third.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["script.txt", "script.zh (1).txt", "script.zh.txt"]


@pytest.mark.slow
def test_flagged_lines_are_printed_and_written_to_a_review_report(tiny_kit: Kit, tmp_path: Path) -> None:
    """A glossary term the model cannot use (it never saw 欧尼酱): the lines with お兄ちゃん fail the
    check twice and keep their source; the report lists exactly them."""
    script = tmp_path / "script.txt"
    shutil.copyfile(tiny_kit.script, script)
    (tmp_path / "glossary.tsv").write_text("お兄ちゃん\t欧尼酱\t\n", encoding="utf-8")
    result = cli("translate", script, "--base-model", tiny_kit.base_dir, "--adapter", tiny_kit.adapter_dir,
                 "--device", "cpu")
    assert result.returncode == 0, result.stderr
    output, review = tmp_path / "script.zh.txt", tmp_path / "script.zh.txt.review.txt"
    source_lines = script.read_text(encoding="utf-8").splitlines()
    out_lines = output.read_text(encoding="utf-8").splitlines()
    assert out_lines[3] == source_lines[3] and out_lines[25] == source_lines[25]  # kept
    problem = f"({GLOSSARY_MISS})"
    printed = re.search(rf"  2 lines to review, listed in {re.escape(str(review))}:\n"
                        rf"    line 4: {problem} \(source kept\)\n    line 26: {problem} \(source kept\)\n",
                        result.stderr)
    assert printed, result.stderr
    kept = "the translation failed the checks twice, so the Japanese source was kept"
    assert review.read_text(encoding="utf-8") == (
        "2 lines to review in the translation of script.txt\n"
        "Line numbers are the script's. Correct these lines in the translation next to this report:\n"
        "asmr-daemon never overwrites a file you changed (translating the script again writes a new copy beside it).\n"
        "\n"
        f"Line 4: {printed[1]}: {kept}\n"
        "  source: （耳元で）おかえりなさい、お兄ちゃん。\n"
        "  output: (the source, unchanged)\n"
        "\n"
        f"Line 26: {printed[2]}: {kept}\n"
        "  source: おやすみなさい、お兄ちゃん。\n"
        "  output: (the source, unchanged)\n")
