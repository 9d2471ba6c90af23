"""A second local user for the tests where another user on the machine is the attacker.

Running as root, the fixture creates the user once (``useradd``; CI runs as root) and
``run_as`` runs a Python snippet with its uid/gid. As anyone else the tests skip, saying why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass

import pytest

OTHER_USER = "asmr-test-other"


@dataclass(frozen=True)
class OtherUser:
    name: str
    uid: int
    gid: int
    python: str  # a system Python this user can run (our venv may live under /root)

    def run(self, code: str, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``python3 -I -c code args...`` as this user: stdlib only."""
        return subprocess.run(
            [self.python, "-I", "-c", code, *args], user=self.uid, group=self.gid, extra_groups=[],
            capture_output=True, text=True, timeout=timeout, cwd="/", env={"PATH": "/usr/bin:/bin", "HOME": "/"},
        )


def ensure_other_user() -> OtherUser:
    if os.geteuid() != 0:
        pytest.skip("needs root to create and act as a second local user (CI runs as root)")
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("useradd is not installed: cannot create a second local user")
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(OTHER_USER)
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 the second user could run")
    user = OtherUser(OTHER_USER, entry.pw_uid, entry.pw_gid, python)
    if user.run("pass").returncode != 0:
        pytest.skip(f"{python} cannot be run as {OTHER_USER}")
    return user


@pytest.fixture(scope="session")
def other_user() -> OtherUser:
    return ensure_other_user()
