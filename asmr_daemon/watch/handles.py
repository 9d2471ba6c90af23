"""Filesystem steps of a job done through directory handles, never through a path twice.

The inbox may be writable by other users or a sync tool. Checking ``inbox/a/notes.txt`` and then
opening it by name lets anyone swap ``a`` for a symlink in between (the audit moved a private
file out of ``~/private`` that way). So every component is opened relative to the handle of the
one before it with ``O_NOFOLLOW``: a component that is a symlink fails the walk instead of being
followed, the file is read through the very handle that was checked, and it is moved with
``renameat2`` relative to the handles of both folders (a symlink swapped in at the last moment is
moved itself, never its target).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import PurePosixPath

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading must not hang the worker until a writer comes.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_MAX_LINKS = 8
_RENAME_NOREPLACE = 1


class OutsideInbox(Exception):
    """A component of the path is a symlink (or leads out of the inbox)."""


@dataclass
class Source:
    """An inbox file opened for a job: the handle of its folder, its name there, its ``lstat``
    and, for a regular file (or a symlink inside the inbox to one), the handle of the file.
    ``outside`` / ``unreadable`` say why there is no file handle when that is the reason."""

    parent_fd: int
    name: str
    st: os.stat_result
    fd: int | None = None
    outside: str | None = None
    unreadable: str | None = None
    fds: list[int] = field(default_factory=list)

    def close(self) -> None:
        for fd in self.fds:
            with suppress(OSError):
                os.close(fd)
        self.fds.clear()

    def unchanged(self) -> bool:
        """The name in the folder still names the entry that was checked (not replaced)."""
        try:
            now = os.stat(self.name, dir_fd=self.parent_fd, follow_symlinks=False)
        except OSError:
            return False
        return (now.st_dev, now.st_ino) == (self.st.st_dev, self.st.st_ino)


def open_dir(path: str | os.PathLike[str]) -> int:
    """A handle on a configured folder (the configured path itself may be a symlink)."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def walk_dirs(base_fd: int, parts: tuple[str, ...], *, create: bool = False, mode: int = 0o700) -> int:
    """Open ``parts`` one by one below ``base_fd`` without following symlinks (creating missing
    ones when ``create``); returns a new handle. Raises OutsideInbox for a symlink or a file."""
    fd = os.dup(base_fd)
    try:
        for part in parts:
            if part in ("", ".", ".."):
                raise OutsideInbox(f"path component {part!r}")
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                with suppress(FileExistsError):
                    os.mkdir(part, mode, dir_fd=fd)
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutsideInbox(f"{part} is not a folder inside the inbox (a symlink?)") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_source(inbox_fd: int, rel: PurePosixPath, *, inbox_path: str) -> Source:
    """Open the inbox file ``rel`` safely. A final symlink is followed only to a target inside
    the inbox, again component by component (else ``outside`` says where it leads). A FIFO,
    socket, device or dangling link gets ``fd=None`` (never opened). Raises OutsideInbox when a
    folder on the way is a symlink, FileNotFoundError when the file is gone."""
    parts = rel.parts
    parent = walk_dirs(inbox_fd, parts[:-1])
    try:
        st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except BaseException:
        os.close(parent)
        raise
    source = Source(parent, parts[-1], st, fds=[parent])
    try:
        _open_target(source, inbox_fd, PurePosixPath(*parts[:-1]) if len(parts) > 1 else PurePosixPath(),
                     inbox_path)
    except BaseException:
        source.close()
        raise
    return source


def _open_target(source: Source, inbox_fd: int, base: PurePosixPath, inbox_path: str) -> None:
    target_dir, name, st = source.parent_fd, source.name, source.st
    for _ in range(_MAX_LINKS):
        if not stat.S_ISLNK(st.st_mode):
            break
        try:
            base, parts = _link_target(os.readlink(name, dir_fd=target_dir), base, inbox_path)
            target_dir = walk_dirs(inbox_fd, parts[:-1])
            source.fds.append(target_dir)
            name = parts[-1]
            st = os.stat(name, dir_fd=target_dir, follow_symlinks=False)
        except OutsideInbox as exc:
            source.outside = str(exc)
            return
        except FileNotFoundError:
            return  # a dangling link: not a regular file
    else:
        source.outside = f"a chain of more than {_MAX_LINKS} symlinks"
        return
    if not stat.S_ISREG(st.st_mode):
        return
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=target_dir)
    except PermissionError as exc:
        source.unreadable = exc.strerror or "permission denied"
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # swapped for a symlink since the stat
            source.outside = "a symlink (replaced while it was opened)"
            return
        raise
    source.fds.append(fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for a FIFO since the stat
        return
    os.set_blocking(fd, True)
    source.fd = fd


def _link_target(target: str, base: PurePosixPath, inbox_path: str) -> tuple[PurePosixPath, tuple[str, ...]]:
    """The parts (relative to the inbox) a symlink in folder ``base`` points to, resolved
    lexically; OutsideInbox when they leave it."""
    if target.startswith("/"):
        for root in (os.path.normpath(inbox_path), os.path.realpath(inbox_path)):
            with suppress(ValueError):
                rel = PurePosixPath(os.path.normpath(target)).relative_to(root)
                break
        else:
            raise OutsideInbox(f"a symlink to {target}, outside the inbox")
    else:
        rel = PurePosixPath(os.path.normpath(base / target))
    if not rel.parts or rel.parts[0] == ".." or str(rel) == "." or rel.is_absolute():
        raise OutsideInbox(f"a symlink to {target}, outside the inbox")
    return rel.parent, rel.parts


def exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _libc_renameat2():
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return function


_renameat2 = _libc_renameat2()


def rename_no_replace(src_fd: int, src: str, dst_fd: int, dst: str) -> None:
    """Rename ``src`` (in folder ``src_fd``) to ``dst`` (in ``dst_fd``) unless ``dst`` exists
    (FileExistsError). Atomic where ``renameat2(RENAME_NOREPLACE)`` exists; otherwise a check
    right before ``os.rename`` (a tiny window, only on old kernels or filesystems)."""
    if _renameat2 is not None:
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), dst)
    if exists_at(dst_fd, dst):
        raise FileExistsError(errno.EEXIST, "destination exists", dst)
    os.rename(src, dst, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def copy_then_unlink(source: Source, dst_fd: int, dst: str) -> None:
    """Move across filesystems: copy through the checked handle, then remove the name."""
    if source.fd is None:
        raise OSError(errno.EXDEV, "cannot move a special file across filesystems", dst)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst_fd)
    try:
        os.lseek(source.fd, 0, os.SEEK_SET)
        while block := os.read(source.fd, 1 << 20):
            os.write(out, block)
        os.fsync(out)
    except BaseException:
        os.close(out)
        with suppress(OSError):
            os.unlink(dst, dir_fd=dst_fd)
        raise
    os.close(out)
    try:
        os.unlink(source.name, dir_fd=source.parent_fd)
    except OSError:
        # Never two copies: a file we cannot remove stays only where it was.
        with suppress(OSError):
            os.unlink(dst, dir_fd=dst_fd)
        raise


def write_at(dir_fd: int, name: str, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``name`` in folder ``dir_fd`` with ``data`` atomically (temp file + rename)."""
    tmp = f".asmr-{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


@contextmanager
def opened_dir(path: str | os.PathLike[str]) -> Iterator[int]:
    fd = open_dir(path)
    try:
        yield fd
    finally:
        os.close(fd)
