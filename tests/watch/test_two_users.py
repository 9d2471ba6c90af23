"""The audit's symlink swap with two real local users (issue 11, Critical 2): the daemon runs as
the victim, another user who can write to the inbox swaps a queued file's folder for a symlink
to the victim's private folder. Nothing may be read, translated or moved out of it.

Needs root (to create the two users and run processes as them); elsewhere it skips and says so.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from asmr_daemon.watch.jobs import read_only_counts

VICTIM, ATTACKER = "asmr-test-victim", "asmr-test-other"

DAEMON = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from asmr_daemon.config import Settings
    from asmr_daemon.service.daemon import Daemon

    base = Path(sys.argv[1])
    settings = Settings()
    settings.paths.inbox = base / "inbox"
    settings.paths.outbox = base / "victim" / "outbox"
    settings.paths.state_dir = base / "victim" / "state"
    settings.watch.stable_seconds = 0.3

    def translate(src, dest):
        if src.name == "gate.txt":  # keeps the worker busy until the test has swapped the folder
            while not (base / "inbox" / ".go").exists():
                time.sleep(0.05)
        dest.write_bytes(Path(src).read_bytes().upper())

    daemon = Daemon(settings, translate)
    daemon.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (daemon.idle() and daemon.store.counts()["failed"]):
        time.sleep(0.1)
    jobs = [(j.source, j.state.value, j.error_code) for j in daemon.store.jobs()]
    daemon.shutdown()
    print(json.dumps(jobs))
""")


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot create the test user {name}: {done.stderr.strip()}")
        return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def users() -> tuple[pwd.struct_passwd, pwd.struct_passwd]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create two local test users and run the daemon as one of them")
    for tool in ("useradd", "setpriv"):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} to create the test users and run processes as them")
    return _user(VICTIM), _user(ATTACKER)


def as_user(user: pwd.struct_passwd, *command: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                             "--", *command], **kwargs)


def as_attacker(attacker: pwd.struct_passwd, script: str) -> None:
    subprocess.run(["setpriv", f"--reuid={attacker.pw_uid}", f"--regid={attacker.pw_gid}", "--clear-groups",
                    "sh", "-c", script], check=True)


def queue_is(jobs_db: Path, **counts: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queue = read_only_counts(jobs_db) if jobs_db.exists() else None
        if queue and all(queue[0][state] == n for state, n in counts.items()):
            return
        time.sleep(0.05)
    pytest.fail(f"the queue never reached {counts}")


def test_another_user_swapping_a_folder_for_a_symlink_gets_nothing(users):
    victim, attacker = users
    base = Path(tempfile.mkdtemp(prefix="asmr-two-users-"))
    os.chmod(base, 0o755)
    home = base / "victim"
    private = home / "private"
    private.mkdir(parents=True)
    (private / "notes.txt").write_text("the victim's secret\n")
    inbox = base / "inbox"
    inbox.mkdir()
    os.chmod(inbox, 0o1777)  # the insecure setup of the audit: others may write to the inbox
    (inbox / "gate.txt").write_text("gate\n")
    for path in (home, private, private / "notes.txt", inbox / "gate.txt"):
        os.chown(path, victim.pw_uid, victim.pw_gid)
    os.chmod(home, 0o700)
    os.chmod(private, 0o700)
    os.chmod(private / "notes.txt", 0o600)
    os.chown(inbox, victim.pw_uid, victim.pw_gid)

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), HOME=str(home))
    daemon = as_user(victim, sys.executable, "-c", DAEMON, str(base), env=env, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    try:
        queue_is(home / "state" / "jobs.sqlite", running=1, queued=0)  # the worker is busy with gate.txt
        # The other user drops a/notes.txt (their own folder in the shared inbox)...
        as_attacker(attacker, f"mkdir {inbox}/a && echo mine > {inbox}/a/notes.txt")
        queue_is(home / "state" / "jobs.sqlite", running=1, queued=1)
        # ... and once it is queued, swaps the folder for a symlink to the victim's private folder.
        as_attacker(attacker, f"mv {inbox}/a {inbox}/.old && ln -s {private} {inbox}/a && touch {inbox}/.go")
        out, err = daemon.communicate(timeout=120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    jobs = json.loads(out.strip().splitlines()[-1])
    assert ["a/notes.txt", "failed", "outside-inbox"] in jobs and ["gate.txt", "done", None] in jobs
    assert (private / "notes.txt").read_text() == "the victim's secret\n"
    assert sorted(p.name for p in private.iterdir()) == ["notes.txt"]
    outbox = home / "outbox"
    assert sorted(p.relative_to(outbox).as_posix() for p in outbox.rglob("*") if p.is_file()
                  and not p.name.startswith(".")) == ["gate.zh.txt"]
    assert not (inbox / "done" / "a").exists()
    report = inbox / "failed" / "a" / "notes.txt.error.txt"
    assert "Error code:    outside-inbox" in report.read_text()
    shutil.rmtree(base)
