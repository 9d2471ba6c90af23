"""The TCP token: ``[lsp] token`` when configured, else ``STATE_DIR/lsp.token`` (a contract: the
editor plugins read that file).

The file is created once, 0600 whatever the umask, complete or not at all: written to a
private temporary name, then hard-linked to ``lsp.token`` (``link`` fails if it exists, so two
daemons starting together agree on one token). A token file that someone else could read, a
symlink or an empty file is replaced by a fresh one.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

logger = logging.getLogger(__name__)

TOKEN_FILE = "lsp.token"


def token_path(state_dir: Path) -> Path:
    return Path(state_dir) / TOKEN_FILE


def tcp_token(configured: str, state_dir: Path) -> str:
    """The token TCP clients must send: the configured one, else the state dir's (made if needed)."""
    return configured or load_or_create_token(state_dir)


def load_or_create_token(state_dir: Path) -> str:
    path = token_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for _ in range(3):
        token = _read_private(path)
        if token:
            return token
        _create(path)
    raise OSError(f"cannot create a private {path}")


def token_matches(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _read_private(path: Path) -> str | None:
    """The token in ``path``; None (after removing it) when it is missing, unsafe or empty."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError:  # ELOOP: a symlink in its place
        logger.warning("%s is not a plain file: replacing it with a new token", path)
        path.unlink(missing_ok=True)
        return None
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        token = handle.read(4096).decode("ascii", "replace").strip()
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077 or not token:
        logger.warning("%s is not private to this user (mode %o): replacing it with a new token",
                       path, stat.S_IMODE(st.st_mode))
        path.unlink(missing_ok=True)
        return None
    return token


def _create(path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, secrets.token_urlsafe(32).encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        logger.info("generated the editors' TCP token in %s", path)
    except FileExistsError:
        pass  # another daemon made one meanwhile: use it
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
