"""Which paths in the inbox become jobs, which are ignored, and which are refused.

Ignored paths are never touched (they may belong to another program or be half-written). Every
other path becomes a job, and the job (``runner.py``, through directory handles) refuses what
cannot be translated -- a symlink out of the inbox, a FIFO, a dangling link -- by moving it to
failed/ with a reason, because the user put it there on purpose and deserves to know why nothing
came out.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Name patterns that are never scripts, each with the program that creates them.
IGNORED_NAMES: tuple[tuple[str, str], ...] = (
    (".*", "hidden files: editor swap/lock files (.foo.swp, .#foo), rsync/syncthing temp files, .DS_Store"),
    ("~$*", "Microsoft Office / LibreOffice lock files created while a document is open"),
    ("*~", "backup copies written by emacs, gedit and kate"),
    ("*.part", "partial downloads (Firefox, KDE, aria2) renamed to the final name when complete"),
    ("*.crdownload", "partial downloads from Chrome/Chromium"),
    ("*.tmp", "temporary files of many programs, replaced by the real file when written"),
    ("*.swp", "vim swap files"),
    ("glossary.tsv", "a per-work glossary placed beside the scripts (engine.glossary.SCRIPT_GLOSSARY_NAME)"),
    ("*.error.txt", "our own failure reports, in case failed/ is configured to be the inbox itself"),
)


@dataclass(frozen=True, slots=True)
class InboxFilter:
    """Decides for a path under ``inbox``: ignore it, refuse it, or take it.

    ``excluded`` are the daemon's own folders (done/, failed/, the outbox) when they lie inside the
    inbox: files we moved or wrote there must not become new jobs (an endless loop otherwise).
    """

    inbox: Path
    excluded: tuple[Path, ...] = ()

    @classmethod
    def for_folders(cls, inbox: Path, *others: Path) -> InboxFilter:
        inbox = Path(os.path.abspath(inbox))
        inside = tuple(Path(os.path.abspath(p)) for p in others if is_within(Path(os.path.abspath(p)), inbox))
        return cls(inbox, inside)

    def relative(self, path: Path) -> Path | None:
        """``path`` relative to the inbox, or None when it is not inside it (lexically)."""
        try:
            return Path(os.path.abspath(path)).relative_to(self.inbox)
        except ValueError:
            return None

    def ignore_reason(self, path: Path) -> str | None:
        """Why ``path`` is ignored, or None when it may become a job. Does not follow symlinks."""
        rel = self.relative(path)
        if rel is None or rel == Path("."):
            return "not inside the inbox"
        absolute = self.inbox / rel
        for folder in self.excluded:
            if is_within(absolute, folder):
                return f"inside the daemon's own folder {folder}"
        # A hidden folder (.git, .Trash-1000, .stversions) holds nothing the user dropped in.
        for part in rel.parts[:-1]:
            if part.startswith("."):
                return "inside a hidden folder"
        for pattern, _why in IGNORED_NAMES:
            if fnmatch.fnmatchcase(rel.name, pattern):
                return f"name matches {pattern!r}"
        try:
            st = os.lstat(absolute)
        except OSError:
            return "gone"
        if stat.S_ISLNK(st.st_mode):
            # Judged by the job (a dangling link settles first, then goes to failed/ with a report).
            try:
                target = os.stat(absolute)
            except OSError:
                return None
            if stat.S_ISDIR(target.st_mode):
                return "symlink to a folder (folders are not followed)"
            return None
        if stat.S_ISDIR(st.st_mode):
            return "a folder (folders are walked, not translated)"
        # FIFOs, sockets and devices are never opened; the job moves them to failed/ with a report
        # (ignoring them left the user waiting forever).
        return None


def is_within(path: Path, folder: Path) -> bool:
    """Lexically: ``path`` is ``folder`` or below it (both absolute)."""
    return path == folder or folder in path.parents
