"""The real ``asmr-daemon serve`` with the tiny real model, fed the way users feed it: files
written slowly, renamed in, copied from elsewhere, in subfolders, 200 at once, and bad ones."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from .e2e import READY_TIMEOUT, final_outputs, logs, wait_until

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "scripts" / "bad"


def start(world, **env: str):
    proc = world["spawn"](**env)
    world["notify"].wait_for("READY=1", READY_TIMEOUT, proc, start=len(world["notify"].messages))
    return proc


def stop(world, proc) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, logs(world)


def test_every_way_of_dropping_a_file_gives_the_exact_translation_once(world, tmp_path: Path) -> None:
    inbox, outbox, script, expected = world["inbox"], world["outbox"], world["script"], world["expected"]
    proc = start(world)
    data = script.read_bytes()

    # 1. written slowly in chunks, in place (inotify: created ... modified ... closed)
    with open(inbox / "slow.txt", "wb") as handle:
        for start_at in range(0, len(data), 97):
            handle.write(data[start_at:start_at + 97])
            handle.flush()
            time.sleep(0.03)
    # 2. renamed into the inbox (moved)
    (tmp_path / "staged.txt").write_bytes(data)
    os.rename(tmp_path / "staged.txt", inbox / "renamed.txt")
    # 3. copied from another folder (created + written + closed)
    shutil.copyfile(script, inbox / "copied.txt")
    # 4. inside a subfolder: the output mirrors it
    (inbox / "work" / "track1").mkdir(parents=True)
    shutil.copyfile(script, inbox / "work" / "track1" / "nested.txt")

    wanted = {"slow.zh.txt", "renamed.zh.txt", "copied.zh.txt", "work/track1/nested.zh.txt"}
    wait_until(lambda: {str(p.relative_to(outbox)) for p in final_outputs(outbox)} == wanted, 180, "4 outputs", world)
    for name in wanted:
        assert (outbox / name).read_text(encoding="utf-8") == expected, name
    wait_until(lambda: len([p for p in (inbox / "done").rglob("*") if p.is_file()]) == 4, 30, "inputs in done/", world)
    stop(world, proc)
    # Exactly once: no second output, no "(1)" copies anywhere.
    assert {str(p.relative_to(outbox)) for p in final_outputs(outbox)} == wanted
    assert sorted(str(p.relative_to(inbox / "done")) for p in (inbox / "done").rglob("*") if p.is_file()) == \
        ["copied.txt", "renamed.txt", "slow.txt", "work/track1/nested.txt"]


def test_two_hundred_scripts_dropped_at_once(world, tmp_path: Path) -> None:
    inbox, outbox = world["inbox"], world["outbox"]
    source_lines = world["script"].read_text(encoding="utf-8").splitlines()
    expected_lines = world["expected"].splitlines()
    pairs = [(s, e) for s, e in zip(source_lines, expected_lines, strict=True) if s.strip()]
    staging = tmp_path / "staging"
    staging.mkdir()
    expected: dict[str, str] = {}
    for i in range(200):
        first, second = pairs[i % len(pairs)], pairs[(i * 7 + 3) % len(pairs)]
        (staging / f"s{i:03}.txt").write_text(f"{first[0]}\n{second[0]}\n", encoding="utf-8")
        expected[f"s{i:03}.zh.txt"] = f"{first[1]}\n{second[1]}\n"
    proc = start(world)
    for path in staging.iterdir():  # as fast as possible, like a batch copy
        os.rename(path, inbox / path.name)
    wait_until(lambda: len(final_outputs(outbox)) == 200 and len(list((inbox / "done").iterdir())) == 200,
               300, "200 outputs", world)
    stop(world, proc)
    outputs = {p.name: p.read_text(encoding="utf-8") for p in final_outputs(outbox)}
    assert outputs == expected
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(f"s{i:03}.txt" for i in range(200))
    assert sorted(p.name for p in inbox.iterdir()) == [".asmr-daemon.lock", "done"]


def test_bad_inputs_land_in_failed_with_their_reason_and_the_daemon_keeps_serving(world, tmp_path: Path) -> None:
    inbox, outbox, script, expected = world["inbox"], world["outbox"], world["script"], world["expected"]
    proc = start(world, ASMR_WATCH_MAX_WAIT_SECONDS="3")
    outside = tmp_path / "outside.txt"
    shutil.copyfile(script, outside)
    shutil.copyfile(FIXTURES / "empty.txt", inbox / "empty.txt")
    shutil.copyfile(FIXTURES / "binary.txt", inbox / "binary.txt")
    shutil.copyfile(FIXTURES / "latin1.txt", inbox / "latin1.txt")
    shutil.copyfile(FIXTURES / "bad_timing.srt", inbox / "bad_timing.srt")
    shutil.copyfile(FIXTURES / "image.dat", inbox / "image.dat")
    (inbox / "link.txt").symlink_to(outside)
    (inbox / "big.txt").write_bytes(b"\xe3\x81\x82" * 2_000_000)  # 6 MB of "あ": over the 5 MB default
    stop_growing = threading.Event()

    def grow() -> None:
        with open(inbox / "growing.txt", "w", encoding="utf-8") as handle:
            while not stop_growing.is_set():
                handle.write("まだ書いています。\n")
                handle.flush()
                time.sleep(0.1)

    grower = threading.Thread(target=grow, daemon=True)
    grower.start()
    try:
        shutil.copyfile(script, inbox / "good.txt")  # a good file among the bad ones
        failed = inbox / "failed"
        reports = {"empty.txt": "empty", "binary.txt": "binary", "latin1.txt": "encoding",
                   "bad_timing.srt": "malformed", "image.dat": "binary", "link.txt": "outside-inbox",
                   "big.txt": "too-large", "growing.txt": "unstable"}
        wait_until(lambda: all((failed / f"{name}.error.txt").exists() for name in reports), 120,
                   "every bad file in failed/", world)
    finally:
        stop_growing.set()
        grower.join()
    for name, code in reports.items():
        report = (failed / f"{name}.error.txt").read_text(encoding="utf-8")
        assert f"Error code:    {code}" in report, report
        assert (failed / name).exists() or (failed / name).is_symlink(), name
    assert "line 6" in (failed / "bad_timing.srt.error.txt").read_text(encoding="utf-8")
    assert outside.read_bytes() == script.read_bytes()  # the symlink was not followed, its target untouched
    wait_until(lambda: (outbox / "good.zh.txt").exists(), 120, "the good file", world)
    assert (outbox / "good.zh.txt").read_text(encoding="utf-8") == expected
    assert [p.name for p in final_outputs(outbox)] == ["good.zh.txt"]  # nothing written for the bad ones
    # Still serving after all that.
    shutil.copyfile(script, inbox / "after.txt")
    wait_until(lambda: (outbox / "after.zh.txt").exists(), 120, "a file after the bad ones", world)
    stop(world, proc)
