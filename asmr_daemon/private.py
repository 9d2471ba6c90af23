"""Private by default: the daemon's files are its user's alone, whatever the umask.

The state dir holds the job queue, the translation memory (with the user's corrections), the
LSP token and the status record, so it is 0700; an existing state dir that others can enter is
tightened (it is ours). Files are created 0600 (``db.connect``, ``atomic_write_bytes``).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def private_dir(path: Path, *, tighten: bool = True) -> Path:
    """Create ``path`` (and parents) 0700; with ``tighten``, an existing folder we own that the
    group or others can use becomes 0700 too. Returns ``path``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if tighten:
        st = path.stat()
        if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(path, 0o700)
            log.info("%s was readable by others (mode %o): now 0700", path, stat.S_IMODE(st.st_mode))
    return path


def private_file(path: Path) -> None:
    """Make an existing file of ours 0600 (databases written by older versions were 0644)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o600)
