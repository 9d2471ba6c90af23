"""Which paths in the inbox become jobs, which are ignored, and which are refused.

Ignored paths are never touched (they may belong to another program or be half-written);
refused paths are moved to failed/ with a reason, because the user put them there on purpose
and deserves to know why nothing came out.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from asmr_daemon.errors import InputCode, InputError

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
        inside = tuple(Path(os.path.abspath(p)) for p in others if _is_within(Path(os.path.abspath(p)), inbox))
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
            if _is_within(absolute, folder):
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
            # Judged by refusal(); a dangling link may still be being created, so wait.
            try:
                target = os.stat(absolute)
            except OSError:
                return "dangling symlink"
            if stat.S_ISDIR(target.st_mode):
                return "symlink to a folder (folders are not followed)"
            return None
        if not stat.S_ISREG(st.st_mode):
            # Folders are walked, not translated; fifos, sockets and devices would block or never end.
            return "not a regular file"
        return None

    def refusal(self, path: Path) -> InputError | None:
        """Why a path that is not ignored must go to failed/ without being read, or None.

        A symlink that leads outside the inbox is refused and never followed: the inbox may be
        writable by a sync tool or another user, and reading through such a link would translate
        (and then move) any file the daemon's user can read.
        """
        absolute = self.inbox / (self.relative(path) or path)
        if os.path.islink(absolute):
            target = Path(os.path.realpath(absolute))
            if not _is_within(target, Path(os.path.realpath(self.inbox))):
                return InputError(f"{path.name} is a symlink to {target}, outside the inbox",
                                  "copy the file into the inbox instead of linking to it",
                                  code=InputCode.OUTSIDE_INBOX)
            if not target.is_file():
                return InputError(f"{path.name} is a symlink to something that is not a regular file",
                                  "drop the script file itself", code=InputCode.NOT_REGULAR)
        elif absolute.exists() and not absolute.is_file():
            return InputError(f"{path.name} is not a regular file", "drop the script file itself",
                              code=InputCode.NOT_REGULAR)
        return None


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
