"""The watch folder never replaces an output the user corrected (in-process daemon, fake translator)."""

from __future__ import annotations

import logging
import time


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_corrected_output_survives_dropping_the_script_again(start_daemon, folders, caplog) -> None:
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    start_daemon()
    (inbox / "a.txt").write_text("first\n")
    wait_for(lambda: (outbox / "a.zh.txt").exists() and not (inbox / "a.txt").exists(), what="the first output")
    (outbox / "a.zh.txt").write_text("MY CORRECTED TRANSLATION\n")  # the user fixes a line

    with caplog.at_level(logging.WARNING, logger="asmr_daemon"):
        (inbox / "a.txt").write_text("second\n")
        wait_for(lambda: (outbox / "a.zh (1).txt").exists() and not (inbox / "a.txt").exists(),
                 what="the second output beside the first")
    assert (outbox / "a.zh.txt").read_text() == "MY CORRECTED TRANSLATION\n"
    assert (outbox / "a.zh (1).txt").read_text() == "SECOND\n"
    assert f"output written as {outbox / 'a.zh (1).txt'}: {outbox / 'a.zh.txt'} was changed since asmr-daemon " \
           "wrote it; your version is kept" in caplog.text

    # Dropped once more: our own unchanged copy is replaced, nothing piles up.
    (inbox / "a.txt").write_text("third\n")
    wait_for(lambda: (outbox / "a.zh (1).txt").read_text() == "THIRD\n", what="the third output")
    assert (outbox / "a.zh.txt").read_text() == "MY CORRECTED TRANSLATION\n"
    assert sorted(p.name for p in outbox.iterdir() if not p.name.startswith(".")) == ["a.zh (1).txt", "a.zh.txt"]


def test_an_untouched_output_is_replaced_when_the_script_comes_again(start_daemon, folders) -> None:
    inbox, outbox = folders["inbox"], folders["outbox"]
    inbox.mkdir(parents=True)
    start_daemon()
    (inbox / "a.txt").write_text("first\n")
    wait_for(lambda: (outbox / "a.zh.txt").exists() and not (inbox / "a.txt").exists(), what="the first output")
    (inbox / "a.txt").write_text("second\n")
    wait_for(lambda: (outbox / "a.zh.txt").read_text() == "SECOND\n", what="the replaced output")
    assert not (outbox / "a.zh (1).txt").exists()
