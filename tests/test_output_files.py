"""Outputs never destroy a user's file: replaced only when byte-identical to what we wrote last."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from asmr_daemon.output_files import (
    publish,
    publish_review,
    publish_staged,
    read_record,
    record_path,
    review_path,
    sha256_of,
    written_by_us,
)


def test_a_new_output_is_written_with_its_record(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "a.zh.txt"
    published = publish(b"one\n", dest, source_sha256="abc")
    assert published.path == dest and published.reason is None
    assert dest.read_bytes() == b"one\n"
    record = json.loads(record_path(dest).read_text())
    assert record["sha256"] == sha256_of(dest) and record["source_sha256"] == "abc" and "pending" not in record
    assert written_by_us(dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == [".a.zh.txt.asmr.json", "a.zh.txt"]


def test_our_unchanged_output_is_replaced(tmp_path: Path) -> None:
    dest = tmp_path / "a.zh.txt"
    publish(b"one\n", dest)
    published = publish(b"two\n", dest)
    assert published.path == dest and published.reason is None
    assert dest.read_bytes() == b"two\n" and written_by_us(dest)


def test_a_corrected_output_is_kept_and_the_new_one_goes_beside_it(tmp_path: Path) -> None:
    dest = tmp_path / "a.zh.txt"
    publish(b"model\n", dest)
    dest.write_bytes(b"my correction\n")
    assert not written_by_us(dest)
    published = publish(b"model again\n", dest)
    assert published.path == tmp_path / "a.zh (1).txt"
    assert published.reason == f"{dest} was changed since asmr-daemon wrote it; your version is kept"
    assert dest.read_bytes() == b"my correction\n"
    assert published.path.read_bytes() == b"model again\n"
    # A third run replaces our own unchanged copy instead of piling up (2), (3)...
    third = publish(b"model once more\n", dest)
    assert third.path == tmp_path / "a.zh (1).txt" and dest.read_bytes() == b"my correction\n"
    assert third.path.read_bytes() == b"model once more\n"


def test_a_file_we_never_wrote_is_kept(tmp_path: Path) -> None:
    dest = tmp_path / "a.zh.txt"
    dest.write_bytes(b"the user's own file\n")
    published = publish(b"ours\n", dest)
    assert published.path == tmp_path / "a.zh (1).txt"
    assert "was not written by asmr-daemon" in (published.reason or "")
    assert dest.read_bytes() == b"the user's own file\n"


def test_identical_bytes_without_a_record_are_taken_over(tmp_path: Path) -> None:
    """Rewriting exactly the bytes already there destroys nothing (e.g. the record was lost)."""
    dest = tmp_path / "a.zh.txt"
    dest.write_bytes(b"same\n")
    assert publish(b"same\n", dest).path == dest
    assert written_by_us(dest)


def test_a_directory_or_symlink_at_the_name_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "a.zh.txt").mkdir()
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"keep\n")
    os.symlink(target, tmp_path / "a.zh (1).txt")
    published = publish(b"ours\n", tmp_path / "a.zh.txt")
    assert published.path == tmp_path / "a.zh (2).txt"
    assert "is not a regular file" in (published.reason or "")
    assert target.read_bytes() == b"keep\n"


def test_a_crash_between_rename_and_record_still_counts_as_ours(tmp_path: Path) -> None:
    """The record names the pending hash before the rename: the new bytes are recognised."""
    dest = tmp_path / "a.zh.txt"
    publish(b"old\n", dest)
    old = read_record(dest)
    assert old is not None
    dest.write_bytes(b"new\n")  # the rename happened ...
    record_path(dest).write_text(json.dumps({"sha256": old["sha256"], "pending": sha256_of(dest)}))  # ... not the record
    assert written_by_us(dest)
    assert publish(b"newer\n", dest).path == dest


def test_a_staged_file_moves_into_place_with_its_review(tmp_path: Path) -> None:
    dest = tmp_path / "a.zh.txt"
    publish(b"old\n", dest)
    publish_review(dest, "1 line to review\n")
    staged = tmp_path / ".a.zh.txt.job1.partial"
    staged.write_bytes(b"new\n")
    review_path(staged).write_text("2 lines to review\n")
    published = publish_staged(staged, dest, source_sha256="s")
    assert published.path == dest and dest.read_bytes() == b"new\n"
    assert review_path(dest).read_text() == "2 lines to review\n"
    assert not staged.exists() and not review_path(staged).exists()
    # Next time nothing is flagged: the stale report goes.
    staged.write_bytes(b"clean\n")
    publish_staged(staged, dest)
    assert not review_path(dest).exists()


def test_a_missing_staged_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        publish_staged(tmp_path / ".gone", tmp_path / "a.zh.txt")


def test_names_near_the_255_byte_limit_still_get_a_record_a_report_and_a_copy_beside(tmp_path: Path) -> None:
    dest = tmp_path / ("あ" * 82 + ".zh.txt")  # 253 bytes
    publish(b"one\n", dest)
    assert written_by_us(dest) and len(record_path(dest).name.encode()) <= 255
    review = publish_review(dest, "1 line to review\n")
    assert review is not None and review.read_text() == "1 line to review\n" and len(review.name.encode()) <= 255
    dest.write_bytes(b"edited\n")
    published = publish(b"two\n", dest)
    assert published.path != dest and published.path.read_bytes() == b"two\n"
    assert len(published.path.name.encode()) <= 255 and published.path.name.endswith(" (1).txt")
    assert dest.read_bytes() == b"edited\n"
